"""Custom datasets into the AVA layout: person tracks with actions → keyframe ground truth, label map, videos.

Two inputs are read: CVAT "for video 1.1" XML (:mod:`data_prep.cvat`) and a simple per-person CSV
(:func:`read_person_csv`), both into :class:`VideoTracks`: the person tracks of one video, each a list of
:class:`TrackBox` (a box at a frame index or at a time, and the actions then). :func:`convert_dataset`
samples every track at the keyframes (``keyframe_rate`` Hz, or every frame), validates everything first
and only then writes, under ``out``::

    annotations/train.csv, val.csv          AVA ground truth: video_id,timestamp,x1,y1,x2,y2,action_id,person_id
    annotations/{train,val}_excluded_timestamps.csv   (empty)
    annotations/label_map.pbtxt
    videos/<video_id>.<ext>                 symlinks to the source videos (or copies)
    manifest.json                           sources, keyframe rate, fps of each video, split, time_offset
    data.yaml                               the ``data:`` config fragment for this dataset

Timestamps are seconds from each video's first frame (``time_offset: 0``; AVA's own start at 900 s).
Frames and PySlowFast frame lists are not made here: ``actdet prep ava frames --root OUT --source videos`` and
``actdet prep ava lists --root OUT`` make them when a loader wants frames.

Bad input is collected, not raised at the first problem: :class:`ConversionError` carries every message
(file:line, or XML track and frame, and what is wrong), and nothing is written when there is one.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from detection.formats.ava import AvaRows, atomic_write, write_ava_csv, write_exclusions
from detection.formats.files import read_json_object
from detection.structures import LabelMap

__all__ = [
    "BOX_TOLERANCE",
    "VIDEO_EXTENSIONS",
    "ConversionError",
    "PersonTrack",
    "TrackBox",
    "VideoTracks",
    "add_convert_parser",
    "convert_dataset",
    "find_videos",
    "read_person_csv",
    "write_person_csv",
]

BOX_TOLERANCE = 0.01  # boxes may stick out of the frame by this fraction of its size; they are clipped
MAX_ERRORS = 50  # messages kept in a ConversionError (the rest are counted)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")  # a video id that is also a safe file name
_TIME_EPS = 1e-6  # seconds: a row at a keyframe's time within this is at the keyframe
_TIME_HEADERS = {"time", "time_s", "timestamp", "seconds", "sec", "t"}
_FRAME_HEADERS = {"frame", "frame_index", "frame_id", "frame_idx"}

Units = Literal["pixels", "normalized"]


class ConversionError(ValueError):
    """Bad input for a conversion: ``errors`` holds one message per problem, each naming its location."""

    def __init__(self, errors: Sequence[str], total: int | None = None) -> None:
        self.errors = list(errors)
        self.total = max(total or 0, len(self.errors))
        lines = list(self.errors)
        if self.total > len(lines):
            lines.append(f"... and {self.total - len(lines)} more errors")
        super().__init__("\n".join(lines))


class _Errors:
    """Collects messages up to MAX_ERRORS and counts the rest."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.total = 0

    def add(self, message: str) -> None:
        self.total += 1
        if len(self.messages) < MAX_ERRORS:
            self.messages.append(message)

    def extend(self, err: ConversionError) -> None:
        for message in err.errors:
            self.add(message)
        self.total += err.total - len(err.errors)

    def raise_if_any(self) -> None:
        if self.total:
            raise ConversionError(self.messages, self.total)


# --------------------------------------------------------------------------------------------------
# Records shared by the readers


@dataclass(frozen=True)
class TrackBox:
    """One annotated box of one person, with the actions it performs from there on.

    Exactly one of ``frame`` (0-based index into the video) and ``time_s`` (seconds from the first frame)
    is set. ``box`` is ``x1, y1, x2, y2`` in the units of its :class:`VideoTracks`. ``outside`` marks
    CVAT's "not visible from here on" box: no person there, and nothing is interpolated past it.
    ``where`` names the place in the annotation file for error messages.
    """

    frame: int | None
    time_s: float | None
    box: tuple[float, float, float, float]
    actions: tuple[str, ...] = ()
    outside: bool = False
    where: str = ""


@dataclass
class PersonTrack:
    """One person through a video: boxes in any order (sorted when sampled).

    ``track`` is the annotation's own id (integer ids are kept as the AVA person id). ``end_frame``: the
    last box holds until this frame (exclusive), as CVAT shows a track to the end of its task; None
    stops at the last box. ``max_gap_s``: boxes further apart than this are not interpolated between
    (the person is taken to be absent in between); None interpolates across any gap, as CVAT does.
    """

    track: str
    boxes: list[TrackBox]
    where: str = ""
    end_frame: int | None = None
    max_gap_s: float | None = None


@dataclass
class VideoTracks:
    """The person tracks of one video from one annotation file.

    ``video`` references the video: an id (file stem), a file name or a path, matched against the videos
    given to :func:`convert_dataset`. ``units``: boxes in pixels of ``frame_size`` (``(width, height)``;
    None: the video's own size) or normalized to [0, 1]. ``declared_actions``: action names the file
    declares (CVAT's label spec), in order; they come first in a label map made from the data.
    """

    video: str
    tracks: list[PersonTrack]
    source: str
    units: Units = "pixels"
    frame_size: tuple[int, int] | None = None
    declared_actions: tuple[str, ...] = ()
    where: str = ""
    format: str = ""


# --------------------------------------------------------------------------------------------------
# The per-person CSV


def read_person_csv(
    path: str | os.PathLike,
    *,
    timing: Literal["auto", "frame", "seconds"] = "auto",
    units: Literal["auto", "pixels", "normalized"] = "auto",
    max_gap_s: float | None = 1.0,
) -> list[VideoTracks]:
    """Read ``video,frame|time,track,x1,y1,x2,y2[,action...]`` rows, one list entry per video, in file order.

    An optional header line starts with ``video``; its second column (``frame`` or ``time``/``time_s``/
    ``timestamp``) says how rows are placed in time when ``timing`` is ``"auto"`` (without a header:
    frame indices). Every further column is one action name; a row without one is a person doing nothing
    that is annotated. Rows of the same (video, time, track) with the same box add up their actions.
    ``units="auto"``: normalized when most rows have every coordinate in [0, 1] (so that a few bad boxes
    are reported rather than turning the file into pixels), else pixels. Blank lines and lines starting
    with ``#`` are skipped. Raises ConversionError listing every unparsable line as ``file:line: what``.
    """
    path = Path(path)
    errors = _Errors()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ConversionError([f"{path}: cannot read: {err}"]) from None
    mode = timing
    rows: list[tuple[int, str, float, str, tuple[float, float, float, float], tuple[str, ...]]] = []
    header_seen = False
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if not header_seen and not rows and cells[0].lower() in ("video", "video_id") and not _is_number(cells[1:2]):
            header_seen = True
            column = cells[1].lower() if len(cells) > 1 else ""
            if mode == "auto":
                if column in _TIME_HEADERS:
                    mode = "seconds"
                elif column in _FRAME_HEADERS:
                    mode = "frame"
                else:
                    errors.add(f"{path}:{lineno}: header column 2 is {cells[1]!r}; expected 'frame' or 'time'")
            continue
        if len(cells) < 7:
            errors.add(f"{path}:{lineno}: expected video,frame|time,track,x1,y1,x2,y2[,action...], "
                       f"got {len(cells)} columns: {','.join(row)!r}")
            continue
        video, when, track = cells[0], cells[1], cells[2]
        if not video or not track:
            errors.add(f"{path}:{lineno}: empty video or track column: {','.join(row)!r}")
            continue
        try:
            t = float(when)
            box = tuple(float(v) for v in cells[3:7])
        except ValueError:
            errors.add(f"{path}:{lineno}: not a number in columns 2 or 4-7: {','.join(row)!r}")
            continue
        if not (math.isfinite(t) and all(math.isfinite(v) for v in box)) or t < 0:
            errors.add(f"{path}:{lineno}: time/frame must be >= 0 and coordinates finite: {','.join(row)!r}")
            continue
        actions = tuple(dict.fromkeys(a for a in cells[7:] if a))
        rows.append((lineno, video, t, track, box, actions))  # type: ignore[arg-type]
    if mode == "auto":
        mode = "frame"
    if units == "auto":  # a pixel box within [0, 1] would be one pixel wide
        inside = sum(-BOX_TOLERANCE <= min(r[4]) and max(r[4]) <= 1 + BOX_TOLERANCE for r in rows)
        units = "normalized" if rows and inside > 0.5 * len(rows) else "pixels"
    by_video: dict[str, dict[str, PersonTrack]] = {}
    first_line: dict[str, int] = {}
    for lineno, video, t, track, box, actions in rows:
        where = f"{path}:{lineno}"
        if mode == "frame":
            if not t.is_integer():
                errors.add(f"{where}: frame index {t:g} is not an integer (give times with a 'time' header)")
                continue
            tb = TrackBox(int(t), None, box, actions, where=where)
        else:
            tb = TrackBox(None, t, box, actions, where=where)
        first_line.setdefault(video, lineno)
        tracks = by_video.setdefault(video, {})
        tracks.setdefault(track, PersonTrack(track, [], where=where, max_gap_s=max_gap_s)).boxes.append(tb)
    errors.raise_if_any()
    return [
        VideoTracks(video=video, tracks=list(tracks.values()), source=str(path), units=units,
                    where=f"{path}:{first_line[video]}", format="csv")
        for video, tracks in by_video.items()
    ]


def _is_number(cells: Sequence[str]) -> bool:
    try:
        return bool(cells) and math.isfinite(float(cells[0]))
    except ValueError:
        return False


def write_person_csv(path: str | os.PathLike, rows: AvaRows, label_map: LabelMap) -> None:
    """Write AVA ground-truth rows as the per-person CSV (``video,time,track,x1,y1,x2,y2,action...``).

    One line per (video, timestamp, person id, box) with the names of all its actions; normalized boxes,
    times in seconds as in the rows. :func:`read_person_csv` reads it back. Written atomically.
    """
    groups: dict[tuple, list[str]] = {}
    for i in range(len(rows)):
        key = (str(rows.video_ids[i]), float(rows.timestamps[i]), int(rows.person_ids[i]),
               tuple(float(v) for v in rows.boxes[i]))
        names = groups.setdefault(key, [])
        if rows.action_ids[i] >= 0:
            names.append(label_map.name(int(rows.action_ids[i])))
    out = ["video,time,track,x1,y1,x2,y2,actions"]
    for (video, t, pid, box), names in groups.items():
        cells = [video, f"{t:.4f}".rstrip("0").rstrip("."), str(pid), *(f"{v:.6f}" for v in box), *names]
        out.append(",".join(_csv_cell(c) for c in cells))
    atomic_write(path, "\n".join(out) + "\n")


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text


# --------------------------------------------------------------------------------------------------
# Videos


def find_videos(paths: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Video files by id (file stem): each path is a video file or a folder of them (not recursive).

    Raises ConversionError when a path does not exist or two videos share a stem.
    """
    errors = _Errors()
    found: dict[str, Path] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file())
        elif p.is_file():
            files = [p]
        else:
            errors.add(f"{p}: no such video file or folder")
            continue
        for f in files:
            if f.stem in found and found[f.stem].resolve() != f.resolve():
                errors.add(f"{f}: video id {f.stem!r} also names {found[f.stem]}")
            found.setdefault(f.stem, f)
    errors.raise_if_any()
    return found


def _resolve_video(ref: str, videos: Mapping[str, Path]) -> str | None:
    """The id in ``videos`` that ``ref`` (an id, a file name or a path) names, or None."""
    if ref in videos:
        return ref
    name = Path(ref.replace("\\", "/")).name
    for vid, p in videos.items():
        if Path(p).name == name:
            return vid
    stem = Path(name).stem
    return stem if stem in videos else None


@dataclass
class _VideoInfo:
    path: Path
    fps: float
    width: int
    height: int
    num_frames: int | None


def _probe(path: Path) -> _VideoInfo:
    from detection.video import probe  # PyAV, only when converting

    info = probe(path)
    n = info.num_frames
    if n is None and info.duration_s:
        n = int(round(info.duration_s * info.fps))
    return _VideoInfo(path, float(info.fps), int(info.width), int(info.height), n)


# --------------------------------------------------------------------------------------------------
# Sampling tracks at keyframes


@dataclass
class _Sample:
    time_s: float
    box: np.ndarray  # (4,) float64 normalized
    actions: tuple[str, ...]


def _keyframes(info: _VideoInfo, rate: float | None, last_frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Keyframe (times in seconds, frame indices): every frame when ``rate`` is None, else k / rate."""
    n = info.num_frames if info.num_frames is not None else last_frame + 1
    if rate is None:
        frames = np.arange(n, dtype=np.int64)
        return frames / info.fps, frames
    k = np.arange(int(math.ceil(n / info.fps * rate)) + 1, dtype=np.int64)
    times = k / rate
    frames = np.rint(times * info.fps).astype(np.int64)
    keep = frames < n
    return times[keep], frames[keep]


def _sample_track(keys: np.ndarray, boxes: np.ndarray, outside: np.ndarray, actions: list[tuple[str, ...]],
                  query: np.ndarray, eps: float, end: float | None, max_gap: float | None) -> list[int | tuple]:
    """For each query position: the index of the box there, ``(a, b, w)`` to interpolate, or -1 (nobody).

    ``keys`` are the sorted positions of the track's boxes (frames or seconds, as ``query``). Between two
    boxes ``a < b`` a position is interpolated when ``a`` is not outside and the gap is at most
    ``max_gap``; after the last box it holds (index of the last) until ``end`` (exclusive) if given.
    """
    n = len(keys)
    i = np.searchsorted(keys, query - eps, side="left")  # first box at or after each query
    result: list[int | tuple] = []
    for q, j in zip(query.tolist(), i.tolist(), strict=True):
        if j < n and abs(keys[j] - q) <= eps:
            result.append(-1 if outside[j] else j)
        elif j == 0:
            result.append(-1)
        elif j == n:
            result.append(j - 1 if end is not None and q < end and not outside[j - 1] else -1)
        else:
            a, b = j - 1, j
            gap_ok = max_gap is None or keys[b] - keys[a] <= max_gap + eps
            if outside[a] or not gap_ok:
                result.append(-1)
            else:
                result.append((a, b, (q - keys[a]) / (keys[b] - keys[a])))
    return result


def _person_ids(tracks: Iterable[str]) -> dict[str, int]:
    """Integer track ids stay; otherwise the tracks of a video are numbered 0.. in sorted order."""
    names = sorted(set(tracks))
    if all(t.isdigit() for t in names) and len({int(t) for t in names}) == len(names):  # "7" and "007" clash
        return {t: int(t) for t in names}
    return {t: k for k, t in enumerate(names)}


# --------------------------------------------------------------------------------------------------
# The conversion


def convert_dataset(
    out: str | os.PathLike,
    annotations: Sequence[VideoTracks],
    videos: Mapping[str, str | os.PathLike],
    *,
    keyframe_rate: float | None = 1.0,
    label_map: LabelMap | None = None,
    val_fraction: float = 0.2,
    val_videos: Sequence[str] | None = None,
    seed: int = 0,
    copy: bool = False,
    video_map: Mapping[str, str] | None = None,
    tolerance: float = BOX_TOLERANCE,
) -> dict:
    """Convert person tracks into an AVA-format dataset under ``out``; returns the manifest (see the module).

    ``videos``: video id → file. Each :class:`VideoTracks` names its video (``video_map`` can override:
    keys are annotation files, their base names, or video references as written in the annotations;
    values are ids in ``videos``). ``keyframe_rate``: keyframes per second (None: every frame). A
    person's box at a keyframe is the box annotated at that frame or time, or the linear interpolation of
    the two around it (CVAT's rule; never past an outside box nor across a gap longer than the track's
    ``max_gap_s``). Boxes are normalized, and clipped when they leave the frame by at most ``tolerance``.
    ``label_map`` fixes the action ids (names not in it are errors); without one ids 1..K follow the
    declared actions, then the rest in sorted order. Split by video: ``val_videos`` (ids), else a
    seeded ``val_fraction`` of them (at least one each when there are two or more videos). ``copy``
    copies videos instead of symlinking them.

    Everything is validated before anything is written; every file is replaced atomically and the
    manifest comes last. Raises ConversionError listing each problem with its location.
    """
    if keyframe_rate is not None and not (keyframe_rate > 0 and math.isfinite(keyframe_rate)):
        raise ValueError(f"keyframe_rate must be a positive number of keyframes per second, got {keyframe_rate}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    videos = {vid: Path(p) for vid, p in videos.items()}
    video_map = dict(video_map or {})
    errors = _Errors()

    # -- which video each annotation belongs to ------------------------------------------------------
    assigned: dict[str, VideoTracks] = {}
    for ann in annotations:
        ref = next((video_map[k] for k in (ann.source, Path(ann.source).name, ann.video) if k in video_map), ann.video)
        vid = _resolve_video(ref, videos)
        where = ann.where or ann.source
        if vid is None:
            known = sorted(videos)
            listed = ", ".join(known[:10]) + (f", ... ({len(known)} in all)" if len(known) > 10 else "")
            errors.add(f"{where}: video {ref!r} is not among the given videos ({listed or 'none'}); "
                       f"pass it with --videos or map it with --video-map")
        elif not _SAFE_ID.match(vid):
            errors.add(f"{videos[vid]}: video id {vid!r} is not a safe file name (letters, digits, '_-.'); rename it")
        elif vid in assigned:
            errors.add(f"{where}: video {vid!r} is also annotated by {assigned[vid].where or assigned[vid].source}")
        else:
            assigned[vid] = ann
    infos: dict[str, _VideoInfo] = {}
    for vid in sorted(assigned):
        try:
            infos[vid] = _probe(videos[vid])
        except Exception as err:  # VideoReadError and whatever a broken container raises
            errors.add(f"{videos[vid]}: cannot read video: {err}")

    # -- labels ----------------------------------------------------------------------------------------
    declared = list(dict.fromkeys(a for ann in assigned.values() for a in ann.declared_actions))
    seen = {a for ann in assigned.values() for tr in ann.tracks for b in tr.boxes for a in b.actions}
    if label_map is None:
        names = declared + sorted(seen - set(declared))
        label_map = LabelMap.from_pairs(enumerate(names, start=1))
    name_to_id = dict(zip(label_map.names, label_map.ids, strict=True))

    # -- validate, normalize and sample each video -----------------------------------------------------
    gt: list[tuple[str, float, tuple[float, ...], int, int]] = []
    counts = {"tracks": 0, "boxes": 0, "keyframe_boxes": 0, "keyframe_boxes_without_action": 0}
    person_ids: dict[str, dict[str, int]] = {}
    for vid, ann in sorted(assigned.items()):
        info = infos.get(vid)
        if info is None:
            continue
        pids = _person_ids(tr.track for tr in ann.tracks)
        person_ids[vid] = pids
        for track in ann.tracks:
            counts["tracks"] += 1
            counts["boxes"] += len(track.boxes)
            samples = _convert_track(track, ann, info, keyframe_rate, name_to_id, tolerance, errors)
            for s in samples:
                counts["keyframe_boxes"] += 1
                if not s.actions:
                    counts["keyframe_boxes_without_action"] += 1
                for a in s.actions:
                    gt.append((vid, round(s.time_s, 4), tuple(s.box.tolist()), name_to_id[a], pids[track.track]))

    # -- split ---------------------------------------------------------------------------------------
    ids = sorted(infos)
    splits = _split(ids, val_fraction, val_videos, seed, errors)
    errors.raise_if_any()

    # -- write -----------------------------------------------------------------------------------------
    root = Path(out)
    manifest_path = root / "manifest.json"
    old = read_json_object(manifest_path)
    manifest_path.unlink(missing_ok=True)  # a folder without a manifest is an unfinished conversion
    annotations_dir = root / "annotations"
    gt = sorted(set(gt), key=lambda r: (r[0], r[1], r[4], r[3], r[2]))
    for split, members in splits.items():
        keep = set(members)
        part = [r for r in gt if r[0] in keep]
        rows = AvaRows.build([r[0] for r in part], [r[1] for r in part],
                             np.array([r[2] for r in part], np.float32).reshape(-1, 4), [r[3] for r in part],
                             person_ids=[r[4] for r in part])
        write_ava_csv(annotations_dir / f"{split}.csv", rows, kind="groundtruth")
        write_exclusions(annotations_dir / f"{split}_excluded_timestamps.csv", [])
    label_map.to_pbtxt(annotations_dir / "label_map.pbtxt", evaluated_only=False)
    video_files = {vid: _place_video(infos[vid].path, root / "videos", vid, copy) for vid in ids}
    _remove_stale_videos(root, old, set(video_files.values()))

    fps_values = [round(infos[v].fps, 3) for v in ids]
    fps = max(set(fps_values), key=fps_values.count) if fps_values else None
    if fps is not None and float(fps).is_integer():
        fps = int(fps)
    data = {
        "root": str(root.resolve()),
        "label_map": "annotations/label_map.pbtxt",
        "source": "videos",
        "fps": fps,
        "time_offset": 0,
        "train_annotations": "annotations/train.csv",
        "val_annotations": "annotations/val.csv",
        "train_proposals": None,
        "val_proposals": None,
        "synthetic": None,
    }
    import yaml

    atomic_write(root / "data.yaml", yaml.safe_dump({"data": data}, sort_keys=False))
    split_of = {v: s for s, members in splits.items() for v in members}
    manifest = {
        "generator": "data_prep.convert",
        "sources": sorted({str(Path(a.source).resolve()) for a in assigned.values()}),
        "formats": sorted({a.format for a in assigned.values() if a.format}),
        "keyframe_rate": keyframe_rate if keyframe_rate is not None else "every_frame",
        "time_offset": 0,
        "videos": {
            vid: {
                "file": video_files[vid],
                "source": str(infos[vid].path.resolve()),
                "annotations": str(Path(assigned[vid].source).resolve()),
                "fps": infos[vid].fps,
                "width": infos[vid].width,
                "height": infos[vid].height,
                "num_frames": infos[vid].num_frames,
            }
            for vid in ids
        },
        "splits": splits,
        "split": {"val_videos": splits["val"]} if val_videos is not None else {"val_fraction": val_fraction,
                                                                               "seed": seed},
        "labels": [{"id": i, "name": n} for i, n in label_map],
        "person_ids": person_ids,
        "counts": {**counts, "rows": {s: sum(split_of[r[0]] == s for r in gt) for s in splits}},
        "videos_copied": copy,
        "files": {
            "groundtruth": {s: f"annotations/{s}.csv" for s in splits},
            "excluded_timestamps": {s: f"annotations/{s}_excluded_timestamps.csv" for s in splits},
            "label_map": "annotations/label_map.pbtxt",
            "videos": "videos/{video_id}.<ext>",
            "data_config": "data.yaml",
        },
    }
    atomic_write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _split(ids: list[str], val_fraction: float, val_videos: Sequence[str] | None, seed: int,
           errors: _Errors) -> dict[str, list[str]]:
    """Train/val video ids: the ``val_videos`` given, else a seeded shuffle's first ``val_fraction``."""
    if val_videos is not None:
        val = set(val_videos)
        for v in sorted(val - set(ids)):
            errors.add(f"--val-videos: {v!r} is not a converted video ({', '.join(ids) or 'none'})")
    else:
        n_val = int(round(len(ids) * val_fraction))
        if len(ids) >= 2 and val_fraction > 0:
            n_val = min(max(n_val, 1), len(ids) - 1)
        order = list(ids)
        random.Random(seed).shuffle(order)
        val = set(order[:n_val])
    return {"train": [v for v in ids if v not in val], "val": [v for v in ids if v in val]}


def _convert_track(track: PersonTrack, ann: VideoTracks, info: _VideoInfo, rate: float | None,
                   name_to_id: Mapping[str, int], tolerance: float, errors: _Errors) -> list[_Sample]:
    """Validate one track's boxes (reporting to ``errors``) and sample it at the video's keyframes."""
    if ann.units == "normalized":
        scale = (1.0, 1.0)
    else:
        w, h = ann.frame_size or (info.width, info.height)
        if ann.frame_size and abs(w / h - info.width / info.height) > 0.01 * info.width / info.height:
            errors.add(f"{ann.where or ann.source}: annotated frame size {w}x{h} does not match the video's "
                       f"{info.width}x{info.height} ({info.path})")
            return []
        scale = (float(w), float(h))
    by_time = any(b.frame is None for b in track.boxes)
    if by_time and any(b.frame is not None for b in track.boxes):
        errors.add(f"{track.where}: track {track.track} mixes frame indices and times")
        return []
    slack = info.fps * 0.5  # a box this far past the end still counts as inside (frame counts differ)
    last_ok = None if info.num_frames is None else info.num_frames - 1 + slack
    merged: dict[float, tuple[np.ndarray, list[str], bool, str]] = {}
    unknown_labels: dict[str, list] = {}  # label -> [first place, number of boxes]
    for b in track.boxes:
        key = float(b.time_s) if by_time else float(b.frame)
        position = key * info.fps if by_time else key
        if last_ok is not None and position > last_ok:
            what = f"time {key:g} s" if by_time else f"frame {int(key)}"
            errors.add(f"{b.where}: {what} is past the end of video {info.path.name} "
                       f"({info.num_frames} frames at {info.fps:g} fps)")
            continue
        unknown = [a for a in b.actions if a not in name_to_id]
        for a in unknown:
            unknown_labels.setdefault(a, [b.where, 0])[1] += 1
        box = np.array(b.box, np.float64) / np.array([scale[0], scale[1], scale[0], scale[1]])
        if not b.outside:
            if not (box[2] > box[0] and box[3] > box[1]):
                errors.add(f"{b.where}: empty or inverted box (need x2 > x1 and y2 > y1): {list(b.box)}")
                continue
            if box.min() < -tolerance or box.max() > 1 + tolerance:
                units = "normalized" if ann.units == "normalized" else f"pixels of {scale[0]:g}x{scale[1]:g}"
                errors.add(f"{b.where}: box {list(b.box)} is outside the frame ({units})")
                continue
            box = np.clip(box, 0.0, 1.0)
        if unknown:
            continue
        if key in merged:
            prev_box, prev_actions, prev_outside, prev_where = merged[key]
            if prev_outside != b.outside or (not b.outside and not np.allclose(prev_box, box, atol=1e-9)):
                what = f"time {key:g} s" if by_time else f"frame {int(key)}"
                errors.add(f"{b.where}: track {track.track} has another box at {what} ({prev_where})")
            else:
                prev_actions.extend(a for a in b.actions if a not in prev_actions)
            continue
        merged[key] = (box, list(b.actions), b.outside, b.where)
    for label, (where, count) in unknown_labels.items():
        more = f" (and {count - 1} more boxes of track {track.track})" if count > 1 else ""
        errors.add(f"{where}: unknown label {label!r} (not in the label map){more}")
    if not merged:
        return []
    keys = np.array(sorted(merged), np.float64)
    entries = [merged[k] for k in keys.tolist()]
    boxes = np.stack([e[0] for e in entries])
    outside = np.array([e[2] for e in entries], bool)
    actions = [tuple(e[1]) for e in entries]
    last_frame = int(math.ceil(keys[-1] * info.fps if by_time else keys[-1]))
    if track.end_frame is not None:
        last_frame = max(last_frame, track.end_frame - 1)
    times, frames = _keyframes(info, rate, last_frame)
    if by_time:
        query, eps = times, _TIME_EPS
        end = None if track.end_frame is None else track.end_frame / info.fps
        max_gap = track.max_gap_s
    else:
        query, eps = frames.astype(np.float64), 1e-9
        end = None if track.end_frame is None else float(track.end_frame)
        max_gap = None if track.max_gap_s is None else track.max_gap_s * info.fps
    lo = np.searchsorted(query, keys[0] - eps)
    hi = len(query) if end is not None else np.searchsorted(query, keys[-1] + eps, side="right")
    samples = []
    for t, hit in zip(times[lo:hi].tolist(), _sample_track(keys, boxes, outside, actions, query[lo:hi], eps, end,
                                                             max_gap), strict=True):
        if isinstance(hit, tuple):
            a, b, w = hit
            box = np.clip(boxes[a] + w * (boxes[b] - boxes[a]), 0.0, 1.0)
            acts = actions[a]  # CVAT carries a box's attributes until the next keyframe
        elif hit >= 0:
            box, acts = boxes[hit], actions[hit]
        else:
            continue
        if box[2] > box[0] and box[3] > box[1]:
            samples.append(_Sample(t, box, acts))
    return samples


def _place_video(src: Path, folder: Path, vid: str, copy: bool) -> str:
    """Symlink (or copy) ``src`` to ``folder/<vid><ext>`` atomically; returns the path relative to the root.

    Nothing is done when the link (or an identical copy: same size and modification time) is already
    there, or when ``src`` is that very file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{vid}{src.suffix.lower()}"
    rel = f"videos/{dst.name}"
    target = src.resolve()
    if dst.exists() and not dst.is_symlink():
        if dst.resolve() == target:
            return rel
        if copy:
            s, d = target.stat(), dst.stat()
            if s.st_size == d.st_size and s.st_mtime_ns == d.st_mtime_ns:
                return rel
    elif not copy and dst.is_symlink() and os.readlink(dst) == str(target):
        return rel
    tmp = folder / f".{dst.name}.tmp"
    tmp.unlink(missing_ok=True)
    if copy:
        shutil.copy2(target, tmp)
    else:
        os.symlink(target, tmp)
    os.replace(tmp, dst)
    return rel


def _remove_stale_videos(root: Path, old: dict | None, keep: set[str]) -> None:
    """Delete the video links/copies a previous conversion made that this one does not (names validated)."""
    if not old or old.get("generator") != "data_prep.convert" or not isinstance(old.get("videos"), dict):
        return
    for entry in old["videos"].values():
        rel = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(rel, str) or rel in keep:
            continue
        name = rel.removeprefix("videos/")
        if rel.startswith("videos/") and _SAFE_ID.match(name):
            (root / "videos" / name).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------
# Command line


def add_convert_parser(prep_sub: argparse._SubParsersAction) -> None:
    """Register ``actdet prep convert``."""
    p = prep_sub.add_parser(
        "convert",
        help="convert CVAT video XML or a per-person CSV into an AVA-format dataset",
        description=(
            "Convert person tracks with actions (CVAT 'for video 1.1' XML, one file per video, or a CSV of "
            "video,frame|time,track,x1,y1,x2,y2,action...) into an AVA-format dataset: keyframe ground truth, "
            "label map, videos (symlinked), a manifest and a data.yaml config fragment. All problems are "
            "reported with their file:line (or XML track and frame) and nothing is written. Frames and "
            "frame lists, when wanted: actdet prep ava frames --root OUT --source videos; "
            "actdet prep ava lists --root OUT."
        ),
    )
    p.add_argument("--format", required=True, choices=["cvat", "csv"], help="annotation format")
    p.add_argument("--annotations", required=True, nargs="+", metavar="FILE", help="annotation files")
    p.add_argument("--videos", required=True, nargs="+", metavar="DIR_OR_FILE",
                   help="video files, or folders of them; a video's id is its file name without extension")
    p.add_argument("--out", required=True, help="dataset root to write")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--keyframe-rate", type=float, default=1.0, metavar="HZ",
                      help="keyframes per second (default: %(default)s, as AVA)")
    when.add_argument("--every-frame", action="store_true", help="a keyframe at every frame")
    p.add_argument("--label-map", help="label map (.pbtxt or a text list) fixing the action ids; other labels "
                                       "are errors (default: ids 1..K from the annotations)")
    p.add_argument("--actions-from", choices=["auto", "attributes", "label"], default="auto",
                   help="CVAT: actions from the boxes' attributes of person tracks, from the labels of "
                        "non-person tracks, or both (auto, the default)")
    p.add_argument("--person-label", action="append", metavar="NAME",
                   help="CVAT: label(s) of person tracks (default: person)")
    p.add_argument("--action-attributes", nargs="+", metavar="NAME",
                   help="CVAT: only these attributes carry actions (default: every checkbox, select and radio)")
    p.add_argument("--csv-timing", choices=["auto", "frame", "seconds"], default="auto",
                   help="CSV: column 2 holds frame indices or seconds (default: from the header, else frames)")
    p.add_argument("--box-units", choices=["auto", "pixels", "normalized"], default="auto",
                   help="CSV: box coordinates (default: normalized when all lie in [0, 1], else pixels)")
    p.add_argument("--max-gap", type=float, default=1.0, metavar="SECONDS",
                   help="CSV: rows of a track further apart are not interpolated between (default: %(default)s)")
    p.add_argument("--video-map", nargs="+", default=[], metavar="NAME=VIDEO",
                   help="video of an annotation file (or of a video name used in the annotations)")
    split = p.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float, default=0.2, help="share of videos for val (default: 0.2)")
    split.add_argument("--val-videos", help="comma-separated video ids for val")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default: %(default)s)")
    p.add_argument("--copy", action="store_true", help="copy the videos instead of symlinking them")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> int:
    errors = _Errors()
    video_map: dict[str, str] = {}
    for item in args.video_map:
        name, sep, video = item.partition("=")
        if not sep or not name or not video:
            errors.add(f"--video-map: expected NAME=VIDEO, got {item!r}")
        video_map[name] = video
    label_map = None
    if args.label_map:
        try:
            label_map = LabelMap.load(args.label_map)
        except (OSError, ValueError) as err:
            errors.add(f"{args.label_map}: {err}")
    videos: dict[str, Path] = {}
    try:
        videos = find_videos(args.videos)
    except ConversionError as err:
        errors.extend(err)
    # a --video-map value may be a file rather than an id
    for name, video in list(video_map.items()):
        if video not in videos and Path(video).is_file():
            videos.setdefault(Path(video).stem, Path(video))
            video_map[name] = Path(video).stem
    annotations: list[VideoTracks] = []
    for path in args.annotations:
        try:
            if args.format == "cvat":
                from data_prep.cvat import cvat_video_tracks, read_cvat_video_xml

                annotations.append(cvat_video_tracks(
                    read_cvat_video_xml(path), actions_from=args.actions_from,
                    person_labels=args.person_label, action_attributes=args.action_attributes))
            else:
                annotations += read_person_csv(path, timing=args.csv_timing, units=args.box_units,
                                               max_gap_s=args.max_gap)
        except ConversionError as err:
            errors.extend(err)
    manifest = None
    if not errors.total:
        try:
            manifest = convert_dataset(
                args.out, annotations, videos,
                keyframe_rate=None if args.every_frame else args.keyframe_rate,
                label_map=label_map,
                val_fraction=args.val_fraction,
                val_videos=[v.strip() for v in args.val_videos.split(",") if v.strip()] if args.val_videos else None,
                seed=args.seed, copy=args.copy, video_map=video_map,
            )
        except ConversionError as err:
            errors.extend(err)
    if manifest is None:
        for message in errors.messages:
            print(message, file=sys.stderr)
        more = errors.total - len(errors.messages)
        print(f"actdet prep convert: {errors.total} error(s){f' ({more} not shown)' if more else ''}; "
              f"nothing written", file=sys.stderr)
        return 2
    rows = manifest["counts"]["rows"]
    print(f"AVA-format dataset in {args.out}: {len(manifest['videos'])} videos "
          f"(train {len(manifest['splits']['train'])}, val {len(manifest['splits']['val'])}), "
          f"{len(manifest['labels'])} labels, ground-truth rows: train {rows['train']}, val {rows['val']}; "
          f"config fragment {Path(args.out) / 'data.yaml'}")
    return 0
