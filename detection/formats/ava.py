"""AVA file formats: box CSVs (ground truth, detections, proposals), excluded timestamps, frame lists.

One reader and one writer per format. The layouts are those of the AVA release, read by the official
ActivityNet evaluator and by PySlowFast's ``ava_helper``:

- box CSV: ``video_id,timestamp,x1,y1,x2,y2,action_id,last`` with normalized boxes; ``action_id`` may be
  empty (person proposals); ``last`` is the person id in ground truth and the score in detections.
- excluded timestamps: ``video_id,timestamp``.
- frame list: a header line, then ``original_video_id video_index frame_index path labels``
  (space separated, 0-based ``frame_index``, ``path`` relative to the frame folder).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from detection.structures import as_boxes

__all__ = [
    "AvaRows",
    "FrameListEntry",
    "format_timestamp",
    "read_ava_csv",
    "write_ava_csv",
    "read_exclusions",
    "write_exclusions",
    "read_frame_list",
    "write_frame_list",
    "atomic_write",
]

Kind = Literal["groundtruth", "detections"]


@dataclass
class AvaRows:
    """The columns of an AVA box CSV, one entry per row (one row per box and action).

    timestamps are seconds (AVA keyframes are whole seconds, but fractional ones are kept).
    action_ids are -1 where the column is empty. For ground truth ``person_ids`` are set and ``scores``
    are 1; for detections ``scores`` are set and ``person_ids`` are -1.
    """

    video_ids: np.ndarray  # (N,) str
    timestamps: np.ndarray  # (N,) float64
    boxes: np.ndarray  # (N, 4) float32 normalized xyxy
    action_ids: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float32
    person_ids: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        n = len(self.video_ids)
        self.video_ids = np.asarray(self.video_ids, dtype=str).reshape(n)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(n)
        self.boxes = as_boxes(self.boxes, "AvaRows.boxes").reshape(n, 4)
        self.action_ids = np.asarray(self.action_ids, dtype=np.int64).reshape(n)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.person_ids = np.asarray(self.person_ids, dtype=np.int64).reshape(n)

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def build(
        cls,
        video_ids: Iterable[str],
        timestamps: Iterable[float],
        boxes: np.ndarray,
        action_ids: Iterable[int],
        scores: Iterable[float] | None = None,
        person_ids: Iterable[int] | None = None,
    ) -> AvaRows:
        """Rows from columns; missing scores default to 1 and missing person ids to -1."""
        video_ids = list(video_ids)
        n = len(video_ids)
        return cls(
            video_ids=np.asarray(video_ids, dtype=str),
            timestamps=np.fromiter(timestamps, dtype=np.float64, count=n),
            boxes=np.asarray(boxes, dtype=np.float32).reshape(n, 4),
            action_ids=np.fromiter(action_ids, dtype=np.int64, count=n),
            scores=np.ones(n, np.float32) if scores is None else np.fromiter(scores, np.float32, count=n),
            person_ids=np.full(n, -1, np.int64) if person_ids is None else np.fromiter(person_ids, np.int64, n),
        )

    def select(self, keep: np.ndarray) -> AvaRows:
        return AvaRows(
            self.video_ids[keep],
            self.timestamps[keep],
            self.boxes[keep],
            self.action_ids[keep],
            self.scores[keep],
            self.person_ids[keep],
        )


def format_timestamp(seconds: float) -> str:
    """AVA's zero-padded whole seconds (``0902``), or up to 4 decimals for fractional times."""
    if float(seconds).is_integer():
        return f"{int(seconds):04d}"
    return f"{seconds:.4f}".rstrip("0")


def atomic_write(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def read_ava_csv(path: str | Path, kind: Kind = "detections") -> AvaRows:
    """Read an AVA box CSV of 7 or 8 columns.

    ``kind`` says what the 8th column holds: the person id (``"groundtruth"``) or the score
    (``"detections"``; 1.0 when absent, as the official evaluator assumes). Raises ValueError naming the
    file, the line and the text of a malformed row (column count, non-numeric field, inverted box,
    non-finite value).
    """
    path = Path(path)
    video_ids: list[str] = []
    timestamps: list[float] = []
    coords: list[list[float]] = []
    actions: list[int] = []
    last: list[float] = []
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) not in (7, 8):
                raise ValueError(f"{path}:{lineno}: expected 7 or 8 columns, got {len(row)}: {','.join(row)!r}")
            try:
                t = float(row[1])
                box = [float(v) for v in row[2:6]]
                action = int(row[6]) if row[6].strip() else -1
                value = float(row[7]) if len(row) == 8 and row[7].strip() else float("nan")
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}: {','.join(row)!r}") from None
            if not (np.isfinite(t) and np.isfinite(box).all()) or (kind == "detections" and np.isinf(value)):
                raise ValueError(f"{path}:{lineno}: non-finite value: {','.join(row)!r}")
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"{path}:{lineno}: inverted box (x2 < x1 or y2 < y1): {','.join(row)!r}")
            video_ids.append(row[0])
            timestamps.append(t)
            coords.append(box)
            actions.append(action)
            last.append(value)
    values = np.asarray(last, dtype=np.float64)
    n = len(video_ids)
    if kind == "groundtruth":
        person_ids = np.where(np.isnan(values), -1, values).astype(np.int64)
        scores = np.ones(n, np.float32)
    else:
        scores = np.where(np.isnan(values), 1.0, values).astype(np.float32)
        person_ids = np.full(n, -1, np.int64)
    return AvaRows(
        video_ids=np.asarray(video_ids, dtype=str),
        timestamps=np.asarray(timestamps, dtype=np.float64),
        boxes=np.asarray(coords, dtype=np.float32).reshape(n, 4),
        action_ids=np.asarray(actions, dtype=np.int64),
        scores=scores,
        person_ids=person_ids,
    )


def write_ava_csv(path: str | Path, rows: AvaRows, kind: Kind = "detections", decimals: int = 3) -> None:
    """Write rows as an AVA box CSV (atomically).

    Ground truth gets the person id as the 8th column; detections the score (4 decimals). Empty
    ``action_id`` is written for -1 (person proposals). Boxes get ``decimals`` decimals (AVA uses 3).
    """
    out = io.StringIO()
    box_fmt = f"{{:.{decimals}f}},{{:.{decimals}f}},{{:.{decimals}f}},{{:.{decimals}f}}"
    for i in range(len(rows)):
        action = "" if rows.action_ids[i] < 0 else str(int(rows.action_ids[i]))
        last = str(int(rows.person_ids[i])) if kind == "groundtruth" else f"{float(rows.scores[i]):.4f}"
        out.write(
            f"{rows.video_ids[i]},{format_timestamp(float(rows.timestamps[i]))},"
            f"{box_fmt.format(*rows.boxes[i].tolist())},{action},{last}\n"
        )
    atomic_write(path, out.getvalue())


def read_exclusions(path: str | Path) -> set[tuple[str, int]]:
    """Read an excluded-timestamps CSV into ``{(video_id, second)}``; ValueError names file:line."""
    path = Path(path)
    keys: set[tuple[str, int]] = set()
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'video_id,timestamp', got {','.join(row)!r}")
            try:
                keys.add((row[0], int(float(row[1]))))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: timestamp {row[1]!r} is not a number") from None
    return keys


def write_exclusions(path: str | Path, keys: Iterable[tuple[str, int]]) -> None:
    """Write ``(video_id, second)`` keys as an excluded-timestamps CSV, sorted."""
    atomic_write(path, "".join(f"{v},{int(t):04d}\n" for v, t in sorted(keys)))


@dataclass(frozen=True)
class FrameListEntry:
    """One row of a PySlowFast frame list: a frame image of a video."""

    original_video_id: str
    video_index: int
    frame_index: int  # 0-based
    path: str  # relative to the frame folder, e.g. ``vid/vid_000001.jpg``
    labels: str = '""'


def read_frame_list(path: str | Path) -> list[FrameListEntry]:
    """Read a PySlowFast frame list (header line, then 5 space-separated columns)."""
    path = Path(path)
    entries = []
    with open(path, encoding="utf-8") as f:
        f.readline()
        for lineno, line in enumerate(f, start=2):
            row = line.split()
            if not row:
                continue
            if len(row) != 5:
                raise ValueError(f"{path}:{lineno}: expected 5 space-separated columns, got {line.strip()!r}")
            try:
                entries.append(FrameListEntry(row[0], int(row[1]), int(row[2]), row[3], row[4]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: video/frame index is not an integer: {line.strip()!r}") from None
    return entries


def write_frame_list(path: str | Path, entries: Iterable[FrameListEntry]) -> None:
    """Write a PySlowFast frame list with its header."""
    lines = ["original_vido_id video_id frame_id path labels"]  # PySlowFast's header, typo included
    lines += [f"{e.original_video_id} {e.video_index} {e.frame_index} {e.path} {e.labels}" for e in entries]
    atomic_write(path, "\n".join(lines) + "\n")
