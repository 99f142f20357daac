"""Class-agnostic online tracking of people across keyframes, at any keyframe stride.

Each track carries a constant-velocity Kalman filter on its box centre and size (``cx, cy, w, h``, each
coordinate its own position/velocity pair). Time is in **seconds**, not frames, so the same filter works
with keyframes on every frame, every k frames or at 1 Hz, and across gaps: the process noise is a
continuous white-noise acceleration, so predicting over 2 s is the same as predicting twice over 1 s.
Noise levels are in units of the box's height (``motion_noise``: body heights / s^1.5, ``velocity_prior``:
body heights / s for a new track) or of its size (``box_noise``: the detector's box jitter); sizes change
four times slower than positions. The default motion noise suits walking people; people who change
course abruptly (sports, stand-to-run) are followed anyway: a measurement more than 3 standard
deviations from the prediction scales the prediction's covariance up (by the squared excess) before
the update, so the filter catches up at once instead of lagging behind (an adaptive "fading memory").

Association follows ByteTrack (Zhang et al., 2022), with one change for sparse keyframes:

1. boxes scoring at least ``high_score`` against the confirmed tracks (IoU ≥ ``match_iou``);
2. boxes in ``[low_score, high_score)`` against the confirmed tracks left (IoU ≥ ``low_match_iou``): a
   partly occluded person often scores low, and this keeps their track going;
3. the high boxes left against the tentative tracks (IoU ≥ ``match_iou``);
4. high boxes still left, scoring at least ``new_track_score``, start tentative tracks.

Each pass is an optimal assignment (``scipy.optimize.linear_sum_assignment``) on ``1 - IoU``, pairs below
the pass's IoU threshold being forbidden (the most matches first, then the best ones). The IoU is
*buffered*: both boxes of a pair are widened by ``buffer_sigmas`` standard deviations of the track's
predicted centre (its Kalman innovation), in x and in y. On every frame that margin is a few pixels and
the cost is plain IoU; at 1 Hz, or for a new track whose velocity is still unknown, the margin grows
with the uncertainty, and a person who moved further than their own width still overlaps their track.

A tentative track becomes a confirmed one, with the next public id (1, 2, 3, ... in order of
confirmation), at its ``min_hits``-th matched keyframe; a tentative track that misses a keyframe is
dropped. A confirmed track survives keyframes without a match as long as the time since its last match
is at most ``max_gap_s`` (which must exceed the keyframe interval), and is retired at the first keyframe
after that.

Between keyframes and across gaps, boxes are linearly interpolated (:func:`interpolate_at`), so a
track's trajectory is a box on every frame from its first to its last matched keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

__all__ = [
    "TrackerConfig",
    "TrackerStep",
    "OnlineTracker",
    "GivenTracks",
    "buffered_iou",
    "interpolate_at",
]

_SIZE_FACTOR = 0.25  # size (w, h) changes this much slower than position, in the motion noise and prior
_MIN_SIZE = 1e-4  # normalized; predicted sizes are kept at least this large
_TIME_EPS = 1e-6  # seconds: a gap equal to max_gap_s survives despite rounding
_INVALID = 1e6  # assignment cost of a pair below its IoU threshold


@dataclass
class TrackerConfig:
    """Association and motion settings of :class:`OnlineTracker` (scores in [0, 1], IoUs, seconds)."""

    high_score: float = 0.5  # boxes at or above: first pass, and may start tracks
    low_score: float = 0.1  # boxes below are ignored; [low_score, high_score): second pass only
    new_track_score: float = 0.6  # a box left unmatched starts a track only at or above this score
    match_iou: float = 0.3  # least (buffered) IoU of a high-score match
    low_match_iou: float = 0.5  # least (buffered) IoU of a low-score match
    max_gap_s: float = 2.0  # a track survives this long since its last match; must exceed the keyframe interval
    min_hits: int = 2  # matched keyframes before a track is confirmed and gets an id
    buffer_sigmas: float = 1.0  # IoU buffer: predicted-centre standard deviations added on each side
    motion_noise: float = 0.3  # white-noise acceleration, body heights / s^1.5 (walking people)
    velocity_prior: float = 1.0  # standard deviation of a new track's velocity, body heights / s
    box_noise: float = 0.05  # detector box jitter, fraction of the box's width / height

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        checks = [
            (0.0 <= self.low_score <= self.high_score, "need 0 <= low_score <= high_score"),
            (self.new_track_score >= self.high_score, "need new_track_score >= high_score"),
            (0.0 < self.match_iou <= 1.0 and 0.0 < self.low_match_iou <= 1.0, "IoU thresholds must be in (0, 1]"),
            (self.max_gap_s >= 0.0, "max_gap_s must be >= 0"),
            (self.min_hits >= 1, "min_hits must be >= 1"),
            (self.buffer_sigmas >= 0.0, "buffer_sigmas must be >= 0"),
            (self.motion_noise > 0 and self.velocity_prior > 0 and self.box_noise > 0, "noise levels must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{type(self).__name__}: {message}")

    def tracker_config(self) -> TrackerConfig:
        """The tracker's own settings (a plain TrackerConfig, also from a subclass such as LinkerConfig)."""
        return TrackerConfig(**{f.name: getattr(self, f.name) for f in fields(TrackerConfig)})


@dataclass(slots=True)
class TrackerStep:
    """What one :meth:`OnlineTracker.update` decided.

    track_ids: (N,) int64, the public id of the confirmed track each box joined, -1 for a box that is on
    no confirmed track (ignored, or on a tentative track). confirmed: tracks confirmed at this keyframe,
    as ``(track id, [(step, row), ...])`` with their earlier observations (keyframe ``step`` number and
    box ``row`` in it) — the current one is in ``track_ids``. retired: ids of confirmed tracks retired
    at this keyframe (their last match is more than ``max_gap_s`` ago), before matching.
    """

    step: int
    track_ids: np.ndarray
    confirmed: list[tuple[int, list[tuple[int, int]]]] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)


def buffered_iou(track_boxes: np.ndarray, boxes: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """IoU (T, N) of xyxy boxes after widening both boxes of pair (i, j) by ``margins[i]`` (x, y) per side.

    With zero margins this is :func:`detection.structures.box_iou`. Zero-area unions give 0.
    """
    t = np.asarray(track_boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    # Every operand laid out once as a contiguous (T, N) plane: numpy's broadcasting costs more than the
    # arithmetic at these sizes.
    p = np.empty((10, len(t), len(b)))
    p[0:4] = t.T[:, :, None]
    p[4:8] = b.T[:, None, :]
    p[8:10] = 2.0 * np.asarray(margins, dtype=np.float64).T[:, :, None]
    tx1, ty1, tx2, ty2, bx1, by1, bx2, by2, mx, my = p
    # When both boxes grow by m on each side, their overlap grows by 2m per axis (if it stays positive).
    w = np.minimum(tx2, bx2)
    w -= np.maximum(tx1, bx1)
    w += mx
    np.maximum(w, 0.0, out=w)
    h = np.minimum(ty2, by2)
    h -= np.maximum(ty1, by1)
    h += my
    np.maximum(h, 0.0, out=h)
    inter = np.multiply(w, h, out=w)
    for x1, y1, x2, y2 in ((tx1, ty1, tx2, ty2), (bx1, by1, bx2, by2)):  # widened areas, in place
        x2 -= x1
        x2 += mx
        y2 -= y1
        y2 += my
        x2 *= y2
    union = np.add(tx2, bx2, out=tx2)
    union -= inter
    np.maximum(union, 1e-300, out=union)  # a zero union has a zero overlap: IoU 0, no division by zero
    return np.divide(inter, union, out=inter)


def interpolate_at(key_frames: np.ndarray, key_values: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Values at ``frames``, linearly interpolated between keyframes (vectorised over trailing axes).

    key_frames: (K,) strictly increasing; key_values: (K, ...). Frames before the first / after the last
    keyframe get the first / last value (no extrapolation). Returns float32 (L, ...).
    """
    kf = np.asarray(key_frames, dtype=np.float64)
    kv = np.asarray(key_values)
    frames = np.asarray(frames, dtype=np.float64)
    if len(kf) == 1:
        return np.repeat(kv[:1], len(frames), axis=0).astype(np.float32)
    i = np.searchsorted(kf, frames, side="right")
    i -= 1
    np.maximum(i, 0, out=i)  # np.clip costs several times more at these sizes
    np.minimum(i, len(kf) - 2, out=i)
    lo, hi = kf[i], kf[i + 1]
    w = np.subtract(frames, lo)
    w /= hi - lo
    np.maximum(w, 0.0, out=w)
    np.minimum(w, 1.0, out=w)
    a = kv[i]
    b = kv[i + 1]
    b -= a
    b *= w.reshape(w.shape + (1,) * (kv.ndim - 1))
    b += a
    return b.astype(np.float32, copy=False)


# The per-track state: position and velocity of cx, cy, w, h, and each coordinate's 2x2 covariance.
_STATE = ("_pos", "_vel", "_pp", "_pv", "_vv")
# Box conversions as matrix products (one numpy call instead of four slice operations).
_XYXY_TO_CXCYWH = np.array([[0.5, 0, -1, 0], [0, 0.5, 0, -1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]])
_CXCYWH_TO_XYXY = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]])


class OnlineTracker:
    """Tracks people over keyframes; feed :meth:`update` keyframe by keyframe, then call :meth:`finish`.

    Memory holds the live tracks only (a tentative track also keeps its fewer than ``min_hits``
    observations), whatever the length of the video. Each update costs a fixed number of numpy
    operations on (tracks × boxes) arrays and at most three optimal assignments.
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        from scipy.optimize import linear_sum_assignment  # here: importing the config stays light

        self._assign = linear_sum_assignment
        self.config = (config or TrackerConfig()).tracker_config()
        self.config.validate()
        shape = np.array([1.0, 1.0, _SIZE_FACTOR**2, _SIZE_FACTOR**2])  # size changes slower than position
        self._q_shape = self.config.motion_noise**2 * shape  # × height² = acceleration spectral density
        self._v_shape = self.config.velocity_prior**2 * shape  # × height² = a new track's velocity variance
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        cap = 16
        self._n = 0
        for name in _STATE:  # (cap, 4) each, contiguous: the hot loop works on [:n] views
            setattr(self, name, np.zeros((cap, 4)))
        self._time = np.zeros(cap)  # time of the last match, seconds
        self._hits = np.zeros(cap, dtype=np.int64)
        self._ids = np.full(cap, -1, dtype=np.int64)  # public id, -1 while tentative
        self._history: list[list[tuple[int, int]]] = []  # per track: (step, row) while tentative
        self._num_tentative = 0
        self._next_id = 1
        self._step = -1
        self._last_time = -np.inf

    # -- state -------------------------------------------------------------------------------------
    @property
    def num_tracks(self) -> int:
        """Live tracks, tentative ones included."""
        return self._n

    @property
    def track_ids(self) -> np.ndarray:
        """Ids of the live confirmed tracks."""
        ids = self._ids[: self._n]
        return ids[ids >= 0].copy()

    def oldest_tentative_step(self) -> int | None:
        """The earliest keyframe step a tentative track still holds (its ids may change), or None."""
        if not self._num_tentative:
            return None
        return min(h[0][0] for h in self._history if h)

    def _grow(self) -> None:
        cap = 2 * len(self._time)
        for name in (*_STATE, "_time", "_hits", "_ids"):
            old = getattr(self, name)
            new = np.zeros((cap,) + old.shape[1:], old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _remove(self, keep: np.ndarray) -> None:
        """Keep the live tracks flagged in ``keep`` (n,), compacted in their order."""
        idx = np.flatnonzero(keep)
        m = len(idx)
        for name in (*_STATE, "_time", "_hits", "_ids"):
            arr = getattr(self, name)
            arr[:m] = arr[idx]
        self._history = [self._history[i] for i in idx.tolist()]
        self._num_tentative = sum(1 for h in self._history if h)
        self._n = m

    # -- the Kalman filter -------------------------------------------------------------------------
    def _predict(self, t: float) -> tuple[np.ndarray, ...]:
        """The live tracks' state predicted at time ``t``: (pos, pp, pv, vv), each (n, 4)."""
        n = self._n
        pos, vel, pp, pv, vv = self._pos[:n], self._vel[:n], self._pp[:n], self._pv[:n], self._vv[:n]
        dt = (t - self._time[:n])[:, None]
        qdt = pos[:, 3:4] ** 2 * dt * self._q_shape  # white-noise acceleration over dt
        vv_dt = vv + qdt / 3.0
        pp_p = pp + dt * (2.0 * pv + dt * vv_dt)
        pv_p = pv + dt * (vv + qdt / 2.0)
        vv_p = vv + qdt
        pos_p = pos + vel * dt
        np.maximum(pos_p[:, 2:], _MIN_SIZE, out=pos_p[:, 2:])
        return pos_p, pp_p, pv_p, vv_p

    def _correct(self, rows: np.ndarray, z: np.ndarray, pred: tuple[np.ndarray, ...], t: float) -> None:
        """Kalman update of tracks ``rows`` with measurements ``z`` (k, 4) in cx, cy, w, h."""
        n = self._n
        if len(rows) == n:  # every track matched (the usual case on dense keyframes): whole views, no gathers
            order = np.argsort(rows)
            z = z[order]
            pos, pp, pv, vv = pred
            rows = slice(0, n)
        else:
            pos, pp, pv, vv = pred[0][rows], pred[1][rows], pred[2][rows], pred[3][rows]
        size = self.config.box_noise * pos[:, 2:]
        size *= size
        r = np.concatenate([size, size], axis=1)  # measurement variance: box_noise × (w, h, w, h)
        innovation = z - pos
        # A measurement far outside what the motion model predicted (more than 3 sigma) means the person
        # changed course: scale the prediction's covariance up so that the filter follows at once.
        scale = innovation**2 / (pp + r)
        scale *= 1.0 / 9.0
        np.maximum(scale, 1.0, out=scale)
        pp, pv, vv = pp * scale, pv * scale, vv * scale
        s = pp + r
        gain_p = pp / s
        gain_v = np.divide(pv, s, out=s)
        self._pos[rows] = pos + gain_p * innovation
        self._vel[rows] += gain_v * innovation
        keep = np.subtract(1.0, gain_p, out=gain_p)
        self._pp[rows] = keep * pp
        self._vv[rows] = vv - gain_v * pv
        self._pv[rows] = keep * pv
        self._time[rows] = t

    def _start(self, z: np.ndarray, t: float, step: int, rows: np.ndarray) -> None:
        """New tentative tracks from measurements ``z`` (k, 4) of boxes ``rows``."""
        k = len(z)
        while self._n + k > len(self._time):
            self._grow()
        new = slice(self._n, self._n + k)
        size = np.maximum(z[:, [2, 3, 2, 3]], _MIN_SIZE)
        self._pos[new] = z
        self._vel[new] = 0.0
        self._pp[new] = (self.config.box_noise * size) ** 2
        self._pv[new] = 0.0
        self._vv[new] = size[:, 1:2] ** 2 * self._v_shape
        self._time[new] = t
        self._hits[new] = 1
        self._ids[new] = -1
        self._history += [[(step, int(r))] for r in rows.tolist()]
        self._num_tentative += k
        self._n += k

    # -- association -------------------------------------------------------------------------------
    def _match(self, iou: np.ndarray, tracks: np.ndarray | None, dets: np.ndarray | None, min_iou: float
               ) -> tuple[np.ndarray, np.ndarray]:
        """Optimal (track, box) pairs among ``tracks`` × ``dets`` (None: all) with IoU >= ``min_iou``."""
        sub = iou if tracks is None else iou[tracks]
        if dets is not None:
            sub = sub[:, dets]
        if sub.size == 0:
            empty = np.zeros(0, np.int64)
            return empty, empty
        cost = np.subtract(1.0, sub)
        np.putmask(cost, sub < min_iou, _INVALID)
        ti, di = self._assign(cost)
        ok = cost[ti, di] < _INVALID
        if not ok.all():
            ti, di = ti[ok], di[ok]
        return (ti if tracks is None else tracks[ti]), (di if dets is None else dets[di])

    def update(self, time_s: float, boxes: np.ndarray, scores: np.ndarray) -> TrackerStep:
        """Associate one keyframe's boxes (N, 4) normalized xyxy with detector scores (N,) at ``time_s``.

        Keyframes must come in increasing time. Raises ValueError otherwise.
        """
        t = float(time_s)
        if not t > self._last_time:
            raise ValueError(f"keyframe at {t:g} s does not follow the previous one at {self._last_time:g} s")
        self._last_time = t
        self._step += 1
        cfg, step = self.config, self._step
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        out = TrackerStep(step, np.full(len(boxes), -1, dtype=np.int64))

        n = self._n
        if n:
            gone = self._time[:n] < t - cfg.max_gap_s - _TIME_EPS
            if gone.any():
                out.retired = [int(i) for i in self._ids[:n][gone] if i >= 0]
                self._remove(~gone)
                n = self._n

        z = boxes @ _XYXY_TO_CXCYWH
        is_high = scores >= cfg.high_score
        all_high = bool(is_high.all())
        taken = np.zeros(len(boxes), dtype=bool)
        tentative = self._num_tentative > 0
        if n and len(boxes):
            pred = self._predict(t)
            pos_p, pp_p = pred[0], pred[1]
            # The innovation's standard deviation of the centre: how far off the prediction may be.
            margins = np.sqrt(pp_p[:, :2] + (cfg.box_noise * pos_p[:, 2:]) ** 2)
            margins *= cfg.buffer_sigmas
            iou = buffered_iou(pos_p @ _CXCYWH_TO_XYXY, boxes, margins)
            # Common case (every box high, every track confirmed): one assignment on the whole matrix.
            confirmed = (self._ids[:n] >= 0).nonzero()[0] if tentative else None
            high = None if all_high else is_high.nonzero()[0]
            matched_t, matched_d = self._match(iou, confirmed, high, cfg.match_iou)
            taken[matched_d] = True
            if not all_high:
                free = np.ones(n, dtype=bool)
                free[matched_t] = False
                rest = free.nonzero()[0] if confirmed is None else confirmed[free[confirmed]]
                low = (~is_high & (scores >= cfg.low_score)).nonzero()[0]
                if len(rest) and len(low):
                    t2, d2 = self._match(iou, rest, low, cfg.low_match_iou)
                    matched_t, matched_d = np.concatenate([matched_t, t2]), np.concatenate([matched_d, d2])
                    taken[d2] = True
            if tentative:
                candidates = (is_high & ~taken).nonzero()[0]
                tent = (self._ids[:n] < 0).nonzero()[0]
                t3, d3 = self._match(iou, tent, candidates, cfg.match_iou)
                matched_t, matched_d = np.concatenate([matched_t, t3]), np.concatenate([matched_d, d3])
                taken[d3] = True
            if len(matched_t):
                self._correct(matched_t, z[matched_d], pred, t)
                out.track_ids[matched_d] = self._ids[matched_t]
            # Tentative tracks: a miss drops them, the min_hits-th match confirms them.
            if tentative:
                for i, d in zip(t3.tolist(), d3.tolist(), strict=True):
                    self._hits[i] += 1
                    if self._hits[i] >= cfg.min_hits:
                        self._confirm(i, out, d)
                    else:
                        self._history[i].append((step, d))
                missed = np.zeros(n, dtype=bool)
                missed[tent] = True
                missed[t3] = False
                if missed.any():
                    self._remove(~missed)
        elif n and tentative:
            self._remove(self._ids[:n] >= 0)
        new = (scores >= cfg.new_track_score)
        new &= ~taken
        new = new.nonzero()[0]
        if len(new):
            first = self._n
            self._start(z[new], t, step, new)
            if cfg.min_hits <= 1:
                for k, d in enumerate(new.tolist()):
                    self._confirm(first + k, out, d)
        return out

    def _confirm(self, i: int, out: TrackerStep, row: int) -> None:
        tid = self._next_id
        self._next_id += 1
        self._ids[i] = tid
        out.confirmed.append((tid, [obs for obs in self._history[i] if obs[0] != out.step]))
        self._history[i] = []
        self._num_tentative -= 1
        out.track_ids[row] = tid

    def finish(self) -> list[int]:
        """Retire every live confirmed track (end of the video); returns their ids. Resets the tracker."""
        ids = [int(i) for i in self._ids[: self._n] if i >= 0]
        self.reset()
        return ids


class GivenTracks:
    """The tracker's interface over identities that come with the detections (``track_ids`` >= 0).

    Boxes with id -1 are ignored. A track is confirmed at its first box and retired, like
    :class:`OnlineTracker`'s, when its last box is more than ``max_gap_s`` before the current keyframe.
    An id that comes back after its retirement starts a new track with the same id.
    """

    def __init__(self, max_gap_s: float) -> None:
        self.max_gap_s = float(max_gap_s)
        self.reset()

    def reset(self) -> None:
        self._last: dict[int, float] = {}
        self._step = -1
        self._last_time = -np.inf

    @property
    def num_tracks(self) -> int:
        return len(self._last)

    def oldest_tentative_step(self) -> int | None:
        return None

    def update(self, time_s: float, track_ids: np.ndarray) -> TrackerStep:
        """One keyframe's given ids (N,); raises ValueError on a repeated id or out-of-order time."""
        t = float(time_s)
        if not t > self._last_time:
            raise ValueError(f"keyframe at {t:g} s does not follow the previous one at {self._last_time:g} s")
        self._last_time = t
        self._step += 1
        ids = np.asarray(track_ids, dtype=np.int64)
        given = ids[ids >= 0]
        if len(np.unique(given)) != len(given):
            raise ValueError(f"keyframe at {t:g} s: track ids repeat: {sorted(given.tolist())}")
        out = TrackerStep(self._step, np.where(ids >= 0, ids, -1))
        out.retired = [i for i, last in self._last.items() if t - last > self.max_gap_s + _TIME_EPS]
        for i in out.retired:
            del self._last[i]
        for i in given.tolist():
            if i not in self._last:
                out.confirmed.append((i, []))
            self._last[i] = t
        return out

    def finish(self) -> list[int]:
        ids = list(self._last)
        self.reset()
        return ids
