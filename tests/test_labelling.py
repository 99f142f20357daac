"""Temporal labelling: per-class action/background Viterbi, offline and with a fixed lag."""

import numpy as np
import pytest

from detection.tubes.labelling import FixedLagViterbi, viterbi_offline, viterbi_online


def _survivors_agree(scores: np.ndarray, threshold: float, penalty: float) -> np.ndarray:
    """agree[t, k, c]: at keyframe t, the survivor paths into state 0 and state 1 share keyframe k's state.

    Brute force, independent of the decoder: the two survivors' costs with back-pointers (in the
    decoder's arithmetic: the difference of the two costs), then both survivors backtracked from every t.
    """
    num, num_classes = scores.shape
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    evidence = np.log(threshold / (1.0 - threshold)) - np.log(p / (1.0 - p))  # cost(1) - cost(0)
    back = np.zeros((num, num_classes, 2), dtype=np.int64)  # previous state of each survivor
    back[0] = [0, 1]
    diff = evidence[0]
    for t in range(1, num):
        back[t, :, 0] = np.where(diff < -penalty, 1, 0)  # into 0: from 1 if that is strictly cheaper
        back[t, :, 1] = np.where(diff > penalty, 0, 1)
        diff = np.clip(diff, -penalty, penalty) + evidence[t]
    agree = np.zeros((num, num, num_classes), dtype=bool)
    for t in range(num):
        for c in range(num_classes):
            a, b = 0, 1
            for k in range(t, -1, -1):
                agree[t, k, c] = a == b
                a, b = back[k, c, a], back[k, c, b]
    return agree


def test_no_penalty_is_a_threshold():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 4))
    for threshold in (0.3, 0.5, 0.8):
        labels = viterbi_offline(scores, threshold, switch_penalty=0.0)
        np.testing.assert_array_equal(labels, scores > threshold)


def test_switch_penalty_suppresses_flicker():
    scores = np.full((20, 1), 0.1)
    scores[5] = 0.8  # a one-keyframe blip
    scores[10:16] = 0.8  # a real action
    scores[12] = 0.3  # with a one-keyframe dip inside it
    labels = viterbi_offline(scores, 0.5, switch_penalty=2.0)[:, 0]
    expected = np.zeros(20, dtype=bool)
    expected[10:16] = True
    np.testing.assert_array_equal(labels, expected)
    # Without a penalty both glitches show.
    raw = viterbi_offline(scores, 0.5, switch_penalty=0.0)[:, 0]
    assert raw[5] and not raw[12]


def test_classes_are_labelled_independently():
    scores = np.zeros((12, 3)) + 0.05
    scores[2:9, 0] = 0.9
    scores[4:12, 2] = 0.9  # co-occurs with class 0
    labels = viterbi_offline(scores, 0.5, 1.0)
    assert labels[2:9, 0].all() and not labels[9:, 0].any() and not labels[:2, 0].any()
    assert labels[4:, 2].all() and not labels[:4, 2].any()
    assert not labels[:, 1].any()
    for c in range(3):
        np.testing.assert_array_equal(labels[:, c], viterbi_offline(scores[:, c : c + 1], 0.5, 1.0)[:, 0])


@pytest.mark.parametrize("seed", range(6))
def test_online_equals_offline_once_the_lag_covers_the_path(seed):
    rng = np.random.default_rng(seed)
    num, num_classes = 60, 5
    # Scores that hover around the threshold for a while make survivors disagree for long stretches.
    base = rng.random((num, num_classes))
    hover = 0.5 + 0.15 * rng.standard_normal((num, num_classes))
    scores = np.clip(np.where(rng.random((num, 1)) < 0.5, base, hover), 0, 1)
    threshold, penalty = 0.45, float(rng.uniform(0.5, 3.0))
    offline = viterbi_offline(scores, threshold, penalty)
    agree = _survivors_agree(scores, threshold, penalty)
    unmerged = 0
    for lag in (0, 1, 2, 5, 12):
        online = viterbi_online(scores, threshold, penalty, lag)
        for k in range(num):
            t = min(k + lag, num - 1)
            decided_at_end = k + lag >= num  # decided by the final backtrack: exact
            merged = agree[t, k] | decided_at_end
            np.testing.assert_array_equal(online[k][merged], offline[k][merged], err_msg=f"lag {lag}, keyframe {k}")
            unmerged += int((~merged).sum())
    assert unmerged > 0  # the property is not vacuous on these inputs
    # A lag at least the series length decides everything at the end: the offline result.
    np.testing.assert_array_equal(viterbi_online(scores, threshold, penalty, num - 1), offline)
    np.testing.assert_array_equal(viterbi_online(scores, threshold, penalty, 63), offline)


def test_online_can_differ_only_where_survivors_disagree():
    # Evidence that hovers at the threshold, then decides late: lag 2 commits too early.
    scores = np.array([[0.9], [0.9], [0.3], [0.6], [0.3], [0.6], [0.3], [0.02], [0.02]])
    offline = viterbi_offline(scores, 0.5, 1.5)
    online = viterbi_online(scores, 0.5, 1.5, lag=2)
    agree = _survivors_agree(scores, 0.5, 1.5)
    differ = np.flatnonzero(online[:, 0] != offline[:, 0])
    assert len(differ) > 0
    for k in differ:
        assert not agree[min(k + 2, len(scores) - 1), k, 0]


def test_fixed_lag_batches_slots():
    rng = np.random.default_rng(3)
    series = [rng.random((n, 3)) for n in (30, 7, 18)]
    decoder = FixedLagViterbi(3, 0.5, 1.0, lag=4, capacity=2)
    for slot in range(3):
        decoder.start(slot)
    got = [np.zeros((len(s), 3), dtype=bool) for s in series]
    for t in range(max(len(s) for s in series)):
        slots = np.array([k for k, s in enumerate(series) if t < len(s)])
        rows, index, labels = decoder.step(slots, np.stack([series[k][t] for k in slots]))
        for r, i, lab in zip(rows, index, labels, strict=True):
            got[slots[r]][i] = lab
        for k, s in enumerate(series):
            if t == len(s) - 1:
                first, rest = decoder.flush(k)
                got[k][first:] = rest
    for k, s in enumerate(series):
        np.testing.assert_array_equal(got[k], viterbi_online(s, 0.5, 1.0, 4))


def test_bad_settings():
    with pytest.raises(ValueError, match="threshold"):
        viterbi_offline(np.zeros((3, 1)), 1.0)
    with pytest.raises(ValueError, match="lag"):
        FixedLagViterbi(2, lag=64)
    with pytest.raises(ValueError, match="penalty"):
        viterbi_offline(np.zeros((3, 1)), 0.5, -1.0)
    assert viterbi_offline(np.zeros((0, 2))).shape == (0, 2)
