"""``actdet prep ava cut``: the annotated 15 minutes of each AVA video, ``ROOT/videos/`` -> ``ROOT/videos_15min/``.

The recipe is PySlowFast's (DATASET.md, step 2), run with the pinned ffmpeg::

    ffmpeg -ss 900 -t 901 -i videos/<name> videos_15min/<name>

Input seeking (``-ss`` before ``-i``) then re-encoding with the output container's default codecs (H.264
for ``.mkv``/``.mp4``, VP9 for ``.webm``; audio kept), so the clip starts exactly at 900 s and its frame 0
is the source's frame at 900 s. The clip is 901 s long, not 900: AVA annotates the seconds 902..1798, and the
whole seconds ``start_s`` through ``end_s`` *inclusive* are kept, so frame numbers and counts match the frame
lists published for PySlowFast (27,030 frames at 30 fps). The output keeps the input's file name.

Resumable: each clip is written to ``.<stem>.tmp<suffix>`` next to its final name, its duration checked, then
renamed; a clip that is already there with the right duration is skipped without running ffmpeg.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from data_prep.ava.ffmpeg import (
    COMMON_OPTIONS,
    VideoStep,
    ffmpeg_executable,
    format_seconds,
    run_ffmpeg,
)
from data_prep.ava.report import StepReport
from detection.video import VideoReadError, probe

__all__ = ["DURATION_TOLERANCE_S", "INPUT_DIR", "OUTPUT_DIR", "CutError", "cut_command", "cut_videos"]

INPUT_DIR = "videos"
OUTPUT_DIR = "videos_15min"
# How far a clip's duration may be from the window's. Containers report the longer of the audio and video
# streams, and the last frame or audio packet overhangs by tens of milliseconds; a cut that stopped
# early misses seconds.
DURATION_TOLERANCE_S = 0.5


class CutError(RuntimeError):
    """A cut cannot be made (the source ends before the window) or came out with the wrong duration."""


def cut_command(source: str | os.PathLike, output: str | os.PathLike, start_s: float, end_s: float,
                executable: str | None = None) -> list[str]:
    """The ffmpeg command that writes the seconds ``start_s`` .. ``end_s`` (inclusive) of ``source`` to ``output``.

    ``-t`` is ``end_s - start_s + 1`` seconds (PySlowFast's ``-ss 900 -t 901``). Paths are made absolute, so
    a name starting with ``-`` is not read as an option.
    """
    args = _cut_args(os.path.abspath(source), os.path.abspath(output), start_s, end_s)
    return [executable or ffmpeg_executable(), *COMMON_OPTIONS, *args]


def _cut_args(source: str, output: str, start_s: float, end_s: float) -> list[str]:
    return ["-y", "-ss", format_seconds(start_s), "-t", format_seconds(end_s - start_s + 1), "-i", source, output]


def _expected_duration(source: Path, start_s: float, length_s: float) -> float | None:
    """Seconds the clip of ``source`` should last: the window clipped to the source's end (None: unknown)."""
    duration = probe(source).duration_s
    if duration is None:
        return None
    if duration <= start_s:
        raise CutError(f"{source}: the video is {duration:.3f} s long; the window starts at {start_s:g} s")
    return min(start_s + length_s, duration) - start_s


def _duration_ok(path: Path, expected: float | None) -> float | None:
    """``path``'s duration in seconds when it is a readable video of the expected duration, else None."""
    try:
        got = probe(path).duration_s
    except VideoReadError:
        return None
    if got is None or (expected is not None and abs(got - expected) > DURATION_TOLERANCE_S):
        return None
    return got


def cut_videos(root: str | os.PathLike, start_s: float = 900.0, end_s: float = 1800.0, jobs: int = 2,
               names: Sequence[str] | None = None, progress: bool = False) -> StepReport:
    """Cut every video of ``ROOT/videos/`` (or ``names``: ids or file names) to ``ROOT/videos_15min/``.

    Keeps the seconds ``start_s`` through ``end_s`` inclusive (``end_s - start_s + 1`` seconds, clipped to
    the source's end), re-encoded by the pinned ffmpeg, ``jobs`` videos at a time. A clip already in
    ``videos_15min/`` whose duration matches is skipped (no ffmpeg); one that does not match is redone.
    Items of the report are video ids; a video that cannot be read, ends before ``start_s``, or whose
    cut has the wrong duration is in ``failed`` with the reason (file name included), and leaves no output.
    ``details``: ffmpeg path and version, the command template, the window, seconds per clip.
    Raises ValueError for a bad window or ``jobs``, FileNotFoundError when ``ROOT/videos/`` is missing,
    FFmpegError when the ffmpeg binary does not run.
    """
    if not (0 <= start_s <= end_s):
        raise ValueError(f"the window must have 0 <= start_s <= end_s, got {start_s} and {end_s}")
    root = Path(root)
    step = VideoStep.start("cut", root / INPUT_DIR, root / OUTPUT_DIR, names=names, jobs=jobs)
    videos, out_dir, exe = step.videos, step.out_dir, step.executable
    length_s = end_s - start_s + 1

    def cut_one(vid: str) -> tuple[bool, float | None]:
        """(whether ffmpeg ran, the clip's duration)."""
        source = videos[vid]
        output = out_dir / source.name
        expected = _expected_duration(source, start_s, length_s)
        if output.is_file() and (got := _duration_ok(output, expected)) is not None:
            return False, got
        tmp = output.with_name(f".{output.stem}.tmp{output.suffix}")
        try:
            run_ffmpeg(_cut_args(str(source.absolute()), str(tmp.absolute()), start_s, end_s), what=source,
                       executable=exe)
            got = _duration_ok(tmp, expected)
            if got is None:
                want = f"{expected:.3f} s" if expected is not None else "some duration"
                raise CutError(f"{source}: the cut to {output.name} is not a readable clip of {want} "
                               f"(window {start_s:g} s + {length_s:g} s)")
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
        return True, got

    durations = step.run(cut_one, jobs=jobs, progress=progress)
    return step.finish(_cut_args("{input}", "{output}", start_s, end_s), start_s=float(start_s), end_s=float(end_s),
                       duration_s=float(length_s), input_dir=INPUT_DIR, output_dir=OUTPUT_DIR,
                       clip_seconds=durations)
