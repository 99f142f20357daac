"""Action tubes from keyframe detections: track people first, then label time, per person and class.

:class:`TubeLinker` streams: ``update(KeyframeDetections)`` after each keyframe returns the tubes that
became final, ``finish()`` the rest. Its memory holds the live tracks only (a window of ``lag`` keyframes
each, longer while an action is still going on), whatever the length of the video; its cost per
keyframe is a fixed number of numpy operations over the people in view (vectorised over people and
classes) plus the tracker's optimal assignments, and a few per tube handed out.

1. :class:`~detection.tubes.tracker.OnlineTracker` links the boxes into person tracks (or the given
   ``track_ids`` are used, see ``LinkerConfig.use_track_ids``).
2. :class:`~detection.tubes.labelling.FixedLagViterbi` labels each track's keyframes, per class, as
   action / background; a keyframe's labels are final ``lag`` keyframes of its track later (by default
   the keyframes of 2 s). The switch penalty is in nats of one second of evidence: the penalty per
   keyframe is ``switch_penalty / keyframe interval (s)``, which is the same as weighting each keyframe's
   evidence by the time it stands for, so a 0.2 s glitch costs the same at 5 or at 30 keyframes a second
   and one setting fits every stride.
3. Each maximal run of action keyframes of a track and class is a :class:`~detection.structures.Tube`
   with a box on every frame from the run's first to its last keyframe (interpolated linearly between
   keyframes and across missed keyframes), extended by half a keyframe interval on each side when
   ``extend`` is set (the run's first and last keyframes stand for the time around them; this lifts
   temporal IoU with ground truth when keyframes are sparse), clipped to ``[0, num_frames - 1]``.
   Per-frame scores are the action scores interpolated likewise; the tube score summarises the
   run's keyframe scores (``tube_score``: mean of the top half, mean, or max).
4. Optional tube NMS per class (``nms_iou``): a tube is dropped when a higher-scored tube of the same
   class overlaps it with spatio-temporal IoU above ``nms_iou`` (temporal IoU of the frame ranges
   times the mean box IoU over the common frames). Unlike greedy NMS, a tube suppresses others even
   when it is itself suppressed ("fast NMS"): that decision never waits for tubes to come, so it
   streams exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from detection.structures import KeyframeDetections, LabelMap, Tube, box_area
from detection.tubes.labelling import MAX_LAG, FixedLagViterbi, viterbi_offline
from detection.tubes.tracker import GivenTracks, OnlineTracker, TrackerConfig, _interpolate, interpolate_at

__all__ = ["LinkerConfig", "TrackPiece", "TubeLinker", "link_offline", "tube_score", "spatiotemporal_iou"]

_TRACK_CHUNK = 32  # keyframes of trajectory handed out at once (keep_tracks)


@dataclass
class LinkerConfig(TrackerConfig):
    """Everything :class:`TubeLinker` needs: the tracker's settings (inherited) and the labelling's."""

    action_threshold: float = 0.5  # score at which action and background cost the same
    # Cost of a change between action and background, in nats of one second of evidence: each keyframe's
    # evidence counts for the time it stands for (the keyframe interval), so one setting fits any stride.
    switch_penalty: float = 0.7
    lag: int | None = None  # keyframes after which a track's labels are final (<= 63); None: those of 2 s
    min_frames: int = 1  # shorter tubes (frames, after the extension) are dropped
    tube_score: Literal["top-half", "mean", "max"] = "top-half"  # over the run's keyframe scores
    nms_iou: float | None = None  # per-class tube NMS above this spatio-temporal IoU; None: off
    extend: bool = True  # extend tubes by half a keyframe interval on each side
    use_track_ids: bool = True  # keyframes that carry track_ids keep them instead of being tracked

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.action_threshold < 1.0:
            raise ValueError(f"LinkerConfig: action_threshold must be in (0, 1), got {self.action_threshold}")
        if not self.switch_penalty >= 0.0:
            raise ValueError(f"LinkerConfig: switch_penalty must be >= 0, got {self.switch_penalty}")
        if self.lag is not None and not 0 <= self.lag <= MAX_LAG:
            raise ValueError(f"LinkerConfig: lag must be in [0, {MAX_LAG}] keyframes or None, got {self.lag}")
        if self.min_frames < 1:
            raise ValueError(f"LinkerConfig: min_frames must be >= 1, got {self.min_frames}")
        if self.tube_score not in ("top-half", "mean", "max"):
            raise ValueError(f"LinkerConfig: tube_score must be top-half, mean or max, got {self.tube_score!r}")
        if self.nms_iou is not None and not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"LinkerConfig: nms_iou must be in [0, 1] or None, got {self.nms_iou}")


@dataclass
class TrackPiece:
    """A stretch of one track's trajectory: a box on every frame (interpolated between keyframes).

    frames: (L,) consecutive 0-based frame indices; boxes: (L, 4) normalized xyxy; scores: (L,) the
    detector's person scores, interpolated. The pieces of a track follow each other without overlap.
    """

    video_id: str
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def tube_score(keyframe_scores: np.ndarray, mode: str = "top-half") -> float:
    """A tube's score from its keyframe scores: ``top-half`` (mean of the best ceil(K/2)), ``mean`` or ``max``."""
    s = np.array(keyframe_scores, dtype=np.float64)  # a copy: sorted in place below
    if mode == "mean":
        return float(s.mean())
    if mode == "max":
        return float(s.max())
    if mode == "top-half":
        k = (len(s) + 1) // 2
        s.sort()  # np.sort and ndarray.sum cost more (Python wrappers) than these at a tube's size
        return float(np.add.reduce(s[len(s) - k :])) / k
    raise ValueError(f"tube score mode must be top-half, mean or max, got {mode!r}")


def spatiotemporal_iou(a: Tube, b: Tube) -> float:
    """Temporal IoU (inclusive frame counts) × mean box IoU over the common frames, for contiguous tubes."""
    lo, hi = max(a.start_frame, b.start_frame), min(a.end_frame, b.end_frame)
    if hi < lo:
        return 0.0
    ba = a.boxes[lo - a.start_frame : hi - a.start_frame + 1].astype(np.float64)
    bb = b.boxes[lo - b.start_frame : hi - b.start_frame + 1].astype(np.float64)
    wh = np.clip(np.minimum(ba[:, 2:], bb[:, 2:]) - np.maximum(ba[:, :2], bb[:, :2]), 0.0, None)
    inter = wh[:, 0] * wh[:, 1]
    union = box_area(ba) + box_area(bb) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        spatial = np.where(union > 0, inter / union, 0.0).mean()
    temporal = (hi - lo + 1) / (max(a.end_frame, b.end_frame) - min(a.start_frame, b.start_frame) + 1)
    return float(spatial * temporal)


class TubeLinker:
    """Streaming tube linking for one video at a time.

    label_map: the columns of ``action_scores``; tubes carry its dataset ids. fps: the video's frame
    rate. keyframe_stride: frames between keyframes: the time a keyframe stands for (the switch penalty is
    per second of evidence, the default lag 2 s) and the half-interval extension; None: the interval
    between the first two keyframes (the first one waits for the second). num_frames: clip extended tubes
    to the video (None: only at frame 0).
    keep_tracks: also collect :class:`TrackPiece` trajectories (:meth:`pop_track_pieces`).
    keep_keyframes: also collect the keyframes with final ``track_ids`` (:meth:`pop_keyframes`).
    offline: label each track exactly (:func:`~detection.tubes.labelling.viterbi_offline`) when it ends;
    then a track's keyframes are kept until it ends.
    """

    def __init__(
        self,
        label_map: LabelMap,
        fps: float = 30.0,
        keyframe_stride: int | None = None,
        config: LinkerConfig | None = None,
        num_frames: int | None = None,
        keep_tracks: bool = False,
        keep_keyframes: bool = False,
        offline: bool = False,
    ) -> None:
        self.config = config or LinkerConfig()
        self.config.validate()
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.label_map, self.fps, self.num_frames = label_map, float(fps), num_frames
        self.keyframe_stride = keyframe_stride
        self.keep_tracks, self.keep_keyframes, self.offline = keep_tracks, keep_keyframes, offline
        self._num_classes = len(label_map)
        self._label_ids = np.asarray(label_map.ids, dtype=np.int64)
        self._tracker = OnlineTracker(self.config)
        self._given = GivenTracks(self.config.max_gap_s)
        self._reset()

    # -- state -------------------------------------------------------------------------------------
    def _reset(self) -> None:
        c = self._num_classes
        self._tracker.reset()
        self._given.reset()
        self._mode: str | None = None  # "track" or "given", fixed by the first keyframe
        self._video: str | None = None
        self._last_frame = -1
        self._stride = self.keyframe_stride
        self._held: KeyframeDetections | None = None  # the first keyframe, until the stride is known
        s, r = 8, 16  # slots, ring length (keyframes kept per track); both grow
        self._frame = np.zeros((s, r), np.int64)
        self._box = np.zeros((s, r, 4), np.float32)
        self._pscore = np.zeros((s, r), np.float32)  # with keep_tracks only
        self._ascore = np.zeros((s, r, c), np.float32)
        self._count = np.zeros(s, np.int64)  # keyframes observed per slot
        self._head = np.zeros(s, np.int64)  # oldest keyframe still kept
        self._label = np.zeros((s, c), bool)  # label of the last decided keyframe
        self._open = np.full((s, c), -1, np.int64)  # first keyframe of the running action, -1 if none
        self._traced = np.zeros(s, np.int64)  # keyframes of trajectory handed out (keep_tracks)
        self._room = 0  # observations that surely fit in every slot's window before the next check
        self._track = np.full(s, -1, np.int64)  # track id per slot, -1 when free
        self._all_rows = np.arange(s)  # rows 0, 1, ... of a keyframe whose boxes are all on tracks
        self._slot_of: dict[int, int] = {}
        self._free = list(range(s - 1, -1, -1))
        self._recent: deque[tuple[int, KeyframeDetections, np.ndarray]] = deque()  # (step, keyframe, ids)
        self._ready_keyframes: list[KeyframeDetections] = []
        self._pieces: list[TrackPiece] = []
        self._out: list[Tube] = []
        self._nms_pending: list[tuple[int, Tube]] = []  # (sequence, tube) waiting for their NMS decision
        self._nms_seen: list[tuple[int, Tube]] = []  # decided tubes that pending ones may overlap
        self._nms_seq = 0
        self._labeller: FixedLagViterbi | None = None
        if self._stride is not None:
            self._start_labeller(self._stride)

    def _start_labeller(self, stride: int) -> None:
        """The labeller for keyframes ``stride`` frames apart (penalty per keyframe, lag in keyframes)."""
        cfg = self.config
        self._stride = stride
        interval_s = max(stride, 1) / self.fps
        lag = cfg.lag if cfg.lag is not None else int(min(MAX_LAG, max(1, round(2.0 / interval_s))))
        self.lag = lag
        self._labeller = FixedLagViterbi(self._num_classes, cfg.action_threshold, cfg.switch_penalty / interval_s,
                                         lag, capacity=len(self._track))

    def stats(self) -> dict[str, int]:
        """Sizes of the internal state (live tracks, keyframes kept, ...): bounded on any video length."""
        live = (self._track >= 0).nonzero()[0]
        return {
            "live_tracks": len(live),
            "tracker_tracks": self._tracker.num_tracks + self._given.num_tracks,
            "kept_keyframes": int((self._count[live] - self._needed_from(live)).sum()),  # still needed
            "ring_length": self._frame.shape[1],
            "slots": len(self._track),
            "recent_keyframes": len(self._recent),
            "pending_tubes": len(self._nms_pending) + len(self._nms_seen),
        }

    def _grow_slots(self) -> None:
        old = len(self._track)
        new = 2 * old
        for name, fill in (("_frame", 0), ("_box", 0), ("_pscore", 0), ("_ascore", 0), ("_count", 0),
                           ("_head", 0), ("_label", False), ("_open", -1), ("_traced", 0),
                           ("_track", -1)):
            arr = getattr(self, name)
            grown = np.full((new,) + arr.shape[1:], fill, arr.dtype)
            grown[:old] = arr
            setattr(self, name, grown)
        self._all_rows = np.arange(new)
        if self._labeller is not None:
            self._labeller.grow(new)
        self._free.extend(range(new - 1, old - 1, -1))

    def _grow_ring(self) -> None:
        """Double the keyframes kept per slot, keeping each slot's kept keyframes at their ring positions."""
        r = self._frame.shape[1]
        for name in ("_frame", "_box", "_pscore", "_ascore"):
            arr = getattr(self, name)
            grown = np.zeros((arr.shape[0], 2 * r) + arr.shape[2:], arr.dtype)
            # Keyframe j of a slot sits at j % r now and at j % 2r after: move each kept one.
            for s in np.flatnonzero(self._track >= 0).tolist():
                j = np.arange(self._head[s], self._count[s])
                grown[s, j % (2 * r)] = arr[s, j % r]
            setattr(self, name, grown)

    def _ring(self) -> int:
        return self._frame.shape[1]

    def _decided_of(self, slots: np.ndarray) -> np.ndarray:
        """Keyframes with final labels per slot: all but the last ``lag`` ones (none before the track ends,
        offline). Derived, not stored: one scatter less per keyframe."""
        if self.offline or self._labeller is None:
            return np.zeros(len(slots), np.int64)
        return np.maximum(self._count[slots] - self.lag, 0)

    def _needed_from(self, slots: np.ndarray) -> np.ndarray:
        """Oldest keyframe each slot still needs: open actions, the last decided one, the trajectory."""
        big = np.iinfo(np.int64).max
        opened = self._open[slots]
        open_min = np.where(opened >= 0, opened, big).min(axis=1, initial=big)
        need = np.minimum(open_min, np.maximum(self._decided_of(slots) - 1, 0))
        if self.keep_tracks:
            need = np.minimum(need, np.maximum(self._traced[slots] - 1, 0))
        return need

    # -- keyframes in --------------------------------------------------------------------------------
    def update(self, keyframe: KeyframeDetections) -> list[Tube]:
        """Add the next keyframe of the video; returns the tubes that became final.

        Raises ValueError when the keyframe belongs to another video than the previous ones (call
        :meth:`finish` first), does not come after the previous one, or has another number of classes
        than the label map.
        """
        kf = keyframe
        if self._video is None:
            self._video = kf.video_id
        elif kf.video_id != self._video:
            raise ValueError(f"{self._where(kf)}: the linker is on video {self._video!r}; call finish() between videos")
        if kf.frame_index <= self._last_frame:
            raise ValueError(f"{self._where(kf)}: does not come after frame {self._last_frame}")
        if kf.num_classes != self._num_classes and len(kf) > 0:
            raise ValueError(f"{self._where(kf)}: {kf.num_classes} action scores per box, the label map has "
                             f"{self._num_classes}")
        self._last_frame = kf.frame_index
        if self._labeller is None:  # the stride comes from the first two keyframes
            if self._held is None:
                self._held = kf
                return []
            held, self._held = self._held, None
            self._start_labeller(kf.frame_index - held.frame_index)
            return self._update(held) + self._update(kf)
        return self._update(kf)

    def _update(self, kf: KeyframeDetections) -> list[Tube]:
        mode = "given" if self.config.use_track_ids and kf.track_ids is not None else "track"
        if self._mode is None:
            self._mode = mode
        elif mode != self._mode:
            raise ValueError(f"{self._where(kf)}: track_ids present on some keyframes of the video and not on others")

        if self._mode == "given":
            step = self._given.update(kf.time_s, kf.track_ids)
            oldest = None
        else:
            step = self._tracker.update(kf.time_s, kf.boxes, kf.person_scores)
            oldest = self._tracker.oldest_tentative_step()
        for tid in step.retired:
            self._retire(tid)
        ids = step.track_ids
        self._recent.append((step.step, kf, ids))  # the tracker made ids for this step alone
        for tid, history in step.confirmed:
            slot = self._allocate(tid)
            for s, row in history:
                _, old_kf, old_ids = next(item for item in self._recent if item[0] == s)
                old_ids[row] = tid
                self._observe(np.array([slot]), old_kf, np.array([row]))
        slot_of, tids = self._slot_of, ids.tolist()
        if -1 not in tids:  # every box on a track (the usual case): rows 0, 1, ...
            if tids:
                self._observe(np.array(list(map(slot_of.__getitem__, tids)), np.int64), kf, self._all_rows[: len(tids)])
        else:
            slots = [slot_of[t] for t in tids if t >= 0]
            if slots:
                self._observe(np.array(slots, np.int64), kf, (ids >= 0).nonzero()[0])
        self._release_recent(oldest)
        return self._drain(kf.frame_index, oldest)

    @staticmethod
    def _where(kf: KeyframeDetections) -> str:
        return f"keyframe {kf.video_id!r} frame {kf.frame_index}"

    def _allocate(self, track_id: int) -> int:
        if not self._free:
            self._grow_slots()
        slot = self._free.pop()
        self._slot_of[track_id] = slot
        self._track[slot] = track_id
        self._count[slot] = self._head[slot] = self._traced[slot] = 0
        self._label[slot] = False
        self._open[slot] = -1
        self._labeller.start(slot)
        return slot

    def _observe(self, slots: np.ndarray, kf: KeyframeDetections, rows: np.ndarray) -> None:
        """Append keyframe ``kf``'s boxes ``rows`` (sorted, distinct) to tracks in ``slots``; label what is final."""
        self._room -= 1
        if self._room <= 0:  # a slot's window may be full: forget what is done, grow if still needed
            live = (self._track >= 0).nonzero()[0]
            self._head[live] = self._needed_from(live)
            while (self._count[live] - self._head[live] >= self._ring() - 1).any():
                self._grow_ring()
            # Each slot gains at most one keyframe per call: no check needed until the fullest one could fill.
            self._room = self._ring() - 1 - int((self._count[live] - self._head[live]).max(initial=0))
        count = self._count[slots]
        pos = count & (self._ring() - 1)  # count % ring length, a power of two
        every = len(rows) == len(kf)  # every box is on a track (rows are sorted and distinct): no gathers
        boxes = kf.boxes if every else kf.boxes.take(rows, axis=0)
        scores = kf.action_scores if every else kf.action_scores.take(rows, axis=0)
        self._frame[slots, pos] = kf.frame_index
        self._box[slots, pos] = boxes
        if self.keep_tracks:  # the person scores serve the trajectories alone
            self._pscore[slots, pos] = kf.person_scores if every else kf.person_scores[rows]
        if self._num_classes:
            self._ascore[slots, pos] = scores
        count += 1
        self._count[slots] = count
        if self.offline:
            return
        sel, index, labels = self._labeller.step(slots, scores)
        if len(sel):
            self._decide(slots[sel] if len(sel) < len(slots) else slots, index, labels)

    def _decide(self, slots: np.ndarray, index: np.ndarray, labels: np.ndarray) -> None:
        """Final labels (k, C) of keyframe ``index`` (k,) of each slot; closes and opens action runs."""
        change = labels != self._label.take(slots, axis=0)
        changed = change.nonzero()
        if len(changed[0]):
            self._label[slots] = labels
            slot_list, index_list = slots.tolist(), index.tolist()  # Python ints index faster
            for i, c in zip(changed[0].tolist(), changed[1].tolist(), strict=True):
                s, k = slot_list[i], index_list[i]
                if labels[i, c]:
                    self._open[s, c] = k
                else:
                    self._emit(s, c, int(self._open[s, c]), k - 1)
                    self._open[s, c] = -1
        if self.keep_tracks:
            due = (index - self._traced[slots] >= _TRACK_CHUNK).nonzero()[0]  # decided - traced > chunk
            for s, k in zip(slots[due].tolist(), index[due].tolist(), strict=True):
                self._trace(s, k)

    def _retire(self, track_id: int) -> None:
        """A track ended: decide its last keyframes, close its runs, hand out its trajectory, free it."""
        slot = self._slot_of.pop(track_id)
        count = int(self._count[slot])
        if self.offline:
            j = np.arange(self._head[slot], count)
            labels = viterbi_offline(self._ascore[slot, j % self._ring()], self.config.action_threshold,
                                     self._labeller.switch_penalty)
            first = int(self._head[slot])
        else:
            first, labels = self._labeller.flush(slot)
        one = np.array([slot])
        for k in range(len(labels)):
            self._decide(one, np.array([first + k]), labels[k : k + 1])
        for c in np.flatnonzero(self._open[slot] >= 0).tolist():
            self._emit(slot, c, int(self._open[slot, c]), count - 1)
        if self.keep_tracks and count:
            self._trace(slot, count - 1)
        self._track[slot] = -1
        self._count[slot] = self._head[slot] = 0
        self._free.append(slot)

    # -- tubes and trajectories out ----------------------------------------------------------------
    def _positions(self, first: int, last: int) -> np.ndarray:
        """Ring positions of a slot's keyframes ``first .. last`` (inclusive)."""
        return np.arange(first, last + 1) & (self._ring() - 1)  # % ring length, a power of two

    def _emit(self, slot: int, c: int, first: int, last: int) -> None:
        """The tube of class column ``c`` over keyframes ``first .. last`` (inclusive) of ``slot``."""
        mask = self._frame.shape[1] - 1  # ring positions: % ring length, a power of two
        if first & mask <= last & mask:  # one stretch of the ring: slices, no gathers
            pos = slice(first & mask, (last & mask) + 1)
        else:
            pos = np.arange(first, last + 1) & mask
        key_frames = self._frame[slot, pos]
        ext = (self._stride or 0) // 2 if self.config.extend else 0
        first_frame, last_frame = int(key_frames[0]), int(key_frames[-1])
        start = max(first_frame - ext, 0)
        end = last_frame + ext
        if self.num_frames is not None:
            end = min(end, self.num_frames - 1)
        end = max(end, start)
        if end - start + 1 < self.config.min_frames:
            return
        frames = np.arange(start, end + 1)
        # Boxes and scores interpolated together: one (K, 5) array.
        keys = np.empty((len(key_frames), 5), np.float32)
        keys[:, :4] = self._box[slot, pos]
        keys[:, 4] = self._ascore[slot, pos, c]
        if start == first_frame and end == last_frame and len(frames) == len(key_frames):
            values = keys  # a keyframe on every frame of the tube: nothing to interpolate
        elif len(keys) > 1:  # interpolate_at without its checks; clipped only where extended past the keyframes
            values = _interpolate(key_frames, keys, frames, clip=start < first_frame or end > last_frame)
        else:
            values = interpolate_at(key_frames, keys, frames)
        # Arrays made here, in the form Tube's constructor would give them: no need to check them again.
        tube = Tube.unchecked(
            self._video, int(self._label_ids[c]), int(self._track[slot]), frames,
            np.ascontiguousarray(values[:, :4]), values[:, 4].copy(), tube_score(keys[:, 4], self.config.tube_score),
        )
        if self.config.nms_iou is None:
            self._out.append(tube)
        else:
            self._nms_pending.append((self._nms_seq, tube))
            self._nms_seq += 1

    def _trace(self, slot: int, last: int) -> None:
        """Hand out the trajectory of ``slot`` up to keyframe ``last``, from where the previous piece ended."""
        first = int(self._traced[slot])
        anchor = max(first - 1, 0)  # the previous piece's last keyframe anchors the interpolation
        pos = self._positions(anchor, last)
        key_frames = self._frame[slot, pos]
        start = int(key_frames[0]) + (1 if first > 0 else 0)
        frames = np.arange(start, int(key_frames[-1]) + 1)
        self._traced[slot] = last + 1
        if len(frames) == 0:
            return
        self._pieces.append(TrackPiece(
            self._video, int(self._track[slot]), frames,
            interpolate_at(key_frames, self._box[slot, pos], frames),
            interpolate_at(key_frames, self._pscore[slot, pos], frames),
        ))

    def _release_recent(self, oldest_tentative: int | None) -> None:
        """Keep the keyframes tentative tracks refer to; hand out the others (with final ids)."""
        while self._recent and (oldest_tentative is None or self._recent[0][0] < oldest_tentative):
            _, kf, ids = self._recent.popleft()
            if self.keep_keyframes:
                self._ready_keyframes.append(KeyframeDetections(
                    kf.video_id, kf.frame_index, kf.time_s, kf.boxes, kf.person_scores, kf.action_scores, ids))

    def _drain(self, frame: int | None, oldest_tentative: int | None) -> list[Tube]:
        """Tubes ready to hand out; with NMS, those no future tube can overlap (all when ``frame`` is None)."""
        if self._nms_pending:
            self._nms_release(self._horizon(frame, oldest_tentative))
        out, self._out = self._out, []
        return out

    def _horizon(self, frame: int | None, oldest_tentative: int | None) -> np.ndarray:
        """Per class (C,): the first frame a tube not yet emitted may cover (inf at the end of the video).

        A live track may still emit a tube of class c from its running action of class c, or from any of
        its undecided keyframes; a tentative track from its first keyframe; a new track from now on.
        """
        horizon = np.full(self._num_classes, np.inf)
        if frame is None:
            return horizon
        horizon[:] = frame
        for step, kf, _ in self._recent:
            if oldest_tentative is not None and step >= oldest_tentative:
                horizon[:] = min(frame, kf.frame_index)
                break
        live = np.flatnonzero(self._track >= 0)
        if len(live):
            r = self._ring()
            undecided = self._frame[live, np.minimum(self._decided_of(live), self._count[live] - 1) % r]
            horizon = np.minimum(horizon, undecided.min())
            opened = self._open[live]
            open_frames = np.where(opened >= 0, self._frame[live[:, None], np.maximum(opened, 0) % r], np.inf)
            horizon = np.minimum(horizon, open_frames.min(axis=0))
        ext = (self._stride or 0) // 2 if self.config.extend else 0
        return horizon - ext

    def _nms_release(self, horizon: np.ndarray) -> None:
        thr, column = self.config.nms_iou, self.label_map.index
        ready = [(q, t) for q, t in self._nms_pending if t.end_frame < horizon[column(t.label)]]
        if not ready:
            return
        self._nms_pending = [(q, t) for q, t in self._nms_pending if t.end_frame >= horizon[column(t.label)]]
        rivals = self._nms_seen + ready + self._nms_pending
        for q, tube in ready:
            beaten = any(
                r.label == tube.label and (r.score, -p) > (tube.score, -q)
                and r.start_frame <= tube.end_frame and tube.start_frame <= r.end_frame
                and spatiotemporal_iou(r, tube) > thr
                for p, r in rivals
            )
            if not beaten:
                self._out.append(tube)
        # Decided tubes matter while a pending or future tube of their class may still overlap them.
        first = horizon.copy()
        for _, t in self._nms_pending:
            first[column(t.label)] = min(first[column(t.label)], t.start_frame)
        self._nms_seen = [(q, t) for q, t in self._nms_seen + ready if t.end_frame >= first[column(t.label)]]

    def finish(self) -> list[Tube]:
        """End the video: retire every track and return the remaining tubes. The linker can then take
        another video."""
        early: list[Tube] = []
        if self._held is not None:  # a video of one keyframe: it stands for one second
            held, self._held = self._held, None
            self._start_labeller(max(1, round(self.fps)))
            early = self._update(held)
        tracker = self._given if self._mode == "given" else self._tracker
        for tid in tracker.finish():
            self._retire(tid)
        for tid in list(self._slot_of):
            self._retire(tid)
        self._release_recent(None)
        tubes = early + self._drain(None, None)
        keyframes, pieces = self._ready_keyframes, self._pieces
        self._reset()
        self._ready_keyframes, self._pieces = keyframes, pieces
        return tubes

    def pop_keyframes(self) -> list[KeyframeDetections]:
        """Keyframes whose ``track_ids`` are final (-1: on no track), in order, since the last call."""
        out, self._ready_keyframes = self._ready_keyframes, []
        return out

    def pop_track_pieces(self) -> list[TrackPiece]:
        """Trajectory pieces of the tracks handed out since the last call (``keep_tracks``)."""
        out, self._pieces = self._pieces, []
        return out


def link_offline(
    keyframes: Iterable[KeyframeDetections],
    label_map: LabelMap,
    fps: float = 30.0,
    keyframe_stride: int | None = None,
    config: LinkerConfig | None = None,
    num_frames: int | None = None,
) -> list[Tube]:
    """Tubes of one video's keyframes, each track labelled exactly once it has ended (not streaming)."""
    linker = TubeLinker(label_map, fps, keyframe_stride, config, num_frames, offline=True)
    tubes: list[Tube] = []
    for kf in keyframes:
        tubes += linker.update(kf)
    return tubes + linker.finish()
