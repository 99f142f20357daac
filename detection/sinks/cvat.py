"""``cvat.xml``: person tracks with their actions in CVAT's "for video 1.1" format, for human review.

One ``<track label="person">`` per person track with a box on every frame the track covers (pixels of
``original_size``), the actions as checkbox attributes of the ``person`` label, set per frame (``true``
where a tube of that action covers the frame), and an ``outside="1"`` box on the frame after a track's
last one. Boxes on keyframes of the schedule, where attributes change, and at a track's ends are
keyframes (``keyframe="1"``); the rest are the tracker's interpolation. This is the layout CVAT's own
exporter writes and its importer reads; :func:`data_prep.cvat.read_cvat_video_xml` reads it back.

Bounded memory: track boxes are spilled to a temporary binary file as they come (36 bytes a box) and
sorted by track when the video ends; only the tube intervals (one per tube) stay in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from detection.structures import LabelMap, Tube
from detection.tubes.linker import TrackPiece

__all__ = ["CvatVideoWriter", "PERSON_LABEL"]

PERSON_LABEL = "person"
_BOX = np.dtype([("track", "<i8"), ("frame", "<i8"), ("box", "<f4", (4,)), ("score", "<f4")])


class CvatVideoWriter:
    """Collect tracks and tubes of one video, then write the CVAT XML on :meth:`close`.

    ``width`` × ``height``: the video's size in pixels; ``name``: the task name; ``source``: the video's
    file name. Boxes arrive normalized. :meth:`close` takes the number of frames of the video (the task's
    ``size``; frames ``0 .. num_frames - 1``) and renames the finished file into place.
    """

    def __init__(self, path: str | os.PathLike, label_map: LabelMap, width: int, height: int, *, name: str,
                 source: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.label_map, self.width, self.height, self.name, self.source = label_map, width, height, name, source
        fd, spill = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".boxes", dir=self.path.parent)
        self._spill_path = Path(spill)
        self._spill = os.fdopen(fd, "wb")
        self._boxes = 0
        self._intervals: list[tuple[int, int, int, int]] = []  # (track, label column, first, last frame)
        self._keyframes: list[int] = []
        self._closed = False

    def add_pieces(self, pieces: Iterable[TrackPiece]) -> None:
        """Track trajectories (normalized boxes on consecutive frames)."""
        for piece in pieces:
            rows = np.zeros(len(piece.frames), _BOX)
            rows["track"], rows["frame"], rows["box"], rows["score"] = (piece.track_id, piece.frames, piece.boxes,
                                                                       piece.scores)
            rows.tofile(self._spill)
            self._boxes += len(rows)

    def add_tubes(self, tubes: Iterable[Tube]) -> None:
        """Action tubes: their frames set the action's attribute on their track's boxes."""
        for tube in tubes:
            if tube.track_id >= 0:
                self._intervals.append((tube.track_id, self.label_map.index(tube.label), tube.start_frame,
                                        tube.end_frame))

    def add_keyframes(self, frame_indices: Iterable[int]) -> None:
        """Frames of the keyframe schedule (boxes there become CVAT keyframes)."""
        self._keyframes.extend(int(i) for i in frame_indices)

    def _labels_xml(self) -> str:
        attrs = "".join(
            f"<attribute><name>{escape(name)}</name><mutable>True</mutable><input_type>checkbox</input_type>"
            f"<default_value>false</default_value><values>false</values></attribute>"
            for _, name in self.label_map
        )
        return (f"<labels><label><name>{PERSON_LABEL}</name><color>#e6194b</color><type>rectangle</type>"
                f"<attributes>{attrs}</attributes></label></labels>")

    def close(self, num_frames: int) -> None:
        """Write the XML for a video of ``num_frames`` frames and move it to ``path``."""
        if self._closed:
            return
        self._closed = True
        self._spill.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                self._write(out, max(int(num_frames), 1))
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            self._spill_path.unlink(missing_ok=True)

    def _write(self, out, num_frames: int) -> None:
        stop = num_frames - 1
        source = f"<source>{escape(self.source)}</source>" if self.source else ""
        out.write(
            '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n<version>1.1</version>\n<meta>\n<task>'
            f"<id>0</id><name>{escape(self.name)}</name><size>{num_frames}</size><mode>interpolation</mode>"
            f"<overlap>0</overlap><start_frame>0</start_frame><stop_frame>{stop}</stop_frame>"
            f"<frame_filter></frame_filter>{self._labels_xml()}"
            f"<original_size><width>{self.width}</width><height>{self.height}</height></original_size>"
            f"{source}</task>\n</meta>\n"
        )
        if self._boxes:
            rows = np.memmap(self._spill_path, dtype=_BOX, mode="r", shape=(self._boxes,))
            order = np.lexsort((rows["frame"], rows["track"]))
            tracks = rows["track"][order]
            starts = np.flatnonzero(np.r_[True, tracks[1:] != tracks[:-1]])
            ends = np.r_[starts[1:], len(order)]
            keyframes = np.unique(np.asarray(self._keyframes, np.int64))
            intervals = np.asarray(self._intervals, np.int64).reshape(-1, 4)
            names = [quoteattr(name) for _, name in self.label_map]
            scale = np.array([self.width, self.height, self.width, self.height], np.float64)
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                track = rows[order[s:e]]
                out.write(self._track_xml(int(tracks[s]), track, intervals, keyframes, names, scale, stop))
            del rows
        out.write("</annotations>\n")

    def _track_xml(self, track_id: int, rows: np.ndarray, intervals: np.ndarray, keyframes: np.ndarray,
                   names: list[str], scale: np.ndarray, stop: int) -> str:
        frames = rows["frame"]
        keep = np.r_[True, frames[1:] != frames[:-1]] & (frames <= stop)  # one box per frame, inside the task
        rows, frames = rows[keep], frames[keep]
        if not len(rows):
            return ""
        # Per-frame actions (L, C) from this track's tube intervals.
        actions = np.zeros((len(frames), len(names)), bool)
        for _, column, first, last in intervals[intervals[:, 0] == track_id].tolist():
            lo, hi = np.searchsorted(frames, first), np.searchsorted(frames, last, side="right")
            actions[lo:hi, column] = True
        change = np.r_[True, (actions[1:] != actions[:-1]).any(axis=1)]
        is_key = change | np.isin(frames, keyframes)
        is_key[-1] = True
        px = np.clip(rows["box"].astype(np.float64) * scale, 0.0, scale)
        words = ("false", "true")
        lines = [f'<track id="{track_id}" label="{PERSON_LABEL}" source="auto">\n']
        for f, k, (x1, y1, x2, y2), act in zip(frames.tolist(), is_key.tolist(), px.tolist(), actions.tolist(),
                                               strict=True):
            attrs = "".join(f"<attribute name={n}>{words[a]}</attribute>" for n, a in zip(names, act, strict=True))
            lines.append(f'<box frame="{f}" outside="0" occluded="0" keyframe="{int(k)}" xtl="{x1:.2f}" '
                         f'ytl="{y1:.2f}" xbr="{x2:.2f}" ybr="{y2:.2f}" z_order="0">{attrs}</box>\n')
        last = int(frames[-1])
        if last < stop:  # the track ends before the video does
            x1, y1, x2, y2 = px[-1].tolist()
            attrs = "".join(f"<attribute name={n}>false</attribute>" for n in names)
            lines.append(f'<box frame="{last + 1}" outside="1" occluded="0" keyframe="1" xtl="{x1:.2f}" '
                         f'ytl="{y1:.2f}" xbr="{x2:.2f}" ybr="{y2:.2f}" z_order="0">{attrs}</box>\n')
        lines.append("</track>\n")
        return "".join(lines)

    def abort(self) -> None:
        """Stop without writing ``path``."""
        self._closed = True
        if not self._spill.closed:
            self._spill.close()
        self._spill_path.unlink(missing_ok=True)
