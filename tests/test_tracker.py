"""Class-agnostic tracking: identities through crossings, gaps, entries and exits, at any stride."""

import numpy as np
import pytest

from detection.structures import box_iou
from detection.tubes.tracker import (
    GivenTracks,
    OnlineTracker,
    TrackerConfig,
    _unique_assignment,
    buffered_iou,
    interpolate_at,
)


def _box(cx: float, cy: float, w: float = 0.08, h: float = 0.3) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _run(tracker: OnlineTracker, frames: list[tuple[float, list, list]]) -> list:
    return [tracker.update(t, np.array(b, np.float64).reshape(-1, 4), np.array(s, np.float64)) for t, b, s in frames]


def _ids_of(steps, column):
    return [int(s.track_ids[column]) for s in steps]


@pytest.mark.parametrize("fps_stride", [(30, 1), (30, 5), (1, 1)])
def test_crossing_people_keep_identities(fps_stride):
    fps, stride = fps_stride
    # Two people walk towards each other at 0.15 frame widths per second and cross in the middle.
    frames = []
    for f in range(0, 10 * fps, stride):
        t = f / fps
        frames.append((t, [_box(0.1 + 0.08 * t, 0.5), _box(0.9 - 0.08 * t, 0.52, 0.085)], [0.9, 0.9]))
    steps = _run(OnlineTracker(), frames)
    a, b = _ids_of(steps[1:], 0), _ids_of(steps[1:], 1)
    assert set(a) == {a[0]} and set(b) == {b[0]} and a[0] != b[0]


def test_fast_motion_at_one_hertz_needs_the_buffer():
    # A runner covers 1.5 box widths per keyframe: plain IoU never overlaps, the buffered IoU does.
    frames = [(float(t), [_box(0.1 + 0.12 * t, 0.5)], [0.9]) for t in range(7)]
    steps = _run(OnlineTracker(), frames)
    assert _ids_of(steps[1:], 0) == [1] * 6
    plain = _run(OnlineTracker(TrackerConfig(buffer_sigmas=0.0)), frames)
    assert max(_ids_of(plain, 0)) < 1  # never two overlapping keyframes: never confirmed


def test_occlusion_gap_is_bridged():
    cfg = TrackerConfig(max_gap_s=1.0)
    frames = []
    for f in range(0, 60, 3):
        t = f / 30
        boxes = [] if 20 <= f < 44 else [_box(0.2 + 0.2 * t, 0.5)]  # missing for 0.8 s
        frames.append((t, boxes, [0.9] * len(boxes)))
    steps = _run(OnlineTracker(cfg), frames)
    ids = {int(i) for s in steps[1:] for i in s.track_ids}  # the first box is tentative, backfilled
    assert ids == {1}
    assert not any(s.retired for s in steps)


def test_entering_leaving_and_retirement():
    cfg = TrackerConfig(max_gap_s=0.5, min_hits=2)
    tracker = OnlineTracker(cfg)
    steps = []
    for f in range(0, 90):
        t = f / 30
        boxes, scores = [], []
        if f < 30:  # person A for 1 s, then gone
            boxes.append(_box(0.2, 0.5))
        if f >= 20:  # person B enters later
            boxes.append(_box(0.7, 0.5))
        if f >= 70:  # A comes back after 1.3 s: a new track
            boxes.append(_box(0.2, 0.5))
        scores = [0.9] * len(boxes)
        steps.append(tracker.update(t, np.array(boxes).reshape(-1, 4), np.array(scores)))
    assert _ids_of(steps[1:30], 0) == [1] * 29
    assert int(steps[21].track_ids[1]) == 2  # B confirmed at its second keyframe
    retired_at = [k for k, s in enumerate(steps) if 1 in s.retired]
    assert retired_at == [45]  # 0.5 s after A's last box (frame 29) is frame 44; retired at the next keyframe
    assert int(steps[71].track_ids[1]) == 3 and int(steps[89].track_ids[1]) == 3
    assert tracker.finish() == [2, 3]


def test_confirmation_backfills_and_false_positives_get_no_id():
    tracker = OnlineTracker(TrackerConfig(min_hits=3))
    steps = _run(tracker, [
        (0.0, [_box(0.3, 0.5), _box(0.8, 0.5)], [0.9, 0.95]),  # the second box is a one-off false positive
        (0.1, [_box(0.31, 0.5)], [0.9]),
        (0.2, [_box(0.32, 0.5)], [0.9]),
    ])
    assert steps[0].track_ids.tolist() == [-1, -1] and steps[1].track_ids.tolist() == [-1]
    assert steps[2].track_ids.tolist() == [1]
    assert steps[2].confirmed == [(1, [(0, 0), (1, 0)])]
    assert tracker.oldest_tentative_step() is None


def test_low_score_second_pass_recovers_the_track():
    def frames():
        for f in range(20):
            score = 0.3 if 8 <= f < 14 else 0.9  # partly occluded: the detector is unsure
            yield f / 30, [_box(0.3 + 0.005 * f, 0.5)], [score]

    steps = _run(OnlineTracker(), list(frames()))
    assert _ids_of(steps[1:], 0) == [1] * 19
    # Without the second pass the low boxes are left out (the track survives them as a gap).
    no_low = _run(OnlineTracker(TrackerConfig(low_score=0.5)), list(frames()))
    assert _ids_of(no_low[8:14], 0) == [-1] * 6 and _ids_of(no_low[14:], 0) == [1] * 6
    # Low boxes never start tracks.
    lonely = _run(OnlineTracker(), [(t / 30, [_box(0.5, 0.5)], [0.3]) for t in range(5)])
    assert _ids_of(lonely, 0) == [-1] * 5


def test_buffered_iou_is_iou_without_margin():
    rng = np.random.default_rng(0)
    a = np.sort(rng.random((5, 4)).reshape(5, 2, 2), axis=1).transpose(0, 2, 1).reshape(5, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.random((7, 4)).reshape(7, 2, 2), axis=1).transpose(0, 2, 1).reshape(7, 4)[:, [0, 2, 1, 3]]
    np.testing.assert_allclose(buffered_iou(a, b, np.zeros((5, 2))), box_iou(a, b), atol=1e-12)
    # A margin makes boxes that do not touch overlap.
    far = buffered_iou(np.array([[0.0, 0, 0.1, 0.1]]), np.array([[0.2, 0, 0.3, 0.1]]), np.array([[0.1, 0.0]]))
    assert 0.0 < far[0, 0] < 1.0


def test_interpolate_at():
    key = np.array([10, 20, 40])
    values = np.array([[0.0, 0, 1, 1], [1.0, 0, 2, 1], [1.0, 2, 2, 3]])
    out = interpolate_at(key, values, np.arange(8, 43))
    np.testing.assert_allclose(out[0], values[0])  # before the first: held
    np.testing.assert_allclose(out[15 - 8], [0.5, 0, 1.5, 1])
    np.testing.assert_allclose(out[30 - 8], [1.0, 1, 2, 2])
    np.testing.assert_allclose(out[-1], values[2])
    assert interpolate_at(key[:1], values[:1], np.arange(3)).shape == (3, 4)
    # Integer frames are not converted, float and unsigned ones are: the same values either way.
    frames = np.arange(8, 43)
    np.testing.assert_array_equal(interpolate_at(key.astype(float), values, frames.astype(float)), out)
    np.testing.assert_array_equal(interpolate_at(key.astype(np.uint32), values, frames.astype(np.uint32)), out)


def test_given_tracks_and_order_errors():
    given = GivenTracks(max_gap_s=1.0)
    s0 = given.update(0.0, np.array([7, -1, 3]))
    assert s0.confirmed == [(7, []), (3, [])] and s0.track_ids.tolist() == [7, -1, 3]
    s1 = given.update(2.0, np.array([7]))
    assert s1.retired == [7, 3] and s1.confirmed == [(7, [])]
    with pytest.raises(ValueError, match="repeat"):
        given.update(3.0, np.array([1, 1]))
    tracker = OnlineTracker()
    tracker.update(1.0, np.zeros((0, 4)), np.zeros(0))
    with pytest.raises(ValueError, match="does not follow"):
        tracker.update(1.0, np.zeros((0, 4)), np.zeros(0))
    with pytest.raises(ValueError, match="low_score"):
        TrackerConfig(low_score=0.8, high_score=0.5)


def _solver_pairs(gain: np.ndarray) -> set[tuple[int, int]]:
    """What the tracker's solver path gives: linear_sum_assignment on 1 - gain, forbidden pairs at 1e6."""
    from scipy.optimize import linear_sum_assignment

    cost = np.where(np.isfinite(gain), 1.0 - gain, 1e6)
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] < 1e6
    return set(zip(rows[ok].tolist(), cols[ok].tolist(), strict=True))


def _random_gains(rng: np.random.Generator, trial: int) -> np.ndarray:
    rows, cols = rng.integers(1, 9, size=2)  # rows > columns, rows < columns and square
    kind = trial % 4
    if kind == 0:  # like a keyframe: each box near its own track, some neighbours within reach
        gain = rng.uniform(0.0, 0.4, (rows, cols))
        k = min(rows, cols)
        gain[rng.permutation(rows)[:k], rng.permutation(cols)[:k]] = rng.uniform(0.5, 1.0, k)
    elif kind == 1:  # exact ties: values on a coarse grid
        gain = rng.integers(0, 6, (rows, cols)) / 5.0
    elif kind == 2:  # near-ties, closer than the fast path's margin
        gain = rng.uniform(0.3, 1.0, (rows, cols))
        gain[rng.integers(rows), :] = gain[rng.integers(rows), :] + rng.choice([0.0, 1e-9, -1e-9])
    else:
        gain = rng.uniform(0.0, 1.0, (rows, cols))
    threshold = rng.choice([0.3, 0.5, 0.9, 1.01])  # 1.01: every pair forbidden
    return np.where(gain < threshold, -np.inf, gain)


def test_unique_assignment_equals_the_solver():
    rng = np.random.default_rng(0)
    taken = 0
    for trial in range(3000):
        gain = _random_gains(rng, trial)
        plain = _unique_assignment(gain)
        if plain is None:  # left to the solver
            continue
        taken += 1
        rows, cols = plain
        assert rows.tolist() == sorted(rows.tolist())  # as linear_sum_assignment orders them
        assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == _solver_pairs(gain), gain
    assert taken > 1000  # the fast path is not a rarity


def test_unique_assignment_leaves_ties_and_conflicts_to_the_solver():
    tie = np.array([[0.8, -np.inf], [0.8, 0.6]])  # box 0 is as good for both tracks
    assert _unique_assignment(tie) is None
    near = np.array([[0.8, -np.inf], [0.8 + 1e-9, 0.6]])
    assert _unique_assignment(near) is None
    shared = np.array([[0.9, 0.8], [0.5, 0.4]])  # both boxes prefer track 0: the solver decides
    assert _unique_assignment(shared) is None
    rows, cols = _unique_assignment(np.array([[0.9, -np.inf], [-np.inf, -np.inf], [0.2, 0.7]]))
    assert rows.tolist() == [0, 2] and cols.tolist() == [0, 1]


def test_plain_passes_equal_the_two_passes():
    rng = np.random.default_rng(1)
    tracker = OnlineTracker()
    taken = 0
    for trial in range(2000):
        gain = _random_gains(rng, trial)
        iou = np.where(np.isfinite(gain), gain, rng.uniform(0.0, 0.3, gain.shape))
        scores = rng.choice([0.05, 0.3, 0.45, 0.5, 0.9], iou.shape[1])  # ignored, low and high boxes
        is_high = scores >= tracker.config.high_score
        plain = tracker._plain_passes(iou, scores, is_high)
        if plain is None:
            continue
        taken += 1
        rows, cols = tracker._passes(iou, scores, is_high, tentative=False)
        assert set(zip(*plain, strict=True)) == set(zip(rows.tolist(), cols.tolist(), strict=True))
    assert taken > 500
