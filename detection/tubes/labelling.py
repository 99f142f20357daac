"""Temporal labelling: when does a tracked person perform each action?

Per track and per class, a two-state (background 0 / action 1) Viterbi over the track's keyframe scores.
All classes are decoded at once (numpy over C), so one person can carry several co-occurring actions.
The cost of a path is the sum of its unary costs plus ``switch_penalty`` (nats) per change of state:

- ``cost(0) = -log(1 - p)`` and ``cost(1) = -log(p) + logit(threshold)``, with ``p`` the action score
  clipped to ``[1e-6, 1 - 1e-6]``. Without the switch penalty this labels 1 exactly where
  ``p > threshold``; the penalty removes flicker: a run of action (or of background) survives only if
  its evidence outweighs the two switches it costs.
- The first state is free; ties prefer staying in the current state, and state 0 at the end.

**Offline** (:func:`viterbi_offline`) keeps every back-pointer and backtracks from the best end state.

With two states the forward pass only needs the difference ``cost(1) - cost(0)`` of the two survivors:
one clip and one add per keyframe and class.

**Online with a fixed lag W** (:class:`FixedLagViterbi`): the forward pass is the same (the same
arithmetic, step by step), but instead of back-pointers each state keeps its survivor path's last 64
states as the bits of a ``uint64`` (bit j = the state j keyframes ago), updated in O(1) per keyframe:
the survivor into state s is the survivor it came from, shifted by one bit, with s in bit 0. After
keyframe t is added, keyframe t - W is decided: bit W of the survivor that is best *now*. When the track
ends, the last W keyframes are read from the best survivor's bits, which is the offline backtrack.

When the two can differ: the decision for keyframe k, taken at k + W, equals the offline label of k
exactly when the two survivors at k + W (into state 0 and into state 1) already agree on keyframe k —
every full path passes through one of them, so no later evidence can change k. They agree as soon as
one survivor switches from the other's state, i.e. once some keyframe between k and k + W favours one
state by more than the switch penalty. The online decision can differ only for a keyframe k whose two
survivors still disagree W keyframes later (the evidence hovers around the threshold for more than W
keyframes): it then follows the path that is best at k + W, and later evidence may prefer the other.
With W >= the track's length minus one, nothing is decided before the end and the results are equal.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_LAG", "FixedLagViterbi", "viterbi_offline", "viterbi_online"]

MAX_LAG = 63  # the survivor paths are 64-bit masks
_EPS = 1e-6


def _check(threshold: float, switch_penalty: float) -> None:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"action threshold must be in (0, 1), got {threshold}")
    if not switch_penalty >= 0.0:
        raise ValueError(f"switch penalty must be >= 0, got {switch_penalty}")


def _evidence(scores: np.ndarray, logit_threshold: float) -> np.ndarray:
    """``cost(1) - cost(0)`` per score: ``logit(threshold) - logit(p)`` (negative favours the action)."""
    p = np.asarray(scores, dtype=np.float64)
    p = np.maximum(p, _EPS)  # np.clip costs several times more at these sizes
    np.minimum(p, 1.0 - _EPS, out=p)
    odds = np.subtract(1.0, p)
    np.divide(p, odds, out=odds)
    np.log(odds, out=odds)
    return np.subtract(logit_threshold, odds, out=odds)


def _forward(diff: np.ndarray, evidence: np.ndarray, penalty: float, switched: np.ndarray) -> np.ndarray:
    """One Viterbi step on ``diff`` = cost(1) - cost(0) of the two survivors (a 2-state trellis needs no more).

    The survivor into 0 switches from 1 when ``diff < -penalty``, the survivor into 1 from 0 when
    ``diff > penalty`` (strictly: ties stay); either way the new difference is
    ``clip(diff, -penalty, penalty) + evidence``. Writes whether they switch into ``switched[0]`` (into
    0) and ``switched[1]`` (into 1), bool arrays shaped like ``diff``; returns the new diff, in place.
    """
    np.less(diff, -penalty, out=switched[0])
    np.greater(diff, penalty, out=switched[1])
    np.maximum(diff, -penalty, out=diff)
    np.minimum(diff, penalty, out=diff)
    diff += evidence
    return diff


def viterbi_offline(scores: np.ndarray, threshold: float = 0.5, switch_penalty: float = 1.0) -> np.ndarray:
    """Exact labels (T, C) bool of a score series (T, C): the cheapest path of every class."""
    _check(threshold, switch_penalty)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected (T, C), got {scores.shape}")
    num, num_classes = scores.shape
    labels = np.zeros((num, num_classes), dtype=bool)
    if num == 0:
        return labels
    evidence = _evidence(scores, float(np.log(threshold / (1.0 - threshold))))
    switched = np.zeros((num, 2, num_classes), dtype=bool)  # [t, into state s, class]
    diff = evidence[0].copy()
    for t in range(1, num):
        diff = _forward(diff, evidence[t], switch_penalty, switched[t])
    cols = np.arange(num_classes)
    state = (diff < 0).astype(np.int64)  # ties: 0, as the online decoder
    for t in range(num - 1, -1, -1):
        labels[t] = state.astype(bool)
        state = state ^ switched[t, state, cols]
    return labels


class FixedLagViterbi:
    """Online fixed-lag Viterbi for many tracks at once (slots), vectorised over tracks and classes.

    Each slot is one track's score series. :meth:`step` adds one keyframe to some slots and returns the
    decisions that became final (the keyframe ``lag`` observations back); :meth:`flush` ends a slot's
    series and returns the labels of its undecided keyframes. ``lag`` in keyframes, at most 63.
    """

    def __init__(
        self, num_classes: int, threshold: float = 0.5, switch_penalty: float = 1.0, lag: int = 8, capacity: int = 16
    ) -> None:
        _check(threshold, switch_penalty)
        if not 0 <= lag <= MAX_LAG:
            raise ValueError(f"lag must be in [0, {MAX_LAG}] keyframes, got {lag}")
        self.num_classes, self.threshold, self.switch_penalty, self.lag = num_classes, threshold, switch_penalty, lag
        self._logit = float(np.log(threshold / (1.0 - threshold)))
        self._diff = np.zeros((capacity, num_classes))  # cost(1) - cost(0) of the two survivors
        # [s, slot]: the survivor into state s, bit j is its state j keyframes ago.
        self._paths = np.zeros((2, capacity, num_classes), dtype=np.uint64)
        self._count = np.zeros(capacity, dtype=np.int64)
        self._decided_bit = np.uint64(1 << lag)
        self._one = np.uint64(1)
        self._fresh: set[int] = set()  # started slots that have no keyframe yet

    @property
    def capacity(self) -> int:
        return len(self._count)

    def grow(self, capacity: int) -> None:
        """Make room for slots ``0 .. capacity - 1``."""
        if capacity <= self.capacity:
            return
        for name in ("_diff", "_count"):
            old = getattr(self, name)
            new = np.zeros((capacity,) + old.shape[1:], old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        paths = np.zeros((2, capacity, self.num_classes), np.uint64)
        paths[:, : self._paths.shape[1]] = self._paths
        self._paths = paths

    def count(self, slot: int) -> int:
        """Keyframes added to ``slot`` since it started."""
        return int(self._count[slot])

    def start(self, slot: int) -> None:
        """Begin a new series in ``slot`` (growing the capacity if needed)."""
        if slot >= self.capacity:
            self.grow(max(slot + 1, 2 * self.capacity))
        self._count[slot] = 0
        self._fresh.add(slot)
        self._diff[slot] = 0.0
        self._paths[:, slot] = 0

    def step(self, slots: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Add keyframe scores (n, C) to distinct ``slots`` (n,).

        Returns (rows, index, labels): for the slots with more than ``lag`` keyframes, ``rows`` into
        ``slots``, the 0-based keyframe ``index`` decided in each and its final ``labels`` (k, C) bool.
        """
        evidence = _evidence(scores, self._logit)
        count = self._count[slots]
        count += 1
        self._count[slots] = count
        # ndarray.take: fancy indexing costs more at these sizes
        paths = self._paths.take(slots, axis=1)  # (2, n, C)
        switched = np.empty(paths.shape, dtype=bool)
        diff = _forward(self._diff.take(slots, axis=0), evidence, self.switch_penalty, switched)
        if self._fresh:  # some slots get their first keyframe: no predecessor, no penalty
            fresh = count == 1
            diff[fresh] = evidence[fresh]
            switched[:, fresh] = False
            self._fresh -= set(slots[fresh].tolist())
        # Survivor into s: the path it came from (s itself, or the other state), shifted, with s in bit 0.
        paths = np.where(switched, paths[::-1], paths)
        paths <<= self._one
        paths[1] |= self._one
        self._diff[slots] = diff
        self._paths[:, slots] = paths
        rows = (count > self.lag).nonzero()[0]
        if not len(rows):
            return rows, rows, np.zeros((0, self.num_classes), dtype=bool)
        if len(rows) < len(slots):
            diff, paths, count = diff.take(rows, axis=0), paths.take(rows, axis=1), count[rows]
        # The survivor that is best now (state 1 iff its cost is lower; ties: 0 as offline), bit ``lag``.
        chosen = np.where(diff < 0, paths[1], paths[0])
        chosen &= self._decided_bit
        return rows, count - (self.lag + 1), chosen.astype(bool)

    def flush(self, slot: int) -> tuple[int, np.ndarray]:
        """End ``slot``'s series: (first undecided index, labels (k, C) of keyframes index .. count - 1)."""
        count = int(self._count[slot])
        k = min(count, self.lag)
        if k == 0:
            return count, np.zeros((0, self.num_classes), dtype=bool)
        chosen = np.where(self._diff[slot] < 0, self._paths[1, slot], self._paths[0, slot])
        shifts = np.arange(k - 1, -1, -1, dtype=np.uint64)  # oldest undecided first
        labels = ((chosen[None, :] >> shifts[:, None]) & np.uint64(1)).astype(bool)
        self._count[slot] = 0
        return count - k, labels


def viterbi_online(
    scores: np.ndarray, threshold: float = 0.5, switch_penalty: float = 1.0, lag: int = 8
) -> np.ndarray:
    """Labels (T, C) of one score series (T, C) as :class:`FixedLagViterbi` decides them with lag ``lag``."""
    scores = np.asarray(scores, dtype=np.float64)
    num, num_classes = scores.shape
    decoder = FixedLagViterbi(num_classes, threshold, switch_penalty, lag, capacity=1)
    decoder.start(0)
    labels = np.zeros((num, num_classes), dtype=bool)
    slot = np.zeros(1, dtype=np.int64)
    for t in range(num):
        _, index, decided = decoder.step(slot, scores[t : t + 1])
        if len(index):
            labels[index[0]] = decided[0]
    first, rest = decoder.flush(0)
    labels[first:] = rest
    return labels
