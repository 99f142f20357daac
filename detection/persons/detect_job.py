"""``actdet detect``: person proposals for videos and frame folders, written as one AVA-format CSV.

For each input (a video file, or a folder of JPEG frames), the keyframes of a :class:`KeyframeSchedule`
go through a :class:`PersonDetector` in batches; each person becomes one row
``video_id,timestamp,x1,y1,x2,y2,,score`` (normalized box, empty action, timestamp = ``time_offset`` +
keyframe time in seconds, whole seconds in ``ava`` mode). Rows follow the inputs' order, then time, then
score (best first).

Resuming: each finished video's rows go to ``.<out>.parts/<video_id>.csv`` (written atomically), and a
small ``state.json`` there records the job's settings and, per finished video, the input it came from
(path, size, modification time). A rerun with the same settings skips those videos; changed settings
start over. The final CSV is assembled from the parts in input order and renamed into place, so it has
the same bytes as an uninterrupted run. When every video succeeded the parts folder is removed.

Failures: a video that cannot be opened, stops decoding early (truncated, corrupt) or a frame folder with
an unreadable image is reported (``on_failure`` callback, ``<out>.failures.json``), contributes no rows
and is retried by the next run; the other videos go on. Errors of the detector itself stop the job (what
is finished stays finished).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detection.formats.ava import AvaRows, atomic_write, write_ava_csv
from detection.persons.base import PersonDetections, PersonDetector
from detection.persons.keyframes import KeyframeSchedule
from detection.video import VideoDecodeWarning, VideoReadError

__all__ = [
    "DetectInput",
    "DetectSummary",
    "InputError",
    "collect_inputs",
    "detector_fingerprint",
    "frame_folder_images",
    "run_detect",
    "validate_video_id",
]

STATE_FORMAT = "actdet-detect-1"
IMAGE_SUFFIXES = (".jpg", ".jpeg")
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class InputError(RuntimeError):
    """One input cannot be read (a frame folder's image, a decode that stopped early)."""


def validate_video_id(video_id: str, source: str | os.PathLike) -> str:
    """``video_id`` when it is a safe file name and CSV field; else ValueError naming ``source``.

    Letters, digits, ``_``, ``-`` and ``.`` (not first): AVA's ids (``-5KQ66BBWC4``) pass; path separators,
    commas, spaces and leading dots do not.
    """
    if not _VIDEO_ID.fullmatch(video_id):
        raise ValueError(
            f"{source}: video id {video_id!r} (from the file or folder name) may only contain letters, digits, "
            f"'_', '-' and '.' (not first); rename the input"
        )
    return video_id


@dataclass(frozen=True)
class DetectInput:
    """One input of the job: a video file or a folder of JPEG frames, and its video id."""

    video_id: str
    path: Path
    kind: Literal["video", "frames"]

    def signature(self) -> dict[str, Any]:
        """What identifies this input's content for resuming: path, size and modification time."""
        stat = self.path.stat()
        size = stat.st_size if self.kind == "video" else len(frame_folder_images(self.path))
        return {"path": str(self.path.resolve()), "kind": self.kind, "size": size, "mtime_ns": stat.st_mtime_ns}


def collect_inputs(paths: Sequence[str | os.PathLike]) -> list[DetectInput]:
    """Inputs from paths: files are videos (id: the file's stem), folders are frame folders (id: the name).

    Raises FileNotFoundError for a path that does not exist, ValueError for an unsafe id or two inputs
    with the same id.
    """
    inputs: list[DetectInput] = []
    seen: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            kind, vid = "frames", path.resolve().name
        elif path.is_file():
            kind, vid = "video", path.stem
        else:
            raise FileNotFoundError(f"input {path} does not exist (expected a video file or a folder of JPEG frames)")
        validate_video_id(vid, path)
        if vid in seen:
            raise ValueError(f"inputs {seen[vid]} and {path} have the same video id {vid!r}")
        seen[vid] = path
        inputs.append(DetectInput(vid, path, kind))
    return inputs


def _natural_key(path: Path) -> tuple:
    """Sort key: the name with its digit runs compared as numbers (img_9 before img_10)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def frame_folder_images(folder: str | os.PathLike) -> list[Path]:
    """The JPEG frames of a folder (``<vid>_000001.jpg``, ``img_00001.jpg``, ...), in natural name order."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                  key=_natural_key)


def detector_fingerprint(detector_config: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a detector config that change its output, plus size/mtime of the files it names.

    ``batch_size`` and ``device`` are left out: a resumed job may run with other ones.
    """
    out = {k: v for k, v in detector_config.items() if k not in ("batch_size", "device")}
    for key in ("model", "weights"):
        value = out.get(key)
        if isinstance(value, str) and Path(value).expanduser().is_file():
            stat = Path(value).expanduser().stat()
            out[f"{key}_file"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return out


@dataclass
class DetectSummary:
    """What a run did. ``done``: video ids with rows in the output (``resumed``: of those, from an earlier run)."""

    out: Path
    inputs: int = 0
    done: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    keyframes: int = 0  # keyframes run through the detector in this run
    missing_keyframes: int | None = None  # precomputed boxes: lookups the file did not hold
    restarted: bool = False  # earlier parts were discarded because the settings changed

    @property
    def ok(self) -> bool:
        return not self.failed

    def text(self) -> str:
        lines = [f"wrote {self.rows} person boxes for {len(self.done)} of {self.inputs} videos to {self.out}"]
        if self.resumed:
            lines.append(f"resumed: {len(self.resumed)} videos were already done")
        if self.keyframes:
            lines.append(f"{self.keyframes} keyframes processed in this run")
        if self.missing_keyframes:
            note = ""
            if self.missing_keyframes == self.keyframes:
                note = " (none matched: check the video ids and --time-offset; AVA clips start at 900)"
            lines.append(f"{self.missing_keyframes} keyframes had no precomputed boxes{note}")
        if self.failed:
            lines.append(f"{len(self.failed)} videos failed (listed in {failures_path(self.out)}):")
            lines += [f"  {vid}: {message}" for vid, message in self.failed.items()]
        return "\n".join(lines)


def parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def failures_path(out: Path) -> Path:
    return out.with_name(f"{out.name}.failures.json")


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("format") == STATE_FORMAT else None


def _keyframe_images(
    inp: DetectInput, schedule: KeyframeSchedule, folder_fps: float, need_images: bool, progress: bool
) -> Iterator[tuple[float, np.ndarray | None]]:
    """(keyframe time in seconds, RGB image or None when not needed) of one input, in time order.

    Raises VideoReadError / InputError when the input cannot be read completely.
    """
    from tqdm import tqdm

    if inp.kind == "frames":
        import cv2

        images = frame_folder_images(inp.path)
        if not images:
            raise InputError(f"{inp.path}: no JPEG frames ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        picks = schedule.frame_indices(len(images), folder_fps)
        for index, time_s in tqdm(picks, desc=inp.video_id, unit="keyframe", leave=False, disable=not progress):
            if not need_images:
                yield time_s, None
                continue
            bgr = cv2.imread(str(images[index]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise InputError(f"{images[index]}: cannot read this image (frame {index} of {inp.path})")
            yield time_s, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VideoDecodeWarning)  # reported below, as a failure of this video
        with schedule.open_stream(inp.path) as stream:
            info = stream.info
            if schedule.rate is not None and info.duration_s:
                total = int(np.ceil(info.duration_s * schedule.rate))
            else:
                total = -(-info.num_frames // schedule.every) if info.num_frames and schedule.every else None
            bar = tqdm(schedule.select(stream), total=total, desc=inp.video_id, unit="keyframe", leave=False,
                       disable=not progress)
            for frame in bar:
                yield frame.time_s, frame.image
            if stream.stopped_early:
                where = (f"after frame {stream.last_good[0]} ({stream.last_good[1]:.3f} s)" if stream.last_good
                         else "before the first frame")
                raise InputError(f"{inp.path}: decoding stopped early {where} (truncated or corrupt file)")


def _detect_input(
    inp: DetectInput,
    detector: PersonDetector,
    schedule: KeyframeSchedule,
    time_offset: float,
    folder_fps: float,
    progress: bool,
) -> tuple[AvaRows, int]:
    """Rows of one input (keyframes in time order, people best first) and its keyframe count."""
    lookup = not getattr(detector, "needs_frames", True)
    times: list[float] = []
    found: list[PersonDetections] = []
    batch_times: list[float] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        found.extend(detector.detect(batch))
        times.extend(batch_times)
        batch.clear()
        batch_times.clear()

    for time_s, image in _keyframe_images(inp, schedule, folder_fps, not lookup, progress):
        stamp = time_offset + time_s
        if lookup:
            times.append(stamp)
            found.append(detector.detect_keyframe(inp.video_id, stamp))
            continue
        batch.append(image)
        batch_times.append(stamp)
        if len(batch) == detector.settings.batch_size:
            flush()
    if batch:
        flush()
    counts = [len(d) for d in found]
    n = sum(counts)
    rows = AvaRows.build(
        [inp.video_id] * n,
        np.repeat(np.asarray(times, np.float64), counts),
        np.concatenate([d.boxes for d in found]) if n else np.zeros((0, 4), np.float32),
        [-1] * n,
        scores=np.concatenate([d.scores for d in found]) if n else [],
    )
    return rows, len(times)


def run_detect(
    inputs: Sequence[DetectInput],
    out: str | os.PathLike,
    detector: PersonDetector,
    schedule: KeyframeSchedule,
    *,
    time_offset: float = 0.0,
    folder_fps: float = 30.0,
    fingerprint: Mapping[str, Any] | None = None,
    resume: bool = True,
    progress: bool = False,
    on_failure: Callable[[DetectInput, str], None] | None = None,
) -> DetectSummary:
    """Detect people on the keyframes of ``inputs`` and write them to the AVA-format CSV ``out``.

    ``time_offset``: seconds added to every keyframe time (AVA clips: 900). ``folder_fps``: frame rate of
    frame-folder inputs. ``fingerprint``: what identifies the detector's output for resuming (default: its
    class and filter settings; see :func:`detector_fingerprint`). ``resume``: reuse finished videos of an
    earlier run with the same settings (False: start over). ``on_failure(input, message)`` is called as a
    video fails. Returns the summary; raises what the detector raises (finished videos stay recorded).
    """
    if not folder_fps > 0:
        raise ValueError(f"folder_fps must be positive, got {folder_fps}")
    out = Path(out)
    parts = parts_dir(out)
    if fingerprint is None:
        settings = {k: v for k, v in asdict(detector.settings).items() if k not in ("batch_size", "device")}
        fingerprint = {"detector": type(detector).__name__, **settings}
    job = {"keyframes": str(schedule), "time_offset": float(time_offset), "folder_fps": float(folder_fps),
           "detector": json.loads(json.dumps(fingerprint, default=str))}
    summary = DetectSummary(out=out, inputs=len(inputs))

    state_path = parts / "state.json"
    state = _read_state(state_path) if resume else None
    if state is None or state.get("job") != job or not isinstance(state.get("videos"), dict):
        summary.restarted = parts.exists()  # parts of another job, or no --resume: start over
        shutil.rmtree(parts, ignore_errors=True)
        state = {"format": STATE_FORMAT, "job": job, "videos": {}}
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write(state_path, json.dumps(state, indent=1) + "\n")

    missing_before = getattr(detector, "missing", None)
    from tqdm import tqdm

    for inp in tqdm(inputs, desc="videos", unit="video", disable=not progress):
        part = parts / f"{inp.video_id}.csv"
        try:
            signature = inp.signature()
            record = state["videos"].get(inp.video_id)
            if isinstance(record, dict) and record.get("input") == signature and part.is_file():
                summary.done.append(inp.video_id)
                summary.resumed.append(inp.video_id)
                summary.rows += int(record.get("rows", 0))
                continue
            rows, keyframes = _detect_input(inp, detector, schedule, time_offset, folder_fps, progress)
        except (VideoReadError, InputError, OSError) as err:
            summary.failed[inp.video_id] = str(err)
            if on_failure is not None:
                on_failure(inp, str(err))
            continue
        write_ava_csv(part, rows, kind="detections")
        state["videos"][inp.video_id] = {"input": signature, "rows": len(rows), "keyframes": keyframes}
        atomic_write(state_path, json.dumps(state, indent=1) + "\n")
        summary.done.append(inp.video_id)
        summary.rows += len(rows)
        summary.keyframes += keyframes
    if missing_before is not None:
        summary.missing_keyframes = detector.missing - missing_before

    # The output: the finished parts in input order, renamed into place.
    atomic_write(out, "".join((parts / f"{vid}.csv").read_text(encoding="utf-8") for vid in summary.done))
    failures = failures_path(out)
    if summary.failed:
        report = {
            "output": str(out),
            "failed": [{"video_id": inp.video_id, "input": str(inp.path), "error": summary.failed[inp.video_id]}
                       for inp in inputs if inp.video_id in summary.failed],
            "done": summary.done,
        }
        atomic_write(failures, json.dumps(report, indent=2) + "\n")
    else:
        failures.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    return summary
