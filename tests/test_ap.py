import numpy as np
import pytest

from eval.ap import precision_recall, trapezoid_ap, voc_ap


def test_precision_recall_by_hand():
    precision, recall = precision_recall(np.array([True, False, True]), num_gt=3)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3])
    with pytest.raises(ValueError):
        precision_recall(np.array([True]), num_gt=0)


def test_voc_ap_uses_the_monotone_envelope():
    precision, recall = precision_recall(np.array([True, False, True]), num_gt=3)
    # Envelope: P=1 up to R=1/3, P=2/3 up to R=2/3, nothing after: 1/3 + 2/9.
    assert voc_ap(precision, recall) == pytest.approx(5 / 9)
    assert voc_ap(np.array([]), np.array([])) == 0.0
    assert voc_ap(np.ones(4), np.array([0.25, 0.5, 0.75, 1.0])) == pytest.approx(1.0)


def test_trapezoid_ap_starts_at_precision_one_without_interpolation():
    precision, recall = precision_recall(np.array([True, False, True]), num_gt=3)
    # (1/3)(1+1)/2 + 0 + (1/3)(1/2+2/3)/2
    assert trapezoid_ap(precision, recall) == pytest.approx(19 / 36)
    # A false positive first: the curve starts at (0, 1) and drops to (0, 0) at no cost in recall.
    precision, recall = precision_recall(np.array([False, True]), num_gt=1)
    assert trapezoid_ap(precision, recall) == pytest.approx(0.5 * (0 + 0.5))
    assert voc_ap(precision, recall) == pytest.approx(0.5)
