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
the pass's IoU threshold being forbidden (the most matches first, then the best ones). On dense keyframes
that optimum is nearly always plain (each box's best track is clearly its best, and no other box's): then
passes 1 and 2 are read off the boxes' best IoUs at once, without the solver (:func:`_unique_assignment`),
to the same pairs. The IoU is *buffered*: both boxes of a pair are widened by ``buffer_sigmas`` standard
deviations of the track's predicted centre (its Kalman innovation), in x and in y. On every frame that
margin is a few pixels and the cost is plain IoU; at 1 Hz, or for a new track whose velocity is still
unknown, the margin grows with the uncertainty, and a person who moved further than their own width
still overlaps their track.

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
_NO_ROWS = np.zeros(0, dtype=np.int64)
_INVALID = 1e6  # assignment cost of a pair below its IoU threshold
# IoUs closer than this count as tied in the assignment's fast path (ties go to the solver): far above
# the rounding of the solver's arithmetic, far below any IoU difference that means something.
_TIE_EPS = 1e-7


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
    return _buffered_iou(t, b, 2.0 * np.asarray(margins, dtype=np.float64).reshape(-1, 2))


def _buffered_iou(t: np.ndarray, b: np.ndarray, widen: np.ndarray) -> np.ndarray:
    """:func:`buffered_iou` of float64 boxes ``t`` (T, 4), ``b`` (N, 4), with ``widen`` (T, 2) = 2 × margins."""
    nt, nb = len(t), len(b)
    # Every operand laid out once as contiguous (x, y) × (T, N) planes: numpy's broadcasting costs more
    # than the arithmetic at these sizes, and x and y go through each operation together.
    p = np.empty((5, 2, nt, nb))
    p[0:2] = t.reshape(nt, 2, 2).transpose(1, 2, 0)[..., None]  # (x1, y1), (x2, y2) of the tracks
    p[2:4] = b.reshape(nb, 2, 2).transpose(1, 2, 0)[:, :, None, :]  # and of the boxes
    p[4] = widen.T[:, :, None]
    t_lo, t_hi, b_lo, b_hi, m = p
    # When both boxes grow by m on each side, their overlap grows by 2m per axis (if it stays positive).
    overlap = np.minimum(t_hi, b_hi)
    overlap -= np.maximum(t_lo, b_lo)
    overlap += m
    np.maximum(overlap, 0.0, out=overlap)
    inter = np.multiply(overlap[0], overlap[1], out=overlap[0])
    for lo, hi in ((t_lo, t_hi), (b_lo, b_hi)):  # widened sizes, in place
        hi -= lo
        hi += m
    union = np.multiply(t_hi[0], t_hi[1], out=t_hi[0])
    union += np.multiply(b_hi[0], b_hi[1], out=b_hi[0])
    union -= inter
    np.maximum(union, 1e-300, out=union)  # a zero union has a zero overlap: IoU 0, no division by zero
    return np.divide(inter, union, out=inter)


def _unique_assignment(gain: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The optimal assignment of ``gain`` (R, C), R, C >= 1 (IoUs, forbidden pairs -inf), when plain; else None.

    Plain: the largest finite gain of each column is larger than every other gain of its column by more
    than ``_TIE_EPS``, and these maxima lie in distinct rows. Giving each such column its maximum then
    matches every column that can be matched (the most matches), at a total that no assignment can
    reach otherwise (none gains more than a column's maximum from that column): it is the unique
    optimum, the one ``linear_sum_assignment`` finds on the costs ``1 - gain``, of any shape, with
    forbidden pairs at ``_INVALID``. Returns (rows, columns) of the finite pairs, rows increasing (as
    linear_sum_assignment orders them); columns with no finite gain are on none.
    """
    lim = np.maximum.reduce(gain, axis=0)
    lim -= _TIE_EPS
    # Each column's entries within _TIE_EPS of its maximum; none in a column of -inf (-inf > -inf is false).
    rows, cols = (gain > lim).nonzero()
    r, c = rows.tolist(), cols.tolist()
    if len(set(r)) < len(r) or len(set(c)) < len(c):  # a column with a near-tie, or two columns on one row
        return None
    return rows, cols


def interpolate_at(key_frames: np.ndarray, key_values: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Values at ``frames``, linearly interpolated between keyframes (vectorised over trailing axes).

    key_frames: (K,) strictly increasing; key_values: (K, ...). Frames before the first / after the last
    keyframe get the first / last value (no extrapolation). Returns float32 (L, ...).
    """
    kf, kv, frames = np.asarray(key_frames), np.asarray(key_values), np.asarray(frames)
    if kf.dtype.kind not in "if" or frames.dtype.kind not in "if":  # signed integers stay as they are
        kf, frames = kf.astype(np.float64), frames.astype(np.float64)
    if len(kf) == 1:
        return np.repeat(kv[:1], len(frames), axis=0).astype(np.float32)
    return _interpolate(kf, kv, frames, clip=True)


def _interpolate(kf: np.ndarray, kv: np.ndarray, frames: np.ndarray, clip: bool) -> np.ndarray:
    """:func:`interpolate_at` of K >= 2 keyframes ``kf`` (signed integers or floats, as ``frames``).

    ``clip=False`` when no frame lies before the first or after the last keyframe: the weights are in
    [0, 1] already (two calls fewer, for the tube linker's many short calls).
    """
    # The segment [kf[i], kf[i + 1]] of each frame, i in [0, K - 2]: the inner keyframes at or before it.
    i = np.searchsorted(kf[1:-1], frames, side="right")
    lo = kf.take(i)
    i1 = i + 1
    w = np.subtract(frames, lo) / np.subtract(kf.take(i1), lo)
    if clip:
        np.maximum(w, 0.0, out=w)  # np.clip costs several times more at these sizes
        np.minimum(w, 1.0, out=w)
    a = kv.take(i, axis=0)  # ndarray.take: fancy indexing costs more at these sizes
    b = kv.take(i1, axis=0)
    b -= a
    b *= w[:, None] if kv.ndim == 2 else w.reshape(w.shape + (1,) * (kv.ndim - 1))
    b += a
    return b.astype(np.float32, copy=False)


# The Kalman state, (5, n, 4) for n tracks: the velocity and the position of cx, cy, w, h, then each
# coordinate's 2x2 covariance (position variance pp, position-velocity covariance pv, velocity variance
# vv). Block-major, and exactly as long as the live tracks: every block is one contiguous (n, 4) array,
# consecutive blocks one (k, n, 4) array, and a gather or a scatter of tracks is one call. Numpy's calls
# cost more than their arithmetic at these sizes, and least on contiguous operands of the same shape.
_VEL, _POS, _PP, _PV, _VV = range(5)
_HEIGHT4 = np.array([3, 3, 3, 3])  # the box's height, for each coordinate
_MIN_POS = np.array([-np.inf, -np.inf, _MIN_SIZE, _MIN_SIZE])
_THIRDS_HALVES = np.array([3.0, 2.0]).reshape(2, 1, 1)  # divisors of qdt in pp's and pv's rates
# Box conversions as matrix products (one numpy call instead of four slice operations).
_XYXY_TO_CXCYWH = np.array([[0.5, 0, -1, 0], [0, 0.5, 0, -1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]])
_CXCYWH_TO_XYXY = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]])
_WHWH = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1]], dtype=np.float64)  # -> w, h, w, h


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
        # cx, cy, w, h -> the measurement's standard deviations (box_noise × w, h, w, h), then x1, y1, x2, y2
        self._noise_xyxy = np.concatenate([self.config.box_noise * _WHWH, _CXCYWH_TO_XYXY], axis=1)
        # Per kind of box (0: under low_score, 1: low, 2: high), the least IoU of a match (above 1: none).
        self._kind_iou = np.array([2.0, self.config.low_match_iou, self.config.match_iou])
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start again at 1."""
        self._x = np.zeros((5, 0, 4))  # Kalman state (see _VEL ... _VV)
        self._time = np.zeros((0, 4))  # time of the last match, seconds (repeated for each coordinate)
        self._hits = np.zeros(0, dtype=np.int64)
        self._ids = np.zeros(0, dtype=np.int64)  # public id, -1 while tentative
        self._history: list[list[tuple[int, int]]] = []  # per track: (step, row) while tentative
        self._num_tentative = 0
        self._next_id = 1
        self._step = -1
        self._last_time = -np.inf
        self._oldest_match = -np.inf  # at most the earliest last match of the live tracks

    # -- state -------------------------------------------------------------------------------------
    @property
    def num_tracks(self) -> int:
        """Live tracks, tentative ones included."""
        return len(self._ids)

    @property
    def track_ids(self) -> np.ndarray:
        """Ids of the live confirmed tracks."""
        return self._ids[self._ids >= 0]

    def oldest_tentative_step(self) -> int | None:
        """The earliest keyframe step a tentative track still holds (its ids may change), or None."""
        if not self._num_tentative:
            return None
        return min(h[0][0] for h in self._history if h)

    def _remove(self, keep: np.ndarray) -> None:
        """Keep the live tracks flagged in ``keep`` (n,), in their order."""
        idx = keep.nonzero()[0]
        self._x, self._time, self._hits, self._ids = self._x[:, idx], self._time[idx], self._hits[idx], self._ids[idx]
        self._history = [self._history[i] for i in idx.tolist()]
        self._num_tentative = sum(1 for h in self._history if h)

    # -- the Kalman filter -------------------------------------------------------------------------
    def _predict(self, t: float) -> np.ndarray:
        """The live tracks' states (5, n, 4) predicted at time ``t`` (their own states are left as they are)."""
        vel, pos, _, pv, vv = x = self._x
        dt = np.subtract(t, self._time)  # (n, 4)
        qdt = pos.take(_HEIGHT4, axis=1)
        qdt *= qdt
        qdt *= dt
        qdt *= self._q_shape  # white-noise acceleration over dt
        pred = x.copy()
        p = pred[_POS]
        p += vel * dt
        np.maximum(p, _MIN_POS, out=p)  # sizes at least _MIN_SIZE
        # pp += dt (2 pv + dt (vv + qdt / 3)) and pv += dt (vv + qdt / 2), both at once.
        rate = np.divide(qdt, _THIRDS_HALVES)  # (2, n, 4)
        rate += vv
        rate *= dt
        pp_rate = rate[0]
        pp_rate += 2.0 * pv
        pp_rate *= dt
        pred[_PP : _PV + 1] += rate
        pred[_VV] += qdt
        return pred

    @staticmethod
    def _correct(x: np.ndarray, z: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Kalman update, in place, of predicted states ``x`` (5, k, 4) with measurements ``z`` (k, 4) in
        cx, cy, w, h, their variances ``r`` (k, 4) and the innovation variances ``s`` = pp + r (k, 4)."""
        innovation = z - x[_POS]
        # A measurement far outside what the motion model predicted (more than 3 sigma) means the person
        # changed course: scale the prediction's covariance up so that the filter follows at once.
        scale = innovation * innovation
        scale /= s
        scale *= 1.0 / 9.0
        np.maximum(scale, 1.0, out=scale)
        cov = x[_PP : _VV + 1]  # pp, pv, vv
        cov *= scale
        s = cov[0] + r
        gain = cov[0:2] / s  # of pos and of vel
        x[_VEL : _POS + 1] += gain[::-1] * innovation
        cov[2] -= gain[1] * cov[1]  # vv, from pv before its update
        cov[0:2] *= 1.0 - gain[0]  # pp, pv
        return x

    def _start(self, z: np.ndarray, t: float, step: int, rows: np.ndarray) -> None:
        """New tentative tracks from measurements ``z`` (k, 4) of boxes ``rows``."""
        k = len(z)
        size = np.maximum(z[:, [2, 3, 2, 3]], _MIN_SIZE)
        x = np.zeros((5, k, 4))  # zero velocity, zero position-velocity covariance
        x[_POS] = z
        x[_PP] = (self.config.box_noise * size) ** 2
        x[_VV] = size[:, 1:2] ** 2 * self._v_shape
        self._x = np.concatenate([self._x, x], axis=1)
        self._time = np.concatenate([self._time, np.full((k, 4), t)])
        self._hits = np.concatenate([self._hits, np.ones(k, np.int64)])
        self._ids = np.concatenate([self._ids, np.full(k, -1, np.int64)])
        self._history += [[(step, int(r))] for r in rows.tolist()]
        self._num_tentative += k

    # -- association -------------------------------------------------------------------------------
    def _match(self, iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
        """Optimal (row, column) pairs of ``iou`` with IoU >= ``min_iou``."""
        if iou.size == 0:
            empty = np.zeros(0, np.int64)
            return empty, empty
        cost = np.subtract(1.0, iou)
        np.putmask(cost, iou < min_iou, _INVALID)
        ti, di = self._assign(cost)
        ok = (cost[ti, di] < _INVALID).nonzero()[0]
        if len(ok) < len(ti):
            ti, di = ti[ok], di[ok]
        return ti, di

    def _plain_passes(
        self, iou: np.ndarray, scores: np.ndarray, is_high: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Passes 1 and 2 at once, when every track is confirmed and both assignments are plain; else None.

        One IoU matrix over all the boxes, each pair forbidden under its box's pass threshold (boxes under
        ``low_score`` everywhere). When :func:`_unique_assignment` finds it plain, each high box's best
        track is its pass-1 match (pass 1 is plain), and each low box's best track is none of these (the
        rows are distinct): it is among the tracks pass 1 left, its pass-2 match (pass 2 is plain too).
        """
        kind = np.add(is_high, scores >= self.config.low_score, dtype=np.intp)  # 0, 1: low, 2: high
        return _unique_assignment(np.where(iou < self._kind_iou.take(kind), -np.inf, iou))

    def _passes(
        self, iou: np.ndarray, scores: np.ndarray, is_high: np.ndarray, tentative: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Passes 1 and 2 (high, then low boxes against the confirmed tracks): (track, box) pairs."""
        cfg, n, num = self.config, len(iou), len(scores)
        confirmed = (self._ids >= 0).nonzero()[0] if tentative else None
        high = is_high.nonzero()[0]
        sub = iou if confirmed is None else iou[confirmed]
        matched_t, matched_d = self._match(sub if len(high) == num else sub.take(high, axis=1), cfg.match_iou)
        if confirmed is not None:
            matched_t = confirmed[matched_t]
        if len(high) < num:
            matched_d = high[matched_d]
            busy = np.zeros(n, dtype=bool)  # matched or tentative
            busy[matched_t] = True
            if confirmed is not None:
                busy[self._ids < 0] = True
            rest = (~busy).nonzero()[0]
            low = (scores >= cfg.low_score) ^ is_high  # low_score <= high_score
            low = low.nonzero()[0]
            if len(rest) and len(low):
                t2, d2 = self._match(iou.take(rest, axis=0).take(low, axis=1), cfg.low_match_iou)
                matched_t = np.concatenate([matched_t, rest[t2]])
                matched_d = np.concatenate([matched_d, low[d2]])
        return matched_t, matched_d

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
        num = len(boxes)
        out = TrackerStep(step, np.empty(num, dtype=np.int64))
        out.track_ids.fill(-1)

        n = len(self._ids)
        expiry = t - cfg.max_gap_s - _TIME_EPS  # tracks last matched before this are retired
        if n and self._oldest_match < expiry:
            gone = self._time[:, 0] < expiry
            if len(gone.nonzero()[0]):  # .nonzero() costs less than .any() at these sizes
                out.retired = [int(i) for i in self._ids[gone] if i >= 0]
                self._remove(~gone)
                n = len(self._ids)
            self._oldest_match = self._time[:, 0].min(initial=t)

        z = boxes @ _XYXY_TO_CXCYWH
        is_high = scores >= cfg.high_score
        matched_d = _NO_ROWS  # boxes on a track
        tentative = self._num_tentative > 0
        if n and num:
            x = self._predict(t)
            noise_xyxy = x[_POS] @ self._noise_xyxy  # one product for two (n, 4) results
            r = noise_xyxy[:, :4]
            r *= r  # the measurement's variance: box_noise × (w, h, w, h), squared
            s = x[_PP] + r  # the innovation's variance
            # Its standard deviation of the centre, how far off the prediction may be, widens the IoU.
            widen = np.sqrt(s)  # all four columns: one call on a whole array costs less than on a slice
            widen *= 2.0 * cfg.buffer_sigmas
            iou = _buffered_iou(noise_xyxy[:, 4:], boxes, widen[:, :2])
            plain = None if tentative else self._plain_passes(iou, scores, is_high)
            if plain is not None:
                matched_t, matched_d = plain
            else:
                matched_t, matched_d = self._passes(iou, scores, is_high, tentative)
            if tentative:
                taken = np.zeros(num, dtype=bool)
                taken[matched_d] = True
                candidates = (is_high > taken).nonzero()[0]  # high and not taken
                tent = (self._ids < 0).nonzero()[0]
                t3, d3 = self._match(iou[tent][:, candidates], cfg.match_iou)
                t3, d3 = tent[t3], candidates[d3]
                matched_t, matched_d = np.concatenate([matched_t, t3]), np.concatenate([matched_d, d3])
            if len(matched_t) == n:  # every track matched (the usual case on dense keyframes): no gathers
                if plain is not None:  # tracks 0, 1, ... in order
                    zn = z.take(matched_d, axis=0)
                else:
                    zn = np.empty((n, 4))
                    zn[matched_t] = z.take(matched_d, axis=0)
                self._x = self._correct(x, zn, r, s)
                self._time[:] = t
                self._oldest_match = t
            elif len(matched_t):
                x = x.take(matched_t, axis=1)
                r, s = r.take(matched_t, axis=0), s.take(matched_t, axis=0)
                self._x[:, matched_t] = self._correct(x, z.take(matched_d, axis=0), r, s)
                self._time[matched_t] = t
            out.track_ids[matched_d] = self._ids.take(matched_t)
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
            self._remove(self._ids >= 0)
        if len(matched_d) < num:  # boxes on no track start tentative ones, if they score high enough
            new = scores >= cfg.new_track_score
            new[matched_d] = False
            new = new.nonzero()[0]
            if len(new):
                first = len(self._ids)
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
        ids = [int(i) for i in self._ids if i >= 0]
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
