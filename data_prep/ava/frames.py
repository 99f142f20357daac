"""``actdet prep ava frames``: JPEG frames of each clip, ``ROOT/videos_15min/`` -> ``ROOT/frames/<vid>/``.

The recipe is PySlowFast's (DATASET.md, step 3), run with the pinned ffmpeg::

    ffmpeg -i videos_15min/<vid>.<ext> -r 30 -q:v 1 frames/<vid>/<vid>_%06d.jpg

``-r 30`` resamples to 30 frames per second (each output time takes the nearest source frame), ``-q:v 1`` is
the best JPEG quality. Frame files are numbered from 1: the frame at index ``i`` (0-based, time ``i / fps``
seconds from the clip's start) is number ``i + 1``. Two namings:

- ``pyslowfast``: ``<vid>/<vid>_000001.jpg`` (PySlowFast's frame lists and AVA loader);
- ``mmaction2``:  ``<vid>/img_00001.jpg`` (mmaction2's ``rawframes``, ``filename_tmpl='img_{:05}.jpg'``).

Resumable: a video's frames go to ``frames/.<vid>.tmp/``; when ffmpeg is done and the count checks out, the
folder is renamed to ``frames/<vid>/``. A folder already there with a complete count is skipped without
running ffmpeg, so a kill leaves only a temporary folder, which the next run deletes and redoes.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from data_prep.ava.ffmpeg import VideoStep, format_seconds, run_ffmpeg
from data_prep.ava.report import StepReport
from detection.persons.detect_job import validate_video_id
from detection.video import probe

__all__ = [
    "COUNT_TOLERANCE", "FRAMES_DIR", "FrameCountError", "Naming", "count_frames", "expected_frame_count",
    "extract_frames", "frame_file_name", "frame_files",
]

Naming = Literal["pyslowfast", "mmaction2"]
NAMINGS: tuple[str, ...] = ("pyslowfast", "mmaction2")
FRAMES_DIR = "frames"
# How many frames the count may differ from round(duration * fps). The duration is the container's (it
# can include an audio tail or the last frame's overhang, and is rarely a whole number of output periods,
# e.g. 29.97 fps sources), and ffmpeg's fps conversion rounds each output time to the nearest tick, so
# the first and last output frame can each come or go. A decode that stopped early loses far more.
COUNT_TOLERANCE = 2


class FrameCountError(RuntimeError):
    """ffmpeg wrote a different number of frames than the video's duration implies, or left gaps."""


def _check_naming(naming: str) -> None:
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {', '.join(NAMINGS)}, got {naming!r}")


def _pattern(video_id: str, naming: Naming) -> str:
    """ffmpeg's image2 pattern for the frame files inside the video's folder."""
    return f"{video_id}_%06d.jpg" if naming == "pyslowfast" else "img_%05d.jpg"


def _name_regex(video_id: str, naming: Naming) -> re.Pattern[str]:
    """File names of the naming; group 1 is the 1-based number (more digits once the width overflows)."""
    return re.compile(rf"{re.escape(video_id)}_(\d{{6,}})\.jpg" if naming == "pyslowfast" else r"img_(\d{5,})\.jpg")


def frame_file_name(video_id: str, index: int, naming: Naming = "pyslowfast") -> str:
    """Path of frame ``index`` (0-based) relative to ``ROOT/frames``: ``vid/vid_000001.jpg`` for index 0.

    ``mmaction2`` naming: ``vid/img_00001.jpg``. Raises ValueError for an invalid video id (it becomes a
    path), a negative index or an unknown naming.
    """
    _check_naming(naming)
    validate_video_id(video_id, "frame_file_name")
    if index < 0:
        raise ValueError(f"frame index must be >= 0, got {index}")
    name = f"{video_id}_{index + 1:06d}.jpg" if naming == "pyslowfast" else f"img_{index + 1:05d}.jpg"
    return f"{video_id}/{name}"


def _numbered(folder: Path, video_id: str, naming: Naming) -> list[tuple[int, Path]]:
    """(1-based number, path) of the frame files of the naming in ``folder``, by number; [] without folder."""
    regex = _name_regex(video_id, naming)
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), Path(e.path)) for e in entries if (m := regex.fullmatch(e.name))]
    return sorted(found)


def frame_files(root: str | os.PathLike, video_id: str, naming: Naming = "pyslowfast") -> list[Path]:
    """The frame files of ``ROOT/frames/<video_id>/`` in frame order (by number, not by text); [] if none.

    Raises ValueError for an invalid video id or naming.
    """
    _check_naming(naming)
    validate_video_id(video_id, "frame_files")
    return [path for _, path in _numbered(Path(root) / FRAMES_DIR / video_id, video_id, naming)]


def count_frames(root: str | os.PathLike, video_id: str, naming: Naming = "pyslowfast") -> int:
    """How many frame files of the naming ``ROOT/frames/<video_id>/`` holds (0 without the folder)."""
    return len(frame_files(root, video_id, naming))


def expected_frame_count(duration_s: float, fps: float = 30.0) -> int:
    """Frames that ``-r fps`` makes of ``duration_s`` seconds: ``round(duration_s * fps)`` (± COUNT_TOLERANCE)."""
    return round(duration_s * fps)


def _check_count(folder: Path, video_id: str, naming: Naming, expected: int | None) -> tuple[int, str | None]:
    """(frame count, None when complete, else what is wrong): numbers 1..n, n within tolerance of expected."""
    numbers = [n for n, _ in _numbered(folder, video_id, naming)]
    count = len(numbers)
    if count == 0:
        return 0, "no frames"
    if numbers[-1] != count:
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))[:5]
        return count, f"{count} frames numbered up to {numbers[-1]}; missing numbers {missing}..."
    if expected is not None and abs(count - expected) > COUNT_TOLERANCE:
        return count, f"{count} frames, expected {expected} ± {COUNT_TOLERANCE} from the video's duration"
    return count, None


def _frame_args(source: str, pattern: str, fps: float, quality: int) -> list[str]:
    return ["-y", "-i", source, "-r", format_seconds(fps), "-q:v", str(quality), "-start_number", "1", pattern]


def extract_frames(root: str | os.PathLike, naming: Naming = "pyslowfast", fps: float = 30.0, jobs: int = 2,
                   quality: int = 1, names: Sequence[str] | None = None, source_dir: str = "videos_15min",
                   progress: bool = False) -> StepReport:
    """Extract ``fps`` frames per second of every video in ``ROOT/<source_dir>/`` to ``ROOT/frames/<vid>/``.

    ``names``: video ids or file names in ``source_dir`` (default: all videos there). ``quality``: ffmpeg's
    ``-q:v`` (1 best .. 31). ``jobs`` videos at a time, one ffmpeg each. A video's count must be
    ``round(duration * fps)`` within :data:`COUNT_TOLERANCE`, numbered without gaps; a folder that already
    passes that check is skipped (no ffmpeg). Items are video ids; a video that cannot be read, fails in
    ffmpeg or gives the wrong count is in ``failed`` with the reason (file name included) and leaves no
    folder. An existing incomplete folder is replaced, unless it holds frames of the other naming (failed:
    move them away first). ``details``: ffmpeg path and version, the command template, naming, fps, frames
    per video. Raises ValueError for a bad naming, fps, quality or jobs, FileNotFoundError when the source
    folder is missing, FFmpegError when the ffmpeg binary does not run.
    """
    _check_naming(naming)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not 1 <= quality <= 31:
        raise ValueError(f"quality (ffmpeg -q:v) must be in 1..31, got {quality}")
    root = Path(root)
    step = VideoStep.start("frames", root / source_dir, root / FRAMES_DIR, names=names, jobs=jobs)
    videos, frames_dir, exe = step.videos, step.out_dir, step.executable
    other: Naming = "mmaction2" if naming == "pyslowfast" else "pyslowfast"

    def extract_one(vid: str) -> tuple[bool, tuple[int, bool]]:
        """(whether ffmpeg ran, (frame count, whether the count was checked against a duration))."""
        source = videos[vid]
        duration = probe(source).duration_s
        expected = expected_frame_count(duration, fps) if duration is not None else None
        final = frames_dir / vid
        if final.is_dir():
            count, problem = _check_count(final, vid, naming, expected)
            if problem is None:
                return False, (count, expected is not None)
            if _numbered(final, vid, other):
                raise FrameCountError(f"{final}: holds frames named the {other} way; move them away to extract "
                                      f"{naming} frames there")
        tmp = frames_dir / f".{vid}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)  # what a killed run left
        tmp.mkdir()
        try:
            # image2 reads '%' in the folder as a pattern too; ids cannot contain one, ROOT might.
            pattern = str(tmp.absolute()).replace("%", "%%") + "/" + _pattern(vid, naming)
            run_ffmpeg(_frame_args(str(source.absolute()), pattern, fps, quality), what=source, executable=exe)
            count, problem = _check_count(tmp, vid, naming, expected)
            if problem is not None:
                raise FrameCountError(f"{source}: {problem}" + (f" ({duration:.3f} s at {fps:g} fps)"
                                                                 if duration is not None else ""))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True, (count, expected is not None)

    results = step.run(extract_one, jobs=jobs, progress=progress)
    return step.finish(
        _frame_args("{input}", "{output_dir}/" + _pattern("{vid}", naming), fps, quality),
        naming=naming, fps=fps, quality=quality, source_dir=source_dir, output_dir=FRAMES_DIR,
        frames={vid: count for vid, (count, _) in results.items()},
        count_unverified=[vid for vid, (_, verified) in results.items() if not verified],  # no declared duration
    )
