"""Average precision from ranked true/false positives: the interpolations the benchmarks use.

All functions take the true-positive flags of detections already sorted by decreasing score and the
number of ground-truth instances, and return precision/recall arrays or a scalar AP in [0, 1].
"""

from __future__ import annotations

import numpy as np

__all__ = ["precision_recall", "voc_ap", "trapezoid_ap"]


def precision_recall(tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative precision and recall after each ranked detection (float64 arrays).

    ``tp``: boolean flags in ranked order. With ``num_gt == 0`` recall is undefined: raises ValueError.
    """
    if num_gt <= 0:
        raise ValueError("precision/recall need at least one ground-truth instance")
    tp = np.asarray(tp, dtype=bool)
    true_pos = np.cumsum(tp, dtype=np.float64)
    false_pos = np.cumsum(~tp, dtype=np.float64)
    precision = true_pos / np.maximum(true_pos + false_pos, 1.0)
    recall = true_pos / float(num_gt)
    return precision, recall


def voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """PASCAL VOC (2010+) all-point AP: area under the monotone (upper envelope) precision curve.

    Padded with (R=0, P=0) and (R=1, P=0), precision made non-increasing from the right, then summed
    over the points where recall changes. Empty inputs give 0.
    """
    recall = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    precision = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changed = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[changed] - recall[changed - 1]) * precision[changed]))


def trapezoid_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """ACT's AP: trapezoidal area under the raw PR curve starting at (R=0, P=1), no interpolation.

    Computed in float32 like ACT's ``pr_to_ap``, whose precision/recall table is a float32 array: the
    points are rounded to float32, the trapezoids and their (pairwise) sum are float32 operations, so the
    result equals ACT's bit for bit (a float64 sum differs in the 7th-8th digit).
    """
    recall = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64)]).astype(np.float32)
    precision = np.concatenate([[1.0], np.asarray(precision, dtype=np.float64)]).astype(np.float32)
    return float(np.sum((recall[1:] - recall[:-1]) * (precision[1:] + precision[:-1]) * np.float32(0.5)))
