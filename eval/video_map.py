"""Video-mAP and frame-AP of action tubes on UCF101-24, JHMDB-21 and MultiSports, with two named protocols.

Both protocols rank the detections of a class over all test videos by score and match them greedily to
the ground-truth tubes (boxes) of the same class and video; what differs is below. Each reproduces its
reference implementation, including its tie handling (the same ``np.argsort`` calls on the same arrays):

``act`` — ``ACT.py`` / ``ACT_utils.py`` of ACT as shipped with MOC-Detector (UCF101-24, JHMDB-21):
  - box areas with "+1 pixel" (``(x2 - x1 + 1) * (y2 - y1 + 1)``), for tubes and frames;
  - tube IoU = mean per-frame box IoU over the temporal intersection ``[tmin, tmax]``, times the temporal
    IoU ``(tmax - tmin + 1) / (max(end) - min(start) + 1)`` (frame counts, inclusive);
  - before ranking, tube NMS per video and class: highest score first, a tube is dropped when its IoU
    with a kept tube is above 0.3;
  - a detection takes the *remaining* ground truth with the highest IoU; at or above the threshold it is
    a true positive and that ground truth is removed (a later detection may take another one);
  - AP = trapezoids under the raw precision/recall curve from (R=0, P=1), in float32 like the original.
``multisports`` — ``evaluate_multisports.py`` of MultiSports:
  - continuous box areas (``(x2 - x1) * (y2 - y1)``);
  - temporal IoU ``(tmax - tmin) / (max(end) - min(start))`` (frame *differences*: a one-frame overlap
    gives 0, two one-frame tubes on the same frame give 0/0 = NaN, which never matches);
  - no tube NMS;
  - a detection takes the ground truth with the highest IoU among *all* of them; if that one is already
    taken (or below the threshold) the detection is a false positive (PASCAL VOC style);
  - AP = VOC all-point AP (monotone envelope), float64;
  - six classes are not evaluated (``MULTISPORTS_UNEVALUATED``, matched by name).

Frame-AP (IoU 0.5, over every annotated frame of every ground-truth tube) uses the same box IoU,
matching rule and AP as the protocol's video-AP. Its detections are ACT's (N, 8) frame-detection array
when given; otherwise they are derived from the detected tubes of the test videos (all of them, before
NMS): one detection per tube frame, with that frame's box, that frame's score (the tube score when the
tube has no per-frame scores) and the tube's label.

Only ``gt.test_videos[split]`` is evaluated; detections on other videos are ignored and counted. A
class without ground truth in the test videos (or not evaluated) gets ``None``; one with ground truth
but no detections gets 0. Detected tubes may have frame gaps (the references assume they do not): a
frame of the temporal intersection where either tube has no box counts with IoU 0.

IoUs are computed in float64, vectorised over all tubes of a video and class. An IoU within 1e-5 of a
decision (a threshold, the NMS overlap, or a rival ground truth's IoU) is recomputed with the
references' own arithmetic: the arrays' dtypes (ACT's files hold float32), their order of operations,
``np.mean`` over the overlap, and NumPy 2's comparison of a float32 IoU with a threshold rounded to
float32. The decisions, hence the APs, are the references' as they run under NumPy 2 (under NumPy 1 the
references compared float32 IoUs in float64: they can differ for an IoU within half a float32 step of a
threshold).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from detection.formats.act import ActGroundTruth, read_act_groundtruth
from eval.ap import precision_recall, trapezoid_ap, voc_ap
from eval.report import fmt_ap, format_table, plot_ap_bars, write_csv, write_json
from eval.tube_inputs import (
    DetectedTubes,
    check_tube_array,
    check_tube_arrays,
    read_detected_tubes,
    read_frame_detections,
)

__all__ = [
    "PROTOCOLS",
    "MULTISPORTS_UNEVALUATED",
    "VIDEO_AP_KEYS",
    "ClassResult",
    "VideoMapResult",
    "evaluate_video_map",
    "evaluate_video_map_files",
    "frame_detections_from_tubes",
    "tube_iou",
    "tube_nms",
]

PROTOCOLS = ("act", "multisports")
#: The classes ``evaluate_multisports.py`` leaves out of both video-AP and frame-AP, by name.
MULTISPORTS_UNEVALUATED = (
    "aerobic kick jump",
    "aerobic off axis jump",
    "aerobic butterfly jump",
    "aerobic balance turn",
    "basketball save",
    "basketball jump ball",
)
TUBE_NMS_OVERLAP = 0.3  # act only
FRAME_IOU = 0.5
#: The 0.5:0.95 thresholds computed as both references do (so 0.85 is 0.8500000000000001).
SWEEP_THRESHOLDS = tuple(0.5 + 0.05 * i for i in range(10))
VIDEO_AP_KEYS = ("0.2", "0.5", "0.75", "0.5:0.95")
_SINGLE_THRESHOLDS = {"0.2": 0.2, "0.5": 0.5, "0.75": 0.75}
_THRESHOLDS = tuple(sorted({0.2, 0.5, 0.75, *SWEEP_THRESHOLDS}))


# --------------------------------------------------------------------------------------------------
# Tube IoU


class _DenseTubes:
    """Tubes laid out on one frame axis, for vectorised IoUs: ``planes[tube, k, frame - f0]``.

    The five planes are ``x1, y1, x2 + one, y2 + one`` and the area ``(x2 - x1 + one) * (y2 - y1 + one)``,
    written in the references' order of operations (``one`` = 1 for ACT's pixel areas, 0 otherwise). A
    frame without a box holds ``+inf, +inf, -inf, -inf`` and area 1: its overlap with anything is 0 and
    its union positive, so its IoU is exactly 0 with no mask to apply.
    """

    def __init__(self, tubes: Sequence[np.ndarray], one: float) -> None:
        lengths = np.array([len(t) for t in tubes])
        rows5 = np.concatenate([t[:, :5] for t in tubes]).astype(np.float64)
        frames = rows5[:, 0].astype(np.int64)
        last = np.cumsum(lengths) - 1
        self.start = frames[last - lengths + 1]
        self.end = frames[last]
        self.f0 = int(self.start.min())
        self.width = int(self.end.max()) - self.f0 + 1
        self.planes = np.empty((len(tubes), 5, self.width))
        self.planes[:, :2] = np.inf
        self.planes[:, 2:4] = -np.inf
        self.planes[:, 4] = 1.0
        # Flat positions of every (tube, frame) in plane 0; plane k is width * k further.
        at = np.repeat(np.arange(len(tubes)) * (5 * self.width), lengths) + (frames - self.f0)
        flat = self.planes.reshape(-1)
        x1, y1, x2, y2 = rows5[:, 1], rows5[:, 2], rows5[:, 3], rows5[:, 4]
        flat[at] = x1
        flat[at + self.width] = y1
        flat[at + 2 * self.width] = x2 + one
        flat[at + 3 * self.width] = y2 + one
        flat[at + 4 * self.width] = (x2 - x1 + one) * (y2 - y1 + one)


def _pair_ious(a: _DenseTubes, rows: np.ndarray, b: _DenseTubes, j: int, one: float) -> np.ndarray:
    """IoUs between tubes ``a[rows]`` and tube ``b[j]``; every row must overlap ``b[j]`` in time.

    Mean per-frame IoU over the temporal intersection (a frame where either tube lacks a box counts 0),
    times the temporal IoU with ``one`` added to both frame counts (ACT) or not (MultiSports).
    """
    lo = max(int(b.start[j]), a.f0)
    hi = min(int(b.end[j]), a.f0 + a.width - 1)
    # All candidate tubes against b[j] at once, over b[j]'s frames: (tubes, frames) blocks, in place.
    # Gathering the rows costs about half the arithmetic: for most of the tubes, compute them all.
    gather = 2 * len(rows) < len(a.start)
    pa = a.planes[rows if gather else slice(None), :, lo - a.f0 : hi - a.f0 + 1]
    pb = b.planes[j, :, lo - b.f0 : hi - b.f0 + 1]
    width = np.minimum(pa[:, 2], pb[2])
    width -= np.maximum(pa[:, 0], pb[0])
    np.maximum(width, 0.0, out=width)
    height = np.minimum(pa[:, 3], pb[3])
    height -= np.maximum(pa[:, 1], pb[1])
    np.maximum(height, 0.0, out=height)
    overlap = np.multiply(width, height, out=width)
    union = np.add(pb[4], pa[:, 4], out=height)
    union -= overlap
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.divide(overlap, union, out=overlap)
        total = iou.sum(axis=1) if gather else iou.sum(axis=1)[rows]
        tmin = np.maximum(a.start[rows], b.start[j])
        tmax = np.minimum(a.end[rows], b.end[j])
        spatial = total / (tmax - tmin + 1)
        temporal = (tmax - tmin + one) / (
            np.maximum(a.end[rows], b.end[j]) - np.minimum(a.start[rows], b.start[j]) + one
        )
        return spatial * temporal


def _iou_matrix(dets: Sequence[np.ndarray], gts: Sequence[np.ndarray], one: float) -> np.ndarray:
    """(len(dets), len(gts)) tube IoUs; 0 for pairs that do not overlap in time."""
    out = np.zeros((len(dets), len(gts)))
    if not dets or not gts:
        return out
    a, b = _DenseTubes(dets, one), _DenseTubes(gts, one)
    for j in range(len(gts)):
        rows = np.flatnonzero(np.minimum(a.end, b.end[j]) >= np.maximum(a.start, b.start[j]))
        if rows.size:
            out[rows, j] = _pair_ious(a, rows, b, j, one)
    return out


#: Tube IoUs this close to a decision (a threshold, or a rival ground truth's IoU) are recomputed with
#: the references' own arithmetic: float32 inputs make them compute in float32, and their np.mean sums
#: in another order than ours, either of which can tip an IoU that sits on a threshold.
_FRAGILE = 1e-5


def _reference_arithmetic_iou(b1: np.ndarray, b2: np.ndarray, one: float) -> np.floating | float | None:
    """Tube IoU computed step by step as ``iou3dt`` / ``iou3dt_voc`` do, in the arrays' own dtypes.

    ``b1`` is the references' first argument (the ground truth when matching, the other tube in NMS).
    Returns a NumPy scalar (float32 when both tubes are float32), or None when a tube has a frame gap in
    the overlap, a case the references do not define.
    """
    s1, e1, s2, e2 = b1[0, 0], b1[-1, 0], b2[0, 0], b2[-1, 0]
    tmin = s2 if s2 > s1 else s1  # Python's max/min: the first argument wins ties (its dtype matters)
    tmax = e2 if e2 < e1 else e1
    if tmax < tmin:
        return 0.0
    inter = tmax - tmin + one
    union = (e2 if e2 > e1 else e1) - (s2 if s2 < s1 else s1) + one
    i1, j1 = np.searchsorted(b1[:, 0], [tmin, tmax])
    i2, j2 = np.searchsorted(b2[:, 0], [tmin, tmax])
    t1, t2 = b1[i1 : j1 + 1], b2[i2 : j2 + 1]
    if len(t1) != len(t2) or (t1[:, 0] != t2[:, 0]).any():
        return None
    t1, t2 = t1[:, 1:5], t2[:, 1:5]
    width = np.maximum(0, np.minimum(t1[:, 2] + one, t2[:, 2] + one) - np.maximum(t1[:, 0], t2[:, 0]))
    height = np.maximum(0, np.minimum(t1[:, 3] + one, t2[:, 3] + one) - np.maximum(t1[:, 1], t2[:, 1]))
    overlap = width * height
    area1 = (t1[:, 2] - t1[:, 0] + one) * (t1[:, 3] - t1[:, 1] + one)
    area2 = (t2[:, 2] - t2[:, 0] + one) * (t2[:, 3] - t2[:, 1] + one)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(overlap / (area1 + area2 - overlap)) * (inter / union)


def _match_value(iou: np.floating | float) -> float:
    """A float64 that compares with every threshold ``t`` as the references compare ``iou >= t``.

    Under NumPy 2 a float32 IoU meets a Python-float threshold in float32 (the threshold rounded to
    float32), so a float32 IoU stands for the largest float64 whose rounding to float32 does not exceed
    it; the order between IoUs is kept. Float64 IoUs stay as they are.
    """
    if not isinstance(iou, np.float32) or not np.isfinite(iou):
        return float(iou)
    midpoint = (float(iou) + float(np.nextafter(iou, np.float32(np.inf)))) / 2
    even = int(np.asarray(iou).view(np.uint32)) % 2 == 0  # a tie at the midpoint rounds to even
    return midpoint if even else float(np.nextafter(midpoint, -np.inf))


def _fragile(ious: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Entries of a (detections, ground truths) IoU matrix within ``_FRAGILE`` of a threshold, or of
    another entry of their row that could also match (an argmax decided by rounding)."""
    near = np.zeros(ious.shape, dtype=bool)
    for th in thresholds:
        near |= np.abs(ious - th) <= _FRAGILE
    if ious.shape[1] > 1:
        contender = ious >= min(thresholds) - _FRAGILE
        close = np.abs(ious[:, :, None] - ious[:, None, :]) <= _FRAGILE
        close &= contender[:, :, None] & contender[:, None, :]
        close[:, np.arange(ious.shape[1]), np.arange(ious.shape[1])] = False
        near |= close.any(axis=2)
    return near


def _protocol_one(protocol: str) -> float:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    return 1.0 if protocol == "act" else 0.0


def tube_iou(a: np.ndarray, b: np.ndarray, protocol: str = "act") -> float:
    """Spatio-temporal IoU of two tubes, each an (L, >=5) array of frame, x1, y1, x2, y2 (pixels).

    ``act``: +1 pixel areas and inclusive frame counts; ``multisports``: continuous areas and frame
    differences (NaN for two one-frame tubes on the same frame). Raises ValueError on a bad tube.
    """
    one = _protocol_one(protocol)
    a = check_tube_array(a, "tube a")
    b = check_tube_array(b, "tube b")
    return float(_iou_matrix([a], [b], one)[0, 0])


def tube_nms(tubes: Sequence[tuple[np.ndarray, float]], overlap: float = TUBE_NMS_OVERLAP) -> np.ndarray:
    """ACT's tube NMS: indices of the ``(tube, score)`` pairs kept, highest score first.

    Greedy from the highest score (ties in ``np.argsort`` order, as ACT); a tube is dropped when its ACT
    tube IoU with a kept tube is above ``overlap``. Tubes are (L, >=5) pixel arrays with valid boxes.
    """
    if not tubes:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(np.array([t[1] for t in tubes]))[::-1]
    raw = [np.asarray(t[0]) for t in tubes]
    dense = _DenseTubes(raw, 1.0)
    is_f32 = np.array([r.dtype == np.float32 for r in raw])
    alive = np.ones(len(tubes), dtype=bool)
    keep = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(i)
        alive[i] = False
        rows = np.flatnonzero(alive)
        if not rows.size:
            break
        tmin = np.maximum(dense.start[rows], dense.start[i])
        tmax = np.minimum(dense.end[rows], dense.end[i])
        union = np.maximum(dense.end[rows], dense.end[i]) - np.minimum(dense.start[rows], dense.start[i]) + 1
        # ACT compares np.array(IoUs of all remaining tubes) with the overlap: a float32 array (and a
        # float32 comparison) when every IoU is a float32 scalar, float64 as soon as one tube is float64
        # or does not meet tube i in time (iou3dt then returns the Python float 0.0).
        float32_compare = bool(is_f32[i] and is_f32[rows].all() and (tmax >= tmin).all())
        # The spatial mean is at most 1 (valid boxes, +1 areas), so a temporal IoU at or below the
        # overlap cannot suppress: only the others need the per-frame computation.
        rows = rows[(tmax >= tmin) & ((tmax - tmin + 1) / union > overlap * (1.0 - _FRAGILE))]
        if rows.size:
            ious = _pair_ious(dense, rows, dense, i, 1.0)
            suppress = ~(ious <= overlap)
            for k in np.flatnonzero(np.abs(ious - overlap) <= _FRAGILE):
                exact = _reference_arithmetic_iou(raw[rows[k]], raw[i], 1.0)
                if exact is not None:
                    suppress[k] = not (exact if float32_compare else float(exact)) <= overlap
            alive[rows[suppress]] = False
    return np.asarray(keep, dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Greedy matching of ranked detections


def _greedy_match(
    group: np.ndarray,
    gt_count: np.ndarray,
    iou_rows: Callable[[np.ndarray], np.ndarray],
    thresholds: Sequence[float],
    remove_matched: bool,
) -> np.ndarray:
    """True-positive flags (len(thresholds), M) of M ranked detections, matched as the references do.

    ``group[i]`` is the ground-truth group (video for tubes, video frame for boxes) of the i-th ranked
    detection, -1 when the group has no ground truth; group k has ``gt_count[k]`` ground truths;
    ``iou_rows(rows)`` gives the IoUs of those detections with their group's ground truths,
    (len(rows), gt_count.max()), -inf in unused slots.

    A detection only competes with the higher-ranked detections of its own group, so detections are
    processed in rounds: round r holds the r-th ranked detection of every group, all groups at once, for
    all thresholds at once. ``remove_matched`` (ACT): take the best *remaining* ground truth;
    otherwise (VOC): take the best ground truth, a false positive when it is already taken.
    """
    tp = np.zeros((len(thresholds), len(group)), dtype=bool)
    has_gt = np.flatnonzero(group >= 0)
    num_groups, gmax = len(gt_count), int(gt_count.max(initial=0))
    if not has_gt.size or gmax == 0:
        return tp
    g = group[has_gt]
    by_group = np.argsort(g, kind="stable")
    counts = np.bincount(g, minlength=num_groups)
    first = np.cumsum(counts) - counts
    rank_in_group = np.empty(len(g), dtype=np.int64)
    rank_in_group[by_group] = np.arange(len(g)) - first[g[by_group]]
    small = rank_in_group.astype(np.int16) if len(g) and rank_in_group.max() < 2**15 else rank_in_group
    by_round = np.argsort(small, kind="stable")  # a radix sort for 16-bit keys
    stops = np.cumsum(np.bincount(rank_in_group))
    # free[t, group, slot]: ground truth not yet taken at threshold t (ACT: still there; VOC: undetected)
    free = np.broadcast_to(np.arange(gmax) < gt_count[:, None], (len(thresholds), num_groups, gmax)).copy()
    th = np.asarray(thresholds, dtype=np.float64)[:, None]
    start = 0
    for stop in stops:
        sel = by_round[start:stop]
        start = stop
        # A detection whose group has nothing left to take is a false positive under both rules.
        sel = sel[free[:, g[sel]].any(axis=(0, 2))]
        if not sel.size:
            continue
        rows, gs = has_gt[sel], g[sel]
        iou = iou_rows(rows)
        if remove_matched:
            masked = np.where(free[:, gs], iou[None], -np.inf)
            best = masked.argmax(axis=2)  # first maximum, NaN first: np.argmax as in ACT
            hit = np.take_along_axis(masked, best[..., None], axis=2)[..., 0] >= th
        else:
            best1 = iou.argmax(axis=1)
            hit = (iou[np.arange(len(rows)), best1] >= th) & free[:, gs, best1]
            best = np.broadcast_to(best1, hit.shape)
        t_idx, r_idx = np.nonzero(hit)
        free[t_idx, gs[r_idx], best[t_idx, r_idx]] = False
        tp[:, rows] = hit
    return tp


def _average_precision(tp: np.ndarray, num_gt: int, protocol: str) -> float:
    precision, recall = precision_recall(tp, num_gt)
    return trapezoid_ap(precision, recall) if protocol == "act" else voc_ap(precision, recall)


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class ClassResult:
    """Video-AP per IoU threshold and frame-AP of one class (fractions; None without ground truth)."""

    index: int
    name: str
    evaluated: bool
    video_ap: dict[float, float | None]
    frame_ap: float | None
    num_gt_tubes: int = 0
    num_detections: int = 0  # tubes ranked (after NMS for act)
    num_gt_frames: int = 0
    num_frame_detections: int = 0

    def video_ap_at(self, key: str) -> float | None:
        """AP at ``"0.2"``, ``"0.5"``, ``"0.75"`` or the mean over ``"0.5:0.95"``."""
        if key == "0.5:0.95":
            aps = [self.video_ap[t] for t in SWEEP_THRESHOLDS]
            return None if any(a is None for a in aps) else float(np.mean(aps))
        return self.video_ap[_SINGLE_THRESHOLDS[key]]


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


@dataclass
class VideoMapResult:
    """The outcome of :func:`evaluate_video_map`; ``to_metrics()`` is the JSON-ready record."""

    protocol: str
    split: int
    classes: list[ClassResult]
    num_test_videos: int
    frame_detections_source: str  # "frame-dets" or "tubes"
    ignored: dict[str, int] = field(default_factory=dict)
    #: seconds per part: inputs, nms, tube_ious, matching (video-AP, all thresholds), frame_ap
    timings: dict[str, float] = field(default_factory=dict)

    def video_map(self, key: str) -> float | None:
        """Mean video-AP over the classes with ground truth; ``0.5:0.95`` averages the ten mAPs."""
        if key == "0.5:0.95":
            return _mean([_mean([c.video_ap[t] for c in self.classes]) for t in SWEEP_THRESHOLDS])
        return _mean([c.video_ap_at(key) for c in self.classes])

    @property
    def frame_map(self) -> float | None:
        return _mean([c.frame_ap for c in self.classes])

    def to_metrics(self) -> dict:
        return {
            "protocol": self.protocol,
            "video_map": {key: self.video_map(key) for key in VIDEO_AP_KEYS},
            "frame_ap": self.frame_map,
            "per_class": {
                str(c.index): {
                    "name": c.name,
                    "video_ap": {key: c.video_ap_at(key) for key in VIDEO_AP_KEYS},
                    "frame_ap": c.frame_ap,
                    "evaluated": c.evaluated,
                    "num_gt_tubes": c.num_gt_tubes,
                    "num_detections": c.num_detections,
                    "num_gt_frames": c.num_gt_frames,
                    "num_frame_detections": c.num_frame_detections,
                }
                for c in self.classes
            },
            "split": self.split,
            "num_test_videos": self.num_test_videos,
            "frame_detections": self.frame_detections_source,
            "ignored": dict(self.ignored),
            "iou_thresholds_0.5:0.95": list(SWEEP_THRESHOLDS),
            "frame_iou": FRAME_IOU,
        }

    def table(self) -> str:
        """Per-class APs and the means, in percent, as plain text."""
        header = ["class", *(f"V@{k}" for k in VIDEO_AP_KEYS), "F@0.5", "GT tubes", "det tubes"]
        rows = []
        for c in self.classes:
            name = f"{c.index} {c.name}" + ("" if c.evaluated else " (not evaluated)")
            rows.append(
                [
                    name,
                    *(fmt_ap(c.video_ap_at(k)) for k in VIDEO_AP_KEYS),
                    fmt_ap(c.frame_ap),
                    c.num_gt_tubes,
                    c.num_detections,
                ]
            )
        rows.append(["mean", *(fmt_ap(self.video_map(k)) for k in VIDEO_AP_KEYS), fmt_ap(self.frame_map), "", ""])
        title = (
            f"video-mAP / frame-AP, protocol {self.protocol}, split {self.split}, {self.num_test_videos} test videos"
        )
        return title + "\n" + format_table(header, rows)

    def write_report(self, out_dir: str | Path) -> dict[str, Path]:
        """Write metrics.json, per_class.csv, table.txt and video_ap_per_class.png (AP at 0.5) into ``out_dir``."""
        out_dir = Path(out_dir)
        paths = {"metrics": write_json(out_dir / "metrics.json", self.to_metrics())}
        header = [
            "label_index",
            "name",
            "evaluated",
            *(f"video_ap@{k}" for k in VIDEO_AP_KEYS),
            "frame_ap",
            "num_gt_tubes",
            "num_detections",
            "num_gt_frames",
            "num_frame_detections",
        ]

        def cell(value: float | None) -> str:
            return "" if value is None else f"{value:.6f}"

        rows = [
            [
                c.index,
                c.name,
                int(c.evaluated),
                *(cell(c.video_ap_at(k)) for k in VIDEO_AP_KEYS),
                cell(c.frame_ap),
                c.num_gt_tubes,
                c.num_detections,
                c.num_gt_frames,
                c.num_frame_detections,
            ]
            for c in self.classes
        ]
        paths["per_class"] = write_csv(out_dir / "per_class.csv", header, rows)
        table = out_dir / "table.txt"
        table.parent.mkdir(parents=True, exist_ok=True)
        tmp = table.with_name(f".{table.name}.tmp")
        tmp.write_text(self.table() + "\n", encoding="utf-8")
        tmp.replace(table)
        paths["table"] = table
        paths["plot"] = plot_ap_bars(
            [c.name for c in self.classes],
            [c.video_ap_at("0.5") for c in self.classes],
            out_dir / "video_ap_per_class.png",
            f"video-AP at IoU 0.5 ({self.protocol})",
        )
        return paths


# --------------------------------------------------------------------------------------------------
# Evaluation


def _test_videos(gt: ActGroundTruth, split: int) -> list[str]:
    if not 0 <= split < len(gt.test_videos):
        raise ValueError(f"split {split} does not exist: the ground truth has {len(gt.test_videos)} test splits")
    return list(gt.test_videos[split])


class _Tube(NamedTuple):
    """A tube being evaluated, its array and score as given (the references compute in their dtypes)."""

    video: int  # position in the test-video list
    score: object  # the references rank np.array(scores), whose dtype follows these objects
    tube: np.ndarray  # (L, >=5) frame, x1, y1, x2, y2[, frame score]; ACT's files hold float32


def _select_test_tubes(
    tubes_by_label: Mapping[int, Sequence[tuple[str, float, np.ndarray]]], video_index: dict[str, int], num_labels: int
) -> tuple[dict[int, list[_Tube]], int]:
    """Checked tubes of the test videos per label (input order), and the number of others ignored."""
    bad = sorted(int(k) for k in tubes_by_label if not 0 <= int(k) < num_labels)
    if bad:
        raise ValueError(f"detected tubes: label indices {bad} are outside the ground truth's {num_labels} labels")
    out: dict[int, list[_Tube]] = {}
    ignored = 0
    for label, entries in tubes_by_label.items():
        kept = [(k, e) for k, e in enumerate(entries) if e[0] in video_index]
        ignored += len(entries) - len(kept)

        def where(i: int, label: int = int(label), kept: list = kept) -> str:
            k, (video, _, _) = kept[i]
            return f"detected tubes: label {label} entry {k} (video {video!r})"

        for i, (_, (_, score, _)) in enumerate(kept):
            try:
                finite = math.isfinite(float(score))
            except (TypeError, ValueError):
                finite = False
            if not finite:
                raise ValueError(f"{where(i)}: score {score!r} is not a finite number")
        arrays = check_tube_arrays([e[2] for _, e in kept], where)
        out[int(label)] = [_Tube(video_index[e[0]], e[1], arr) for (_, e), arr in zip(kept, arrays, strict=True)]
    return out, ignored


def _gt_tubes(gt: ActGroundTruth, video: str, label: int) -> list[_Tube]:
    out = []
    for k, tube in enumerate(gt.gttubes.get(video, {}).get(label, [])):
        tube = np.asarray(tube)
        if tube.ndim != 2 or tube.shape[0] == 0 or tube.shape[1] < 5:
            raise ValueError(f"ground truth: video {video!r} label {label} tube {k}: expected (L, 5), got {tube.shape}")
        if len(tube) > 1 and not (tube[1:, 0] > tube[:-1, 0]).all():
            raise ValueError(f"ground truth: video {video!r} label {label} tube {k}: frames must increase strictly")
        out.append(_Tube(-1, 1.0, tube))
    return out


def _video_ious(dets: Sequence[_Tube], gts: Sequence[_Tube], one: float) -> np.ndarray:
    """(len(dets), len(gts)) tube IoUs of one video and class, fragile entries recomputed exactly."""
    ious = _iou_matrix([d.tube for d in dets], [g.tube for g in gts], one)
    for i, j in zip(*np.nonzero(_fragile(ious, _THRESHOLDS)), strict=True):
        exact = _reference_arithmetic_iou(gts[j].tube, dets[i].tube, one)
        if exact is not None:
            ious[i, j] = _match_value(exact)
    return ious


def _class_video_aps(
    dets: list[_Tube], gts: list[list[_Tube]], protocol: str, timings: dict[str, float]
) -> tuple[dict[float, float], int]:
    """Video-AP of one class at every threshold, and the number of ranked detections.

    ``dets``: the class's tubes on test videos, in input order; ``gts[iv]``: its ground truth in video iv.
    Seconds spent are added to ``timings["nms"]``, ``["tube_ious"]`` and ``["matching"]``.
    """
    one = _protocol_one(protocol)
    clock = time.perf_counter()
    num_videos = len(gts)
    by_video: list[list[_Tube]] = [[] for _ in range(num_videos)]
    for det in dets:
        by_video[det.video].append(det)
    if protocol == "act":
        # ACT: NMS per video, then the kept tubes video after video in test-list order.
        ranked_input = []
        for tubes in by_video:
            ranked_input += [tubes[i] for i in tube_nms([(t.tube, t.score) for t in tubes])]
    else:
        ranked_input = list(dets)
    clock = _lap(timings, "nms", clock)
    num_gt = sum(len(g) for g in gts)
    # IoUs per video between its detections and its ground truths, rows in ranked_input order.
    gmax = max((len(g) for g in gts), default=0)
    ious = np.full((len(ranked_input), max(gmax, 1)), -np.inf)
    positions: list[list[int]] = [[] for _ in range(num_videos)]
    for pos, det in enumerate(ranked_input):
        positions[det.video].append(pos)
    for iv in range(num_videos):
        if positions[iv] and gts[iv]:
            ious[np.asarray(positions[iv]), : len(gts[iv])] = _video_ious(
                [ranked_input[p] for p in positions[iv]], gts[iv], one
            )
    clock = _lap(timings, "tube_ious", clock)
    order = np.argsort(-np.array([d.score for d in ranked_input]))  # as both references rank
    video = np.array([d.video for d in ranked_input], dtype=np.int64)[order]
    has_gt = np.array([len(g) > 0 for g in gts], dtype=bool)
    group = np.where(has_gt[video], video, -1)
    ranked_ious = ious[order]
    gt_count = np.array([len(g) for g in gts], dtype=np.int64)
    tp = _greedy_match(group, gt_count, lambda rows: ranked_ious[rows], _THRESHOLDS, protocol == "act")
    aps = {th: _average_precision(tp[k], num_gt, protocol) for k, th in enumerate(_THRESHOLDS)}
    _lap(timings, "matching", clock)
    return aps, len(ranked_input)


def _lap(timings: dict[str, float], key: str, since: float) -> float:
    now = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + now - since
    return now


def frame_detections_from_tubes(tubes: Mapping[int, Sequence[tuple[int, object, np.ndarray]]]) -> np.ndarray:
    """ACT's (N, 8) frame detections from ``{label: [(video index, score, tube)]}`` (checked tubes).

    One row per tube frame: ``video_index, frame, label, frame score, x1, y1, x2, y2``; the frame score is
    the tube's 6th column, or the tube score for (L, 5) tubes. Rows by label, then input order, then frame.
    """
    blocks = []
    for label in sorted(tubes):
        for iv, score, tube, *_ in tubes[label]:
            tube = np.asarray(tube, dtype=np.float64)
            block = np.empty((len(tube), 8), dtype=np.float64)
            block[:, 0] = iv
            block[:, 1] = tube[:, 0]
            block[:, 2] = label
            block[:, 3] = tube[:, 5] if tube.shape[1] > 5 else float(score)
            block[:, 4:8] = tube[:, 1:5]
            blocks.append(block)
    return np.concatenate(blocks) if blocks else np.zeros((0, 8))


def _frame_ious(det: np.ndarray, gt: np.ndarray, one: float) -> np.ndarray:
    """Box IoUs between detections (R, 4) and each one's ground truths (R, G, 4) (float64), as ``iou2d``.

    The detection's ``x2 + one``, ``y2 + one`` and area are computed in the detection array's own dtype
    (ACT's frame detections are float32) and the rest in float64, exactly as the references mix them.
    """
    if det.dtype.kind != "f":
        det = det.astype(np.float64)
    dx2p = (det[:, 2] + one).astype(np.float64)[:, None]
    dy2p = (det[:, 3] + one).astype(np.float64)[:, None]
    darea = ((det[:, 2] - det[:, 0] + one) * (det[:, 3] - det[:, 1] + one)).astype(np.float64)[:, None]
    dx1 = det[:, 0].astype(np.float64)[:, None]
    dy1 = det[:, 1].astype(np.float64)[:, None]
    width = np.maximum(0.0, np.minimum(gt[..., 2] + one, dx2p) - np.maximum(gt[..., 0], dx1))
    height = np.maximum(0.0, np.minimum(gt[..., 3] + one, dy2p) - np.maximum(gt[..., 1], dy1))
    overlap = width * height
    garea = (gt[..., 2] - gt[..., 0] + one) * (gt[..., 3] - gt[..., 1] + one)
    with np.errstate(divide="ignore", invalid="ignore"):
        return overlap / (garea + darea - overlap)


def _class_frame_ap(rows: np.ndarray, gts: list[list[_Tube]], protocol: str) -> tuple[float | None, int]:
    """Frame-AP of one class from its (N, 8) detection rows; None without ground-truth boxes."""
    one = _protocol_one(protocol)
    # Ground-truth boxes keyed by (video index, frame), in the order the references collect them.
    g_iv, g_frame, g_box = [], [], []
    for iv, tubes in enumerate(gts):
        for tube in (t.tube for t in tubes):
            g_iv.append(np.full(len(tube), iv, dtype=np.int64))
            g_frame.append(tube[:, 0].astype(np.int64))
            g_box.append(tube[:, 1:5])
    num_gt = sum(len(f) for f in g_frame)
    if num_gt == 0:
        return None, num_gt
    g_iv, g_frame, g_box = np.concatenate(g_iv), np.concatenate(g_frame), np.concatenate(g_box)
    fmin, span = int(g_frame.min()), int(g_frame.max() - g_frame.min()) + 1
    g_key = g_iv * span + (g_frame - fmin)
    keys, key_id = np.unique(g_key, return_inverse=True)
    by_key = np.argsort(key_id, kind="stable")
    counts = np.bincount(key_id, minlength=len(keys))
    slot = np.empty(num_gt, dtype=np.int64)
    slot[by_key] = np.arange(num_gt) - (np.cumsum(counts) - counts)[key_id[by_key]]
    gmax = int(counts.max())
    table = np.zeros((len(keys), gmax, 4))
    table[key_id, slot] = g_box
    used = np.zeros((len(keys), gmax), dtype=bool)
    used[key_id, slot] = True

    order = np.argsort(-rows[:, 3])  # as both references rank, on the array's own dtype
    ranked = rows[order]
    with np.errstate(invalid="ignore"):
        d_iv = ranked[:, 0].astype(np.int64)  # int() of the references: truncation
        d_frame = ranked[:, 1].astype(np.int64)
    inside = (d_frame >= fmin) & (d_frame < fmin + span)
    d_key = d_iv * span + (d_frame - fmin)
    pos = np.minimum(np.searchsorted(keys, d_key), len(keys) - 1)
    group = np.where(inside & (keys[pos] == d_key), pos, -1)
    boxes = ranked[:, 4:8]  # own dtype: see _frame_ious

    def iou_rows(sel: np.ndarray) -> np.ndarray:
        k = group[sel]
        iou = _frame_ious(boxes[sel], table[k], one)
        return np.where(used[k], iou, -np.inf)

    tp = _greedy_match(group, counts, iou_rows, (FRAME_IOU,), protocol == "act")[0]
    return _average_precision(tp, num_gt, protocol), num_gt


def evaluate_video_map(
    gt: ActGroundTruth,
    tubes_by_label: DetectedTubes,
    frame_dets: np.ndarray | None = None,
    protocol: str = "act",
    split: int = 0,
) -> VideoMapResult:
    """Video-AP (IoU 0.2, 0.5, 0.75, 0.5:0.95) and frame-AP (IoU 0.5) of every class, by ``protocol``.

    ``tubes_by_label``: ``{label_index: [(video, score, tube (L, 6): frame (1-based), x1, y1, x2, y2
    (pixels), frame score)]}``. ``frame_dets``: (N, 8) ``video_index`` (position in the test list),
    ``frame`` (1-based), ``label_index, score, x1, y1, x2, y2``; None derives them from the tubes.
    Only ``gt.test_videos[split]`` counts. Raises ValueError on an unknown protocol or split, a label
    index outside the ground truth, or a malformed tube.
    """
    _protocol_one(protocol)
    timings = {"inputs": 0.0, "nms": 0.0, "tube_ious": 0.0, "matching": 0.0, "frame_ap": 0.0}
    clock = time.perf_counter()
    vlist = _test_videos(gt, split)
    video_index = {v: i for i, v in enumerate(vlist)}
    num_labels = len(gt.labels)
    tubes, ignored_tubes = _select_test_tubes(tubes_by_label, video_index, num_labels)
    ignored = {"tubes_outside_test_videos": ignored_tubes}
    clock = _lap(timings, "inputs", clock)

    if frame_dets is None:
        frame_dets = frame_detections_from_tubes(tubes)
        source = "tubes"
    else:
        frame_dets = np.asarray(frame_dets)
        if frame_dets.size == 0:
            frame_dets = np.zeros((0, 8))
        if frame_dets.ndim != 2 or frame_dets.shape[1] != 8:
            raise ValueError(f"frame detections: expected an (N, 8) array, got {frame_dets.shape}")
        source = "frame-dets"
    with np.errstate(invalid="ignore"):
        iv_col = frame_dets[:, 0].astype(np.int64)
    in_test = (iv_col >= 0) & (iv_col < len(vlist))
    ignored["frame_detections_outside_test_videos"] = int((~in_test).sum())
    if not in_test.all():
        frame_dets = frame_dets[in_test]
    label_col = frame_dets[:, 2]
    known = (label_col == np.round(label_col)) & (label_col >= 0) & (label_col < num_labels)
    ignored["frame_detections_unknown_label"] = int((~known).sum())
    # Row indices per class, the order kept (the references select with alldets[:, 2] == label).
    class_rows = np.argsort(np.where(known, label_col, -1), kind="stable")
    class_bounds = np.searchsorted(np.where(known, label_col, -1)[class_rows], np.arange(num_labels + 1))
    clock = _lap(timings, "frame_ap", clock)

    classes = []
    for c, name in enumerate(gt.labels):
        evaluated = protocol != "multisports" or name not in MULTISPORTS_UNEVALUATED
        gts = [_gt_tubes(gt, v, c) for v in vlist]
        num_gt = sum(len(g) for g in gts)
        result = ClassResult(c, name, evaluated, {th: None for th in _THRESHOLDS}, None, num_gt_tubes=num_gt)
        classes.append(result)
        if not evaluated:
            continue
        if num_gt:
            result.video_ap, result.num_detections = _class_video_aps(tubes.get(c, []), gts, protocol, timings)
        else:
            result.num_detections = len(tubes.get(c, []))
        clock = time.perf_counter()
        rows = frame_dets[class_rows[class_bounds[c] : class_bounds[c + 1]]]
        result.num_frame_detections = len(rows)
        result.frame_ap, result.num_gt_frames = _class_frame_ap(rows, gts, protocol)
        _lap(timings, "frame_ap", clock)
    return VideoMapResult(protocol, split, classes, len(vlist), source, ignored, timings)


def evaluate_video_map_files(
    gt_path: str | Path,
    tubes_path: str | Path,
    frame_dets_path: str | Path | None = None,
    protocol: str = "act",
    split: int = 0,
) -> VideoMapResult:
    """:func:`evaluate_video_map` on files: the ACT ground-truth pickle, tubes JSON (``.json``) or the
    standard detected-tubes pickle, and optionally frame detections (``.npy`` or a pickle of the array)."""
    _protocol_one(protocol)
    gt = read_act_groundtruth(gt_path)
    tubes = read_detected_tubes(tubes_path, gt)
    frame_dets = None if frame_dets_path is None else read_frame_detections(frame_dets_path)
    return evaluate_video_map(gt, tubes, frame_dets, protocol=protocol, split=split)
