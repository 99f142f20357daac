"""Files of the linking stage: keyframe detections as CSV (with track ids), and MOTChallenge tracks.

Detections CSV — AVA's detection layout, one row per box and class, with an optional 9th column::

    video_id,timestamp,x1,y1,x2,y2,action_id,score[,track_id]

Boxes are normalized; rows with the same video, timestamp and box are one person. A row with an empty
``action_id`` holds the person's detector score; a person without such a row gets score 1.0 (detection
CSVs come from thresholded detectors). ``track_id`` is -1 (or empty) for a box on no track. Timestamps
are seconds; frame index = ``round((timestamp - time_offset) * fps)``.

MOTChallenge txt — one line per box and frame::

    frame,id,x,y,w,h,conf,-1,-1,-1

with 1-based frames and pixel boxes (top-left corner, width, height). Pixels need the video's size;
without one, the boxes are written normalized (a 1 × 1 "image"), which MOT tools read like any other
unit as long as the ground truth uses the same. Rows are written as the tracks are finalised (grouped by
track piece, frames increasing within a piece); :func:`read_mot_txt` sorts them by frame and id.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detection.formats.ava import atomic_write, format_timestamp, read_ava_table
from detection.formats.files import AtomicTextWriter
from detection.formats.tubes import VideoTubes, write_tubes_json
from detection.structures import KeyframeDetections, LabelMap, as_boxes
from detection.tubes.linker import LinkerConfig, TrackPiece, TubeLinker

__all__ = [
    "DetectionRows",
    "KeyframeTable",
    "MotTracks",
    "MotWriter",
    "LinkSummary",
    "keyframes_from_rows",
    "link_csv",
    "read_detections_csv",
    "read_mot_txt",
    "write_detections_csv",
    "write_mot_txt",
]


# --------------------------------------------------------------------------------------------------
# Detections CSV


@dataclass
class DetectionRows:
    """The rows of a detections CSV: (N,) columns; ``action_ids`` and ``track_ids`` are -1 where empty."""

    video_ids: np.ndarray  # str
    timestamps: np.ndarray  # float64 seconds
    boxes: np.ndarray  # (N, 4) float32 normalized xyxy
    action_ids: np.ndarray  # int64
    scores: np.ndarray  # float32
    track_ids: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.video_ids)


def read_detections_csv(path: str | Path) -> DetectionRows:
    """Read a detections CSV of 7, 8 or 9 columns (see the module doc); the numbers through the AVA reader.

    Raises ValueError naming the file and line of a malformed row.
    """
    path = Path(path)
    raw = path.read_bytes()
    first = next((line for line in raw.splitlines() if line.strip()), b"")
    if first.count(b",") != 8:
        table = read_ava_table(path, "detections")
        track_ids = np.full(len(table), -1, np.int64)
    else:
        eight, track_ids = _split_track_ids(path, raw)
        # The AVA reader takes a file: hand it the first 8 columns, and name the real file in errors.
        fd, tmp = tempfile.mkstemp(suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(eight)
            table = read_ava_table(tmp, "detections")
        except ValueError as err:
            raise ValueError(str(err).replace(tmp, str(path))) from None
        finally:
            os.unlink(tmp)
    rows = table.to_rows("detections")
    return DetectionRows(rows.video_ids, rows.timestamps, rows.boxes, rows.action_ids, rows.scores, track_ids)


def _split_track_ids(path: Path, raw: bytes) -> tuple[bytes, np.ndarray]:
    """(the file without its 9th column, the track ids (N,) of its non-blank lines), vectorised."""
    a = np.frombuffer(raw if raw.endswith(b"\n") else raw + b"\n", dtype=np.uint8)
    if (a == ord('"')).any():  # quoted fields: the csv module
        return _split_track_ids_slow(path, raw)
    newline = np.flatnonzero(a == ord("\n"))
    start = np.concatenate([[0], newline[:-1] + 1])
    end = newline - ((newline > start) & (a[np.maximum(newline - 1, 0)] == ord("\r")))
    keep_line = end > start
    commas = np.flatnonzero(a == ord(","))
    per_line = np.searchsorted(commas, end) - np.searchsorted(commas, start)
    bad = keep_line & (per_line != 8)
    if bad.any():
        i = int(np.argmax(bad))
        text = a[start[i] : end[i]].tobytes().decode("utf-8", "replace")
        raise ValueError(f"{path}:{i + 1}: expected 9 columns like the first line, got {per_line[i] + 1}: {text!r}")
    lines = np.flatnonzero(keep_line)
    last_comma = commas[np.searchsorted(commas, end[lines]) - 1]
    ids = _parse_ids(path, a, last_comma + 1, end[lines], lines)
    # Drop the bytes from each line's last comma to its end (a few bytes per line: one pass per byte).
    keep = np.ones(len(a), dtype=bool)
    drop = end[lines] - last_comma
    for k in range(int(drop.max(initial=0))):
        keep[(last_comma + k)[drop > k]] = False
    return a[keep].tobytes(), ids


def _parse_ids(path: Path, a: np.ndarray, s: np.ndarray, e: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Integers in fields ``a[s:e]`` ([-]digits, blank for -1); ValueError naming the line otherwise."""
    width = int((e - s).max(initial=0))
    if width == 0:
        return np.full(len(s), -1, np.int64)
    if width > 18:
        i = int(np.argmax(e - s > 18))
        raise ValueError(f"{path}:{lines[i] + 1}: track id too long")
    offsets = np.arange(width)
    inside = offsets[None, :] < (e - s)[:, None]
    chars = np.where(inside, a[np.minimum(s[:, None] + offsets, len(a) - 1)], ord(" "))
    chars = chars.astype(np.int64)
    space = chars == ord(" ")
    minus = chars == ord("-")
    digit = (chars >= ord("0")) & (chars <= ord("9"))
    lead_minus = minus & (np.cumsum(~space, axis=1) == 1)  # the first non-blank character
    ok = (space | digit | lead_minus).all(axis=1)
    blank = space.all(axis=1)
    if not ok.all():
        i = int(np.argmax(~ok))
        text = a[s[i] : e[i]].tobytes().decode("utf-8", "replace")
        raise ValueError(f"{path}:{lines[i] + 1}: track id {text!r} is not an integer")
    value = np.zeros(len(s), np.int64)
    for k in range(width):  # Horner over the digit columns
        value = np.where(digit[:, k], value * 10 + (chars[:, k] - ord("0")), value)
    value = np.where(minus.any(axis=1), -value, value)
    return np.where(blank, -1, value)


def _split_track_ids_slow(path: Path, raw: bytes) -> tuple[bytes, np.ndarray]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    ids = []
    for lineno, row in enumerate(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            writer.writerow([])
            continue
        if len(row) != 9:
            raise ValueError(f"{path}:{lineno}: expected 9 columns like the first line, got {len(row)}")
        try:
            ids.append(int(row[8]) if row[8].strip() else -1)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: track id {row[8]!r} is not an integer") from None
        writer.writerow(row[:8])
    return out.getvalue().encode("utf-8"), np.asarray(ids, np.int64)


def write_detections_csv(path: str | Path, rows: DetectionRows, decimals: int = 3) -> None:
    """Write 9-column detection rows (track id last; empty action id for -1), atomically."""
    box_fmt = ",".join([f"{{:.{decimals}f}}"] * 4)
    lines = [
        f"{v},{format_timestamp(t)},{box_fmt.format(*b)},{'' if a < 0 else a},{s:.4f},{k}\n"
        for v, t, b, a, s, k in zip(
            rows.video_ids.tolist(), rows.timestamps.tolist(), rows.boxes.tolist(), rows.action_ids.tolist(),
            rows.scores.tolist(), rows.track_ids.tolist(), strict=True,
        )
    ]
    atomic_write(path, "".join(lines))


@dataclass
class KeyframeTable:
    """Detection rows grouped into keyframes: ``keyframes[video]`` in time order, and for every row the
    keyframe (``row_keyframe``, an index into :meth:`all_keyframes`) and box (``row_box``) it is in."""

    keyframes: dict[str, list[KeyframeDetections]]
    row_keyframe: np.ndarray
    row_box: np.ndarray
    unknown_labels: int = 0  # rows whose action id is not in the label map (ignored)

    def all_keyframes(self) -> list[KeyframeDetections]:
        return [kf for kfs in self.keyframes.values() for kf in kfs]

    def row_track_ids(self, tracked: Iterable[KeyframeDetections]) -> np.ndarray:
        """Track id of every row, from the keyframes (same order as :meth:`all_keyframes`) with track ids."""
        ids = [kf.track_ids if kf.track_ids is not None else np.full(len(kf), -1, np.int64) for kf in tracked]
        offsets = np.cumsum([0] + [len(i) for i in ids])
        flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        return flat[offsets[self.row_keyframe] + self.row_box]


def keyframes_from_rows(
    rows: DetectionRows, label_map: LabelMap, fps: float = 30.0, time_offset: float = 0.0, where: str = "detections"
) -> KeyframeTable:
    """Group rows into :class:`KeyframeDetections` per video (videos in order of first appearance).

    Scores of classes not in the label map are ignored (counted in ``unknown_labels``); classes a person
    has no row for score 0. ``time_s`` is ``timestamp - time_offset``. Raises ValueError naming ``where``
    for a timestamp before ``time_offset``, two timestamps on one frame, or one box with two track ids.
    """
    n = len(rows)
    num_classes = len(label_map)
    if n == 0:
        return KeyframeTable({}, np.zeros(0, np.int64), np.zeros(0, np.int64))
    _, first_row, video_code = np.unique(rows.video_ids, return_index=True, return_inverse=True)
    video_rank = np.argsort(np.argsort(first_row))[video_code]  # order of first appearance
    b = rows.boxes
    order = np.lexsort((b[:, 3], b[:, 2], b[:, 1], b[:, 0], rows.timestamps, video_rank))
    vr, ts, bs = video_rank[order], rows.timestamps[order], b[order]
    new_kf = np.ones(n, dtype=bool)
    new_kf[1:] = (vr[1:] != vr[:-1]) | (ts[1:] != ts[:-1])
    new_person = new_kf.copy()
    new_person[1:] |= (bs[1:] != bs[:-1]).any(axis=1)
    kf_of = np.cumsum(new_kf) - 1  # per sorted row
    person_of = np.cumsum(new_person) - 1
    num_persons = int(person_of[-1]) + 1
    person_kf = kf_of[new_person]
    person_first = np.flatnonzero(new_person)
    kf_first_person = np.searchsorted(person_kf, np.arange(int(kf_of[-1]) + 1))
    box_in_kf = np.arange(num_persons) - kf_first_person[person_kf]

    actions = rows.action_ids[order]
    scores = rows.scores[order].astype(np.float32)
    col = label_map.indices(actions)
    is_person_row = actions < 0
    unknown = int(((~is_person_row) & (col < 0)).sum())
    person_score = np.full(num_persons, -np.inf, np.float32)
    np.maximum.at(person_score, person_of[is_person_row], scores[is_person_row])
    person_score[~np.isfinite(person_score)] = 1.0
    action_scores = np.zeros((num_persons, num_classes), np.float32)
    scored = col >= 0
    np.maximum.at(action_scores, (person_of[scored], col[scored]), scores[scored])
    tids = rows.track_ids[order]
    person_tid = np.full(num_persons, -1, np.int64)
    np.maximum.at(person_tid, person_of, tids)
    clash = tids != person_tid[person_of]
    if clash.any():
        i = int(order[np.argmax(clash)])
        raise ValueError(f"{where}: row {i + 1}: one box of video {rows.video_ids[i]!r} at {rows.timestamps[i]:g} s "
                         f"has two track ids ({tids[np.argmax(clash)]} and {person_tid[person_of[np.argmax(clash)]]})")
    has_tids = bool((tids >= 0).any())

    kf_rows = np.flatnonzero(new_kf)
    time_s = ts[kf_rows] - time_offset
    frame = np.round(time_s * fps).astype(np.int64)
    kf_video = vr[kf_rows]
    if (time_s < -1e-9).any():
        i = int(order[kf_rows[np.argmax(time_s < -1e-9)]])
        raise ValueError(f"{where}: row {i + 1}: timestamp {rows.timestamps[i]:g} is before the time offset "
                         f"{time_offset:g}")
    same = (kf_video[1:] == kf_video[:-1]) & (frame[1:] == frame[:-1])
    if same.any():
        k = int(np.argmax(same))
        raise ValueError(f"{where}: video {rows.video_ids[order[kf_rows[k]]]!r}: timestamps {ts[kf_rows[k]]:g} and "
                         f"{ts[kf_rows[k + 1]]:g} fall on the same frame {frame[k]} at {fps:g} fps")
    names = rows.video_ids[order[kf_rows]]
    bounds = np.append(kf_first_person, num_persons)
    keyframes: dict[str, list[KeyframeDetections]] = {}
    person_boxes = bs[person_first]
    for k in range(len(kf_rows)):
        p0, p1 = bounds[k], bounds[k + 1]
        keyframes.setdefault(str(names[k]), []).append(KeyframeDetections(
            str(names[k]), int(frame[k]), float(time_s[k]), person_boxes[p0:p1], person_score[p0:p1],
            action_scores[p0:p1], person_tid[p0:p1] if has_tids else None,
        ))
    row_keyframe = np.empty(n, np.int64)
    row_box = np.empty(n, np.int64)
    row_keyframe[order] = kf_of
    row_box[order] = box_in_kf[person_of]
    if unknown:
        warnings.warn(f"{where}: {unknown} rows have action ids that are not in the label map; ignored", stacklevel=2)
    return KeyframeTable(keyframes, row_keyframe, row_box, unknown)


# --------------------------------------------------------------------------------------------------
# MOTChallenge tracks


_MOT_LINE = "{:d},{:d},{:.2f},{:.2f},{:.2f},{:.2f},{:.4f},-1,-1,-1\n"


class MotWriter(AtomicTextWriter):
    """Write MOTChallenge lines as track pieces come, to a temporary file renamed on :meth:`close`.

    ``width`` × ``height``: the video's size in pixels (1 × 1 keeps boxes normalized). Use as a context
    manager: on an exception the temporary file is removed and nothing is written.
    """

    def __init__(self, path: str | Path, width: float = 1.0, height: float = 1.0) -> None:
        super().__init__(path)
        self._scale = np.array([width, height, width, height], np.float64)

    def write(self, piece: TrackPiece) -> None:
        """One track piece: a line per frame."""
        self.write_rows(piece.frames, np.full(len(piece.frames), piece.track_id), piece.boxes, piece.scores)

    def write_rows(self, frames: np.ndarray, ids: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> None:
        """Lines for 0-based ``frames`` (L,), ``ids`` (L,), normalized xyxy ``boxes`` (L, 4), ``scores`` (L,)."""
        px = np.asarray(boxes, np.float64) * self._scale
        xywh = np.column_stack([px[:, :2], px[:, 2:] - px[:, :2]])
        self._file.write("".join(
            _MOT_LINE.format(f, i, *b, s)
            for f, i, b, s in zip((np.asarray(frames) + 1).tolist(), np.asarray(ids).tolist(), xywh.tolist(),
                                  np.asarray(scores, np.float64).tolist(), strict=True)
        ))


def write_mot_txt(path: str | Path, pieces: Iterable[TrackPiece], width: float = 1.0, height: float = 1.0) -> None:
    """Write track pieces as a MOTChallenge txt file (atomically); see :class:`MotWriter`."""
    with MotWriter(path, width, height) as writer:
        for piece in pieces:
            writer.write(piece)


@dataclass
class MotTracks:
    """MOTChallenge boxes sorted by frame and id: 0-based ``frames``, ``ids``, normalized xyxy ``boxes``
    (pixels divided by the size given to the reader), ``scores`` (the conf column)."""

    frames: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def read_mot_txt(path: str | Path, width: float = 1.0, height: float = 1.0) -> MotTracks:
    """Read a MOTChallenge txt file (ground truth or results; at least 7 columns, extra ones ignored).

    Raises ValueError naming the file and line of a short line, a non-numeric field, a frame below 1 or
    a negative width/height.
    """
    path = Path(path)
    values = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.replace(" ", "").split(",")
        if len(fields) < 7:
            raise ValueError(f"{path}:{lineno}: expected frame,id,x,y,w,h,conf[,...], got {line.strip()!r}")
        try:
            row = [float(v) for v in fields[:7]]
        except ValueError:
            raise ValueError(f"{path}:{lineno}: not a number in {line.strip()!r}") from None
        if not np.isfinite(row).all() or row[0] < 1 or row[0] != int(row[0]) or row[4] < 0 or row[5] < 0:
            raise ValueError(f"{path}:{lineno}: need an integer frame >= 1, finite values and w, h >= 0: "
                             f"{line.strip()!r}")
        values.append(row)
    arr = np.asarray(values, np.float64).reshape(-1, 7)
    order = np.lexsort((arr[:, 1], arr[:, 0]))
    arr = arr[order]
    scale = np.array([width, height, width, height])
    boxes = np.column_stack([arr[:, 2:4], arr[:, 2:4] + arr[:, 4:6]]) / scale
    return MotTracks(arr[:, 0].astype(np.int64) - 1, arr[:, 1].astype(np.int64),
                     as_boxes(boxes, f"{path}: boxes"), arr[:, 6].astype(np.float32))


# --------------------------------------------------------------------------------------------------
# CSV in, tubes out (``actdet link``)


_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def _per_video_path(template: str | Path, video: str, several: bool, what: str) -> Path:
    """``template`` with ``{video}`` replaced (required when there are several videos); ids are validated."""
    template = str(template)
    if "{video}" not in template:
        if several:
            raise ValueError(f"{what} {template!r}: the detections hold several videos; put {{video}} in the path")
        return Path(template)
    if not _SAFE_ID.match(video) or ".." in video:
        raise ValueError(f"video id {video!r} cannot become part of a file name ({what})")
    return Path(template.replace("{video}", video))


@dataclass
class LinkSummary:
    """What :func:`link_csv` did."""

    videos: int
    keyframes: int
    tracks: int
    tubes: int
    unknown_labels: int

    def __str__(self) -> str:
        return (f"{self.tubes} tubes on {self.tracks} tracks from {self.keyframes} keyframes of "
                f"{self.videos} video(s)")


def link_csv(
    detections: str | Path,
    label_map: LabelMap,
    out: str | Path,
    fps: float = 30.0,
    time_offset: float = 0.0,
    config: LinkerConfig | None = None,
    tracks: str | Path | None = None,
    detections_out: str | Path | None = None,
    size: tuple[int, int] | None = None,
    num_frames: int | None = None,
    progress: bool = False,
) -> LinkSummary:
    """Link a detections CSV into the tubes JSON ``out`` (one object per video, a list when several).

    tracks: MOTChallenge txt of the tracks (``{video}`` in the path for one file per video, required
    with several videos); pixels when ``size`` (width, height) is given, else normalized (with a warning).
    detections_out: the input rows with their track id as a 9th column. The JSON's width/height are
    ``size`` or 0 (unknown). Keyframes with track ids in the input keep them (``config.use_track_ids``).
    Raises ValueError on bad input, naming the file and line or video and frame.
    """
    from tqdm import tqdm

    config = config or LinkerConfig()
    rows = read_detections_csv(detections)
    table = keyframes_from_rows(rows, label_map, fps, time_offset, where=str(detections))
    several = len(table.keyframes) > 1
    width, height = size if size is not None else (0, 0)
    if tracks is not None and size is None:
        print(f"warning: no video size given; {tracks} holds normalized boxes (a 1x1 image)", file=sys.stderr)
    labels = dict(zip(label_map.ids, label_map.names, strict=True))
    videos, tracked, num_tracks = [], [], 0
    for video, keyframes in table.keyframes.items():
        # The keyframe interval: the smallest gap (keyframes where nobody was detected have no rows).
        gaps = np.diff([kf.frame_index for kf in keyframes])
        stride = int(gaps.min()) if len(gaps) else None
        linker = TubeLinker(label_map, fps, stride, config, num_frames, keep_tracks=tracks is not None,
                            keep_keyframes=True)
        writer = None
        if tracks is not None:
            writer = MotWriter(_per_video_path(tracks, video, several, "--tracks"), width or 1, height or 1)
        try:
            tubes = []
            for kf in tqdm(keyframes, desc=video, unit="keyframe", disable=not progress, leave=False):
                tubes += linker.update(kf)
                if writer is not None:
                    for piece in linker.pop_track_pieces():
                        writer.write(piece)
            tubes += linker.finish()
            for piece in linker.pop_track_pieces():
                if writer is not None:
                    writer.write(piece)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.close()
        kept = linker.pop_keyframes()
        tracked += kept
        ids = np.concatenate([kf.track_ids for kf in kept]) if kept else np.zeros(0, np.int64)
        num_tracks += len(np.unique(ids[ids >= 0]))
        videos.append(VideoTubes(video, float(fps), int(width), int(height), labels, tubes))
    write_tubes_json(out, videos if several else (videos[0] if videos else []))
    if detections_out is not None:
        rows.track_ids = table.row_track_ids(tracked)
        write_detections_csv(detections_out, rows)
    return LinkSummary(len(videos), len(tracked), num_tracks, sum(len(v.tubes) for v in videos),
                       table.unknown_labels)
