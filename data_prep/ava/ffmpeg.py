"""The pinned ffmpeg binary that cuts AVA videos and extracts their frames, and one way to run it.

FFmpeg versions change the decoded pixels, hence the JPEGs, hence AVA mAP, so the binary is pinned: the one
the ``imageio-ffmpeg`` wheel ships (pinned in ``setup.py``), unless the ``ACTDET_FFMPEG`` environment
variable names another executable. Steps record :func:`ffmpeg_version` and their command line in the
dataset's manifest.

Each ffmpeg runs with ``-nostdin`` (a parallel job must not read the terminal) and ``-loglevel error``, and on
Linux it is killed when the Python process that started it dies, so a killed step leaves no ffmpeg behind
still writing into a temporary output.

Also here, for the steps that run ffmpeg once per video: :func:`find_videos` (the inputs of a step, by video
id), :func:`run_per_video` (a thread pool of ``jobs`` ffmpeg processes, failures kept per video) and
:class:`VideoStep`, the start and end such a step shares (inputs, output folder, ffmpeg version, report).
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from data_prep.ava.report import StepReport
from detection.persons.detect_job import validate_video_id

__all__ = [
    "COMMON_OPTIONS", "ENV_VAR", "VIDEO_SUFFIXES", "FFmpegError", "VideoStep", "command_line", "ffmpeg_executable",
    "ffmpeg_version", "find_videos", "format_seconds", "run_ffmpeg", "run_per_video",
]

ENV_VAR = "ACTDET_FFMPEG"
# Options in front of every command: no reading from stdin, no banner, only errors on stderr.
COMMON_OPTIONS = ("-nostdin", "-hide_banner", "-loglevel", "error")
_STDERR_TAIL = 2000  # characters of ffmpeg's stderr kept in an error message
# Containers AVA's videos come in, and a few more; other files (a download's ``.part``) are not inputs.
VIDEO_SUFFIXES = (".mkv", ".mp4", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".flv")
T = TypeVar("T")


class FFmpegError(RuntimeError):
    """An ffmpeg command failed; the message names the file it worked on and ends with ffmpeg's stderr."""


def ffmpeg_executable() -> str:
    """Absolute path of the ffmpeg to use: ``$ACTDET_FFMPEG`` when set, else the imageio-ffmpeg binary.

    Raises FileNotFoundError when ``$ACTDET_FFMPEG`` names no executable file, or when it is unset and
    imageio-ffmpeg is not installed (``pip install imageio-ffmpeg``).
    """
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise FileNotFoundError(f"${ENV_VAR}={override!r} is not an executable file")
        return str(path.resolve())
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise FileNotFoundError(
            f"no ffmpeg: install the pinned one (pip install imageio-ffmpeg) or set ${ENV_VAR}") from e
    return str(Path(imageio_ffmpeg.get_ffmpeg_exe()).resolve())


@functools.lru_cache(maxsize=8)
def _version_of(executable: str) -> str:
    try:
        out = subprocess.run([executable, "-hide_banner", "-version"], capture_output=True, text=True,
                             timeout=60, check=False, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise FFmpegError(f"{executable}: cannot run: {e}") from e
    first = out.stdout.splitlines()[0] if out.stdout else ""
    match = re.match(r"ffmpeg version (\S+)", first)
    if out.returncode != 0 or not match:
        raise FFmpegError(f"{executable}: '-version' did not print an ffmpeg version (exit {out.returncode}): "
                          f"{(first or out.stderr)[:200]!r}")
    return match.group(1)


def ffmpeg_version(executable: str | None = None) -> str:
    """The version string of ``executable`` (default :func:`ffmpeg_executable`), e.g. ``n9.0.2-17-g2a571b6068``.

    Raises FFmpegError when it cannot be run or does not print an ffmpeg version.
    """
    return _version_of(executable or ffmpeg_executable())


def command_line(args: Sequence[str | os.PathLike]) -> str:
    """``args`` as one shell-quoted line (what the manifest records)."""
    return shlex.join(str(a) for a in args)


def _kill_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG: the kernel sends SIGKILL to this child when the thread that started it ends.
    # The thread waits for the child, so this only fires when the Python process itself dies.
    _PRCTL(1, signal.SIGKILL)


_PRCTL = None
if sys.platform.startswith("linux"):
    try:  # resolved once here, so the child only makes the call
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _PRCTL = None


def run_ffmpeg(args: Sequence[str | os.PathLike], *, what: str | os.PathLike, executable: str | None = None,
               timeout: float | None = None) -> None:
    """Run ``ffmpeg -nostdin -hide_banner -loglevel error *args``; stderr is captured.

    ``what``: the file the command works on, named in the error. Paths in ``args`` should be absolute, so a
    file name starting with ``-`` cannot be read as an option. Raises FFmpegError naming ``what`` on a
    non-zero exit (with the end of ffmpeg's stderr), on a timeout (seconds), or when ffmpeg cannot start.
    """
    exe = executable or ffmpeg_executable()
    cmd = [exe, *COMMON_OPTIONS, *(str(a) for a in args)]
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             timeout=timeout, check=False,
                             preexec_fn=_kill_with_parent if _PRCTL is not None else None)
    except subprocess.TimeoutExpired as e:
        raise FFmpegError(f"{what}: ffmpeg did not finish within {timeout} s") from e
    except OSError as e:
        raise FFmpegError(f"{what}: cannot run {exe}: {e}") from e
    if out.returncode != 0:
        stderr = out.stderr.decode("utf-8", "replace").strip()
        if len(stderr) > _STDERR_TAIL:
            stderr = "..." + stderr[-_STDERR_TAIL:]
        reason = f"killed by signal {-out.returncode}" if out.returncode < 0 else f"exit status {out.returncode}"
        raise FFmpegError(f"{what}: ffmpeg failed ({reason}): {stderr or 'no message'}")


def format_seconds(seconds: float) -> str:
    """Seconds as ffmpeg reads them, without float noise: 900.0 -> ``900``, 1.5 -> ``1.5``."""
    return f"{seconds:.6f}".rstrip("0").rstrip(".")


def find_videos(folder: str | os.PathLike,
                names: Sequence[str] | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """The videos of ``folder`` by video id (the file name's stem), and the ones that cannot be used.

    Without ``names``: every file in ``folder`` with a suffix of :data:`VIDEO_SUFFIXES`, except hidden ones
    (temporary outputs start with ``.``). ``names``: video ids or file names in ``folder``. Returns
    ``(videos, failed)``: id -> path in id order, and name -> reason for an invalid id, a name with no file,
    or an id with files in several containers (``x.mkv`` and ``x.mp4`` would share one output).
    Raises FileNotFoundError when ``folder`` is not a directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (the input of this step)")
    by_id: dict[str, list[Path]] = {}
    for entry in os.scandir(folder):
        path = Path(entry.path)
        if not entry.name.startswith(".") and path.suffix.lower() in VIDEO_SUFFIXES and entry.is_file():
            by_id.setdefault(path.stem, []).append(path)
    failed: dict[str, str] = {}
    if names is None:
        chosen = {vid: sorted(paths) for vid, paths in by_id.items()}
    else:
        chosen = {}
        for name in names:
            as_file = folder / name
            if "/" not in name and Path(name).suffix.lower() in VIDEO_SUFFIXES and as_file.is_file():
                chosen[as_file.stem] = [as_file]
            elif name in by_id:
                chosen[name] = sorted(by_id[name])
            else:
                failed[name] = f"{folder}: no video file for {name!r} (a file name, or an id: <id>.mkv, .mp4, ...)"
    videos: dict[str, Path] = {}
    for vid in sorted(chosen):
        paths = chosen[vid]
        try:
            validate_video_id(vid, paths[0])
        except ValueError as e:
            failed[vid] = str(e)
            continue
        if len(paths) > 1:
            failed[vid] = f"{folder}: several files for video {vid!r}: {', '.join(p.name for p in paths)}; keep one"
            continue
        videos[vid] = paths[0]
    return videos, failed


def run_per_video(work: Callable[[str], T], video_ids: Sequence[str], *, jobs: int, progress: bool,
                  desc: str) -> dict[str, T | Exception]:
    """``work(video_id)`` for each id on ``jobs`` threads (each thread waits on one ffmpeg at a time).

    Returns id -> result, or the exception for a video whose work raised RuntimeError (FFmpegError,
    VideoReadError, ...), OSError or ValueError; other exceptions propagate. A tqdm bar counts finished
    videos when ``progress`` (and stderr is a terminal). Raises ValueError for ``jobs < 1``.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    from tqdm import tqdm

    results: dict[str, T | Exception] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool, \
            tqdm(total=len(video_ids), desc=desc, unit="video", disable=None if progress else True) as bar:
        futures = {pool.submit(work, vid): vid for vid in video_ids}
        try:
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except (RuntimeError, OSError, ValueError) as e:
                    results[futures[future]] = e
                bar.update()
        except BaseException:  # Ctrl-C: start no more videos; running ones end with their ffmpeg
            for future in futures:
                future.cancel()
            raise
    return {vid: results[vid] for vid in video_ids}


@dataclass
class VideoStep:
    """One run of a step that runs ffmpeg once per video (cut, frames), from its inputs to its report.

    :meth:`start` finds the videos and checks the ffmpeg binary before any work; :meth:`run` does the
    per-video work and sorts the ids into ``report``; :meth:`finish` records ffmpeg, the command template
    and the step's own details, and the wall time. ``videos``: id -> input file; ``out_dir``: the step's
    output folder (created); ``began``: ``time.monotonic()`` at the start.
    """

    name: str
    videos: dict[str, Path]
    out_dir: Path
    executable: str
    version: str
    report: StepReport
    began: float

    @classmethod
    def start(cls, name: str, input_dir: Path, out_dir: Path, *, names: Sequence[str] | None,
              jobs: int) -> VideoStep:
        """The videos of ``input_dir`` (or ``names`` there; see :func:`find_videos`), ``out_dir`` created.

        Unusable names are already in ``report.failed``. Raises ValueError for ``jobs < 1``,
        FileNotFoundError when ``input_dir`` is missing, FFmpegError when the ffmpeg binary does not run.
        """
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        began = time.monotonic()
        videos, failed = find_videos(input_dir, names)
        out_dir.mkdir(parents=True, exist_ok=True)
        exe = ffmpeg_executable()
        version = ffmpeg_version(exe)  # a binary that does not run fails here, before any work
        return cls(name, videos, out_dir, exe, version, StepReport(name, failed=failed), began)

    def run(self, work: Callable[[str], tuple[bool, T]], *, jobs: int, progress: bool) -> dict[str, T]:
        """``work(video_id) -> (whether ffmpeg ran, value)`` for every video (see :func:`run_per_video`).

        Each id goes to ``report.done`` (ffmpeg ran), ``report.skipped`` (already complete) or, with the
        error's message, ``report.failed``. Returns id -> value for the videos that did not fail, in id order.
        """
        values: dict[str, T] = {}
        for vid, result in run_per_video(work, list(self.videos), jobs=jobs, progress=progress,
                                         desc=self.name).items():
            if isinstance(result, Exception):
                self.report.failed[vid] = str(result)
                continue
            ran, values[vid] = result
            (self.report.done if ran else self.report.skipped).append(vid)
        return values

    def finish(self, command_args: Sequence[str], **details: Any) -> StepReport:
        """The finished report. Its ``details`` hold the ffmpeg path and version, the command line (ffmpeg,
        the common options, then ``command_args``: a template whose placeholders stand for each video's paths)
        and the step's own ``details``; ``seconds`` is the time since :meth:`start`."""
        self.report.details = {
            "ffmpeg": self.executable,
            "ffmpeg_version": self.version,
            "command": command_line([self.executable, *COMMON_OPTIONS, *command_args]),
            **details,
        }
        self.report.seconds = time.monotonic() - self.began
        return self.report
