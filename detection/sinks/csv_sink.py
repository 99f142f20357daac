"""``detections.csv``: one row per person and action on every keyframe, streamed to disk as keyframes come.

Rows are AVA's detection layout, ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` (normalized boxes,
timestamp = ``time_offset`` + keyframe time in seconds), with an optional 9th column ``track_id`` (-1: on
no track) and then also one row per person with an empty ``action_id`` and the detector's score — the
layout :func:`detection.tubes.io.read_detections_csv` reads. Without the 9th column the file is exactly
what the official ActivityNet evaluator reads (7-8 columns, no empty action ids), which is what ``ava``
keyframes are for. Numbers are formatted like :func:`~detection.formats.ava.write_ava_csv` (3 decimals for
boxes, 4 for scores). The rows go to ``.<name>.tmp`` and :meth:`close` renames it into place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from detection.formats.ava import format_timestamp
from detection.formats.files import AtomicTextWriter
from detection.structures import KeyframeDetections, LabelMap

__all__ = ["DetectionsCsvSink"]


class DetectionsCsvSink(AtomicTextWriter):
    """Append keyframes' detections to a CSV, atomically renamed on :meth:`close`.

    ``label_map``: the columns of ``action_scores``. ``min_score``: action rows scoring at least this are
    written (0 writes every class, as frame-mAP wants). ``track_ids``: write the 9th column and the person
    rows. Use as a context manager: an exception removes the temporary file.
    """

    def __init__(self, path: str | os.PathLike, label_map: LabelMap, *, time_offset: float = 0.0,
                 min_score: float = 0.0, track_ids: bool = True, decimals: int = 3) -> None:
        super().__init__(path)
        self._ids = [str(i) for i in label_map.ids]
        self.time_offset, self.min_score, self.track_ids = float(time_offset), float(min_score), track_ids
        self._box = ",".join([f"{{:.{decimals}f}}"] * 4)
        self.rows = 0

    def write(self, keyframes: Iterable[KeyframeDetections]) -> None:
        """Rows of each keyframe: people in their order, each person's row (with track ids) then its actions."""
        for kf in keyframes:
            if not len(kf):
                continue
            stamp = format_timestamp(self.time_offset + kf.time_s)
            head = [f"{kf.video_id},{stamp},{self._box.format(*b)}," for b in kf.boxes.tolist()]
            tids = kf.track_ids.tolist() if kf.track_ids is not None else [-1] * len(kf)
            person, column = np.nonzero(kf.action_scores >= self.min_score)  # row-major: person, then class
            scores = kf.action_scores[person, column].tolist()
            lines: list[str] = []
            if self.track_ids:
                starts = np.searchsorted(person, np.arange(len(kf) + 1))
                for p in range(len(kf)):
                    lines.append(f"{head[p]},{float(kf.person_scores[p]):.4f},{tids[p]}\n")
                    lines += [f"{head[p]}{self._ids[c]},{s:.4f},{tids[p]}\n"
                              for c, s in zip(column[starts[p]:starts[p + 1]].tolist(),
                                              scores[starts[p]:starts[p + 1]], strict=True)]
            else:
                lines = [f"{head[p]}{self._ids[c]},{s:.4f}\n"
                         for p, c, s in zip(person.tolist(), column.tolist(), scores, strict=True)]
            self._file.write("".join(lines))
            self.rows += len(lines)
