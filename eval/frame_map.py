"""AVA frame-mAP at IoU 0.5, computed exactly as the official ActivityNet evaluator does.

Two protocols, both reproduced number for number (including the order of exactly tied scores):

``activitynet`` — ActivityNet's ``Evaluation/get_ava_performance.py``, the number AVA papers report:

1. Only classes of the label map count. Rows with any other action id (or none) are dropped first,
   before anything else looks at them; they are counted in ``counts``.
2. A keyframe is ``(video_id, int(timestamp))``: a fractional second truncates toward zero, like the
   official ``"%s,%04d" % (video_id, int(timestamp))`` key. Rows of one keyframe need not be adjacent.
3. Keyframes in the exclusion list drop out of the ground truth and of the detections.
4. Detections: at most 50 per keyframe (all classes together). The official keeps them in a min-heap of
   ``(score, action_id, y1, x1, y2, x2)`` tuples fed in file order: a row enters a full heap only when
   its score is strictly greater than the heap's minimum score, and it then evicts the smallest tuple.
   So, ties at the boundary are decided by file order and by tuple order; we take the top 50 by score
   with numpy and replay the heap with :mod:`heapq` for the keyframes where ties could matter.
5. Per keyframe, the detections are sorted by decreasing score with a stable sort over the heap's array
   order (again replayed where two detections of one class tie), and boxes with ``x1 >= x2`` or
   ``y1 >= y2`` are removed (after the cap: they take a place in the 50).
6. Ground-truth boxes of a keyframe are in decreasing order of the 8th column (the person id — the
   official reads it as a "score" too), ties in heap order. This order only decides between two boxes
   that a detection overlaps exactly equally.
7. Per keyframe and class, detections in that order each pick the ground-truth box of their class with
   the largest IoU (continuous areas, the first box on ties) — whether or not it is taken already. A
   detection is a true positive when that IoU is >= 0.5 and the box was still free; otherwise it is a
   false positive (it is never re-routed to its second-best box). Detections on keyframes without
   ground truth are false positives.
8. Per class, the detections of all keyframes are concatenated in the order in which the keyframes first
   appear in the detection file and ranked by ``np.argsort(scores)[::-1]`` — numpy's default (unstable)
   argsort on that exact array, reversed. We build the same array and make the same call, so exactly
   tied scores come out in the same order as in the official evaluator (on the same numpy/CPU: the
   order of ties is numpy's, not a documented rule).
9. Precision and recall along that ranking; VOC AP with the precision envelope made monotone
   (:func:`eval.ap.voc_ap`). A class with ground truth but no detections has AP 0; a class without
   ground truth has no AP (NaN here, ``null`` in JSON) and is left out of the mean. mAP is
   ``np.nanmean`` over the classes, in the official's id-indexed layout.

``pyslowfast`` — PySlowFast's ``slowfast/utils/ava_eval_helper.py`` (``evaluate_ava_from_files``), the
number its training logs print. It shares steps 1-3 and 7-9 and differs in steps 4-6: no cap on the
detections per keyframe, and no sorting at all — detections are matched in file order within each
keyframe (so a lower-scored detection that comes first in the file takes the ground-truth box), and
ground-truth boxes keep their file order.

Coordinates outside [0, 1] are evaluated as given (and counted, with a warning). Inverted boxes and
non-finite values are errors (the CSV reader names the file and line). Nothing here mutates its inputs.
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections import defaultdict, deque
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from detection.formats.ava import AvaRows, AvaTable, read_ava_table, read_exclusions
from detection.structures import LabelMap
from eval.ap import precision_recall, voc_ap
from eval.report import fmt_ap, format_table, plot_ap_bars, plot_pr_curves, write_csv, write_json

__all__ = [
    "PROTOCOLS",
    "AVA_GROUPS",
    "FrameMapCounts",
    "FrameMapResult",
    "evaluate_frame_map",
    "evaluate_frame_map_files",
]

Protocol = Literal["activitynet", "pyslowfast"]
PROTOCOLS: tuple[str, ...] = ("activitynet", "pyslowfast")
IOU_THRESHOLD = 0.5
MAX_DETECTIONS_PER_KEYFRAME = 50  # activitynet only
# AVA's action groups: by the label map's ``label_type`` when it has one, else by these id ranges.
AVA_GROUPS: tuple[tuple[str, int, int], ...] = (
    ("PERSON_MOVEMENT", 1, 14),
    ("OBJECT_MANIPULATION", 15, 63),
    ("PERSON_INTERACTION", 64, 80),
)


@dataclass(frozen=True)
class FrameMapCounts:
    """What the evaluator read, ignored and dropped (rows are CSV rows: one box and action each)."""

    gt_rows: int = 0
    det_rows: int = 0
    gt_rows_unknown_label: int = 0  # action id not among the label map's evaluated classes: ignored
    det_rows_unknown_label: int = 0
    gt_rows_out_of_range: int = 0  # a coordinate outside [0, 1]: evaluated as given
    det_rows_out_of_range: int = 0
    excluded_keyframes: int = 0  # distinct keyframes of the ground truth or detections that were excluded
    gt_rows_excluded: int = 0
    det_rows_excluded: int = 0
    det_rows_over_cap: int = 0  # beyond the top 50 of their keyframe (activitynet)
    det_rows_degenerate: int = 0  # x1 >= x2 or y1 >= y2: removed, as the official does
    det_rows_without_gt_keyframe: int = 0  # on keyframes without ground truth: all false positives
    gt_keyframes: int = 0
    det_keyframes: int = 0
    tie_keyframes_replayed: int = 0  # keyframes whose ties were settled by replaying the official heap


@dataclass
class FrameMapResult:
    """Frame-mAP and everything behind it; APs are fractions in [0, 1], NaN for classes without GT."""

    protocol: str
    mAP: float
    class_ids: tuple[int, ...]
    names: tuple[str, ...]
    ap: np.ndarray  # (C,) float64
    num_gt: np.ndarray  # (C,) int64
    num_det: np.ndarray  # (C,) int64: detections evaluated (after the cap, exclusions and invalid boxes)
    groups: dict[str, float]
    counts: FrameMapCounts
    class_groups: tuple[str | None, ...] = ()
    precision: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # by label id, ranked
    recall: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def to_metrics(self) -> dict:
        """JSON-ready metrics: ``{"protocol", "mAP", "per_class": {id: {...}}, "groups", "counts"}``."""
        per_class = {
            str(label_id): {"name": name, "ap": _none_if_nan(ap), "num_gt": int(n_gt), "num_det": int(n_det)}
            for label_id, name, ap, n_gt, n_det in zip(
                self.class_ids, self.names, self.ap.tolist(), self.num_gt, self.num_det, strict=True
            )
        }
        return {
            "protocol": self.protocol,
            "mAP": _none_if_nan(self.mAP),
            "per_class": per_class,
            "groups": {name: _none_if_nan(value) for name, value in self.groups.items()},
            "counts": asdict(self.counts),
        }

    def table(self) -> str:
        """The per-class table, then mAP and the group means, as plain text (APs in percent)."""
        rows = [
            (label_id, name, int(n_gt), int(n_det), fmt_ap(ap))
            for label_id, name, ap, n_gt, n_det in zip(
                self.class_ids, self.names, self.ap.tolist(), self.num_gt, self.num_det, strict=True
            )
        ]
        per_class = format_table(["id", "class", "GT", "detections", "AP (%)"], rows)
        summary = [(f"mAP ({self.protocol})", fmt_ap(self.mAP))]
        summary += [(name, fmt_ap(value)) for name, value in self.groups.items()]
        c = self.counts
        notes = [
            f"ground truth: {c.gt_rows} rows, {c.gt_rows_unknown_label} with labels outside the label map, "
            f"{c.gt_rows_excluded} on excluded keyframes",
            f"detections: {c.det_rows} rows, {c.det_rows_unknown_label} with labels outside the label map, "
            f"{c.det_rows_excluded} on excluded keyframes, {c.det_rows_over_cap} beyond the top "
            f"{MAX_DETECTIONS_PER_KEYFRAME} of their keyframe, {c.det_rows_degenerate} with empty boxes",
        ]
        return "\n".join([per_class, "", format_table(["", "AP (%)"], summary), "", *notes])

    def write_report(self, out_dir: str | Path, pr_classes: Sequence[int] | None = None) -> dict[str, Path]:
        """Write ``metrics.json``, ``per_class.csv``, ``table.txt``, ``ap_per_class.png``, ``pr_curves.png``.

        ``pr_classes``: label ids for the PR-curve plot (default: the 5 classes with the most ground
        truth). Raises KeyError for an id that is not an evaluated class. Returns the paths by name.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "metrics": write_json(out / "metrics.json", self.to_metrics()),
            "per_class": write_csv(
                out / "per_class.csv",
                ["id", "name", "group", "num_gt", "num_det", "ap"],
                [
                    (label_id, name, group or "", int(n_gt), int(n_det), _none_if_nan(ap))
                    for label_id, name, group, ap, n_gt, n_det in zip(
                        self.class_ids,
                        self.names,
                        self.class_groups or (None,) * len(self.class_ids),
                        self.ap.tolist(),
                        self.num_gt,
                        self.num_det,
                        strict=True,
                    )
                ],
            ),
        }
        table = out / "table.txt"
        table.write_text(self.table() + "\n", encoding="utf-8")
        paths["table"] = table
        title = f"AVA frame-mAP {fmt_ap(self.mAP)} ({self.protocol})"
        paths["ap_per_class"] = plot_ap_bars(self.names, self.ap.tolist(), out / "ap_per_class.png", title)
        if pr_classes is None:
            by_gt = sorted(range(len(self.class_ids)), key=lambda k: (-int(self.num_gt[k]), k))
            pr_classes = [self.class_ids[k] for k in by_gt[:5] if self.num_gt[k] > 0]
        curves = {}
        for label_id in pr_classes:
            if int(label_id) not in self.class_ids:
                raise KeyError(f"label id {label_id} is not an evaluated class")
            if int(label_id) in self.precision:  # classes without ground truth have no curve
                k = self.class_ids.index(int(label_id))
                curves[f"{self.names[k]} (AP {fmt_ap(float(self.ap[k]))})"] = (
                    self.precision[int(label_id)],
                    self.recall[int(label_id)],
                )
        paths["pr_curves"] = plot_pr_curves(curves, out / "pr_curves.png", f"precision-recall ({self.protocol})")
        return paths


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# --------------------------------------------------------------------------------------------------
# Entry points


def evaluate_frame_map_files(
    gt_csv: str | Path,
    det_csv: str | Path,
    labelmap_path: str | Path,
    exclusions_path: str | Path | None = None,
    protocol: Protocol = "activitynet",
) -> FrameMapResult:
    """Frame-mAP of an AVA detection CSV against a ground-truth CSV (see the module docstring).

    The CSVs are read at full precision (:func:`detection.formats.ava.read_ava_table`), as the official
    evaluator reads them. Raises ValueError naming file and line for malformed rows, inverted boxes and
    non-finite values.
    """
    label_map = LabelMap.load(labelmap_path)
    gt = read_ava_table(gt_csv, kind="groundtruth")
    detections = read_ava_table(det_csv, kind="detections")
    exclusions = read_exclusions(exclusions_path) if exclusions_path else frozenset()
    return evaluate_frame_map(gt, detections, label_map, exclusions, protocol=protocol)


def evaluate_frame_map(
    gt: AvaRows | AvaTable,
    detections: AvaRows | AvaTable,
    label_map: LabelMap,
    exclusions: Collection[tuple[str, int]] = frozenset(),
    protocol: Protocol = "activitynet",
) -> FrameMapResult:
    """Frame-mAP of ``detections`` against ``gt`` over the label map's evaluated classes.

    ``gt`` and ``detections`` hold one row per box and action, boxes normalized ``x1, y1, x2, y2``,
    timestamps in seconds. :class:`AvaTable` keeps the CSV's float64 values; :class:`AvaRows` holds
    float32 boxes and scores, so use a table (or :func:`evaluate_frame_map_files`) to match the official
    evaluator to the last bit. ``exclusions``: ``(video_id, second)`` keyframes to leave out.
    Raises ValueError for an unknown protocol, inverted boxes or non-finite values.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    g = _Columns.of(gt, "groundtruth")
    d = _Columns.of(detections, "detections")
    class_ids = np.asarray(label_map.evaluated_ids, dtype=np.int64)
    names = tuple(label_map.name(int(i)) for i in class_ids)
    num_classes = len(class_ids)
    counts: dict[str, int] = {"gt_rows": len(g), "det_rows": len(d)}
    counts["gt_rows_out_of_range"] = g.out_of_range()
    counts["det_rows_out_of_range"] = d.out_of_range()
    if counts["gt_rows_out_of_range"] or counts["det_rows_out_of_range"]:
        warnings.warn(
            f"{counts['gt_rows_out_of_range']} ground-truth and {counts['det_rows_out_of_range']} detection "
            "rows have coordinates outside [0, 1]; they are evaluated as given",
            stacklevel=2,
        )

    # 1. Only the label map's classes count; everything else is dropped before anything looks at it.
    g_cls, d_cls = _class_index(g.action, class_ids), _class_index(d.action, class_ids)
    counts["gt_rows_unknown_label"] = int(np.count_nonzero(g_cls < 0))
    counts["det_rows_unknown_label"] = int(np.count_nonzero(d_cls < 0))
    g_rows, d_rows = np.flatnonzero(g_cls >= 0), np.flatnonzero(d_cls >= 0)

    # 2-3. Keyframes (video, whole second) as dense ids shared by both files; exclusions.
    g_kf, d_kf, excluded = _keyframe_ids(g, g_rows, d, d_rows, exclusions)
    g_out, d_out = excluded[g_kf], excluded[d_kf]
    present = np.zeros(len(excluded), dtype=bool)
    present[g_kf], present[d_kf] = True, True
    counts["excluded_keyframes"] = int(np.count_nonzero(excluded & present))
    counts["gt_rows_excluded"], counts["det_rows_excluded"] = int(g_out.sum()), int(d_out.sum())
    g_rows, g_kf = g_rows[~g_out], g_kf[~g_out]
    d_rows, d_kf = d_rows[~d_out], d_kf[~d_out]
    counts["gt_keyframes"] = int(np.count_nonzero(np.bincount(g_kf, minlength=len(excluded))))

    # 4-6. The official order of the detections (and the cap) and of the ground truth.
    replayed = 0
    if protocol == "activitynet":
        d_order, over_cap, replayed_d = _official_detection_order(d, d_rows, d_kf, d_cls[d_rows])
        g_order, replayed_g = _official_groundtruth_order(g, g_rows, g_kf, g_cls[g_rows])
        replayed = replayed_d + replayed_g
    else:
        d_order, over_cap = np.argsort(_first_appearance_rank(d_kf), kind="stable"), 0
        g_order = np.arange(len(g_rows))
    counts["det_rows_over_cap"] = over_cap
    counts["tie_keyframes_replayed"] = replayed
    d_rows, d_kf = d_rows[d_order], d_kf[d_order]
    boxes = d.boxes[d_rows]
    valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    counts["det_rows_degenerate"] = int(np.count_nonzero(~valid))
    d_rows, d_kf, boxes = d_rows[valid], d_kf[valid], boxes[valid]
    counts["det_keyframes"] = int(np.count_nonzero(np.bincount(d_kf, minlength=len(excluded))))
    g_rows, g_kf = g_rows[g_order], g_kf[g_order]
    g_group = g_kf * num_classes + g_cls[g_rows]
    by_group = np.argsort(g_group, kind="stable")  # (keyframe, class) groups, official order within
    g_rows, g_kf, g_group = g_rows[by_group], g_kf[by_group], g_group[by_group]

    # 7. Greedy matching per keyframe and class, in that order.
    d_c, g_c = d_cls[d_rows], g_cls[g_rows]
    tp = _match(boxes, d_kf * num_classes + d_c, g.boxes[g_rows], g_group)
    has_gt = np.zeros(len(excluded), dtype=bool)
    has_gt[g_kf] = True
    counts["det_rows_without_gt_keyframe"] = int(np.count_nonzero(~has_gt[d_kf]))

    # 8-9. Per class: the official concatenation order, its argsort, precision/recall, VOC AP.
    scores = d.score[d_rows]
    num_gt = np.bincount(g_c, minlength=num_classes).astype(np.int64)
    num_det = np.bincount(d_c, minlength=num_classes).astype(np.int64)
    by_class = np.argsort(d_c.astype(np.int16) if num_classes < 2**15 else d_c, kind="stable")
    ends = np.cumsum(num_det)
    ap = np.full(num_classes, np.nan)
    precisions: dict[int, np.ndarray] = {}
    recalls: dict[int, np.ndarray] = {}
    for k in np.flatnonzero(num_gt > 0).tolist():
        members = by_class[ends[k] - num_det[k] : ends[k]]
        class_scores = np.ascontiguousarray(scores[members])
        ranked = np.argsort(class_scores)[::-1]  # the official's ranking call, on the same array
        precision, recall = precision_recall(tp[members][ranked], int(num_gt[k]))
        ap[k] = voc_ap(precision, recall)
        precisions[int(class_ids[k])], recalls[int(class_ids[k])] = precision, recall

    groups, class_groups = _group_means(class_ids, ap, label_map.label_types)
    return FrameMapResult(
        protocol=protocol,
        mAP=_official_mean(class_ids, ap),
        class_ids=tuple(int(i) for i in class_ids),
        names=names,
        ap=ap,
        num_gt=num_gt,
        num_det=num_det,
        groups=groups,
        counts=FrameMapCounts(**counts),
        class_groups=class_groups,
        precision=precisions,
        recall=recalls,
    )


# --------------------------------------------------------------------------------------------------
# Inputs


@dataclass
class _Columns:
    """The columns the evaluator needs, float64, validated; never written to."""

    video: np.ndarray  # (N,) str
    second: np.ndarray  # (N,) int64: the keyframe second, truncated like the official int()
    boxes: np.ndarray  # (N, 4) float64 x1, y1, x2, y2
    action: np.ndarray  # (N,) int64
    score: np.ndarray  # (N,) float64: the score, or the ground truth's 8th column (the official's heap key)

    def __len__(self) -> int:
        return len(self.action)

    @classmethod
    def of(cls, rows: AvaRows | AvaTable, kind: str) -> _Columns:
        what = "ground truth" if kind == "groundtruth" else "detections"
        if isinstance(rows, AvaTable):
            # The official reads the 8th column with float() for both files and uses 1.0 when absent.
            score = np.where(np.isnan(rows.last), 1.0, rows.last)
        elif isinstance(rows, AvaRows):
            if kind == "groundtruth":  # read_ava_csv marks an absent person id with -1
                score = np.where(rows.person_ids < 0, 1.0, rows.person_ids.astype(np.float64))
            else:
                score = rows.scores.astype(np.float64)
        else:
            raise TypeError(f"{what}: expected AvaRows or AvaTable, got {type(rows).__name__}")
        boxes = np.asarray(rows.boxes, dtype=np.float64).reshape(-1, 4)
        timestamps = np.asarray(rows.timestamps, dtype=np.float64)
        bad = ~np.isfinite(boxes).all(axis=1) | ~np.isfinite(timestamps) | ~np.isfinite(score)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{what}: row {i} has a non-finite value: t={timestamps[i]}, box={boxes[i].tolist()}, "
                f"last column={score[i]}"
            )
        if len(timestamps) and np.abs(timestamps).max() >= 2.0**53:
            i = int(np.argmax(np.abs(timestamps)))
            raise ValueError(f"{what}: row {i} has a timestamp out of range: {timestamps[i]}")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if inverted.any():
            i = int(np.argmax(inverted))
            raise ValueError(f"{what}: row {i} has an inverted box (x2 < x1 or y2 < y1): {boxes[i].tolist()}")
        return cls(
            video=np.asarray(rows.video_ids),
            second=np.trunc(timestamps).astype(np.int64),
            boxes=boxes,
            action=np.asarray(rows.action_ids, dtype=np.int64),
            score=score,
        )

    def out_of_range(self) -> int:
        return int(np.count_nonzero(((self.boxes < 0.0) | (self.boxes > 1.0)).any(axis=1)))


def _class_index(action: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """Column of each action id among ``class_ids``, -1 where it is not one of them."""
    if len(class_ids) == 0 or len(action) == 0:
        return np.full(len(action), -1, dtype=np.int64)
    if class_ids.min() >= 0 and action.min() >= -1 and max(class_ids.max(), action.max()) < 2**20:
        lookup = np.full(max(class_ids.max(), action.max()) + 2, -1, dtype=np.int64)
        lookup[class_ids] = np.arange(len(class_ids))
        return lookup[action]  # -1 (no action id) reads the last entry: -1
    sorter = np.argsort(class_ids)
    pos = np.minimum(np.searchsorted(class_ids, action, sorter=sorter), len(class_ids) - 1)
    return np.where(class_ids[sorter[pos]] == action, sorter[pos], -1)


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Start of every run of equal consecutive values."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1])


def _codes(values: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted ``vocabulary``, computed once per run of equal values."""
    starts = _run_starts(values)
    lengths = np.diff(np.append(starts, len(values)))
    return np.repeat(np.searchsorted(vocabulary, values[starts]), lengths)


def _keyframe_ids(
    g: _Columns, g_rows: np.ndarray, d: _Columns, d_rows: np.ndarray, exclusions: Collection[tuple[str, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense keyframe ids of the selected rows of both files, and which ids are excluded."""
    g_video, d_video = g.video[g_rows], d.video[d_rows]
    heads = [v[_run_starts(v)] for v in (g_video, d_video)]
    vocabulary = np.unique(np.concatenate([h.astype(str) for h in heads]))
    g_code, d_code = _codes(g_video, vocabulary), _codes(d_video, vocabulary)
    g_sec, d_sec = g.second[g_rows], d.second[d_rows]
    seconds = np.concatenate([g_sec, d_sec])
    lo = int(seconds.min(initial=0))
    span = int(seconds.max(initial=0)) - lo + 1
    if len(vocabulary) * span >= 2**62:
        raise ValueError(f"timestamps span {span} seconds: too many to index")
    all_keys = np.concatenate([g_code * span + (g_sec - lo), d_code * span + (d_sec - lo)])
    starts = _run_starts(all_keys)  # rows of a keyframe are usually adjacent: unique over runs only
    keys, inverse = np.unique(all_keys[starts], return_inverse=True)
    inverse = np.repeat(inverse, np.diff(np.append(starts, len(all_keys))))
    excluded = np.zeros(len(keys), dtype=bool)
    if len(exclusions) and len(vocabulary):
        ex_video = np.asarray([v for v, _ in exclusions], dtype=str)
        ex_sec = np.asarray([int(t) for _, t in exclusions], dtype=np.int64)
        pos = np.minimum(np.searchsorted(vocabulary, ex_video), len(vocabulary) - 1)
        known = (vocabulary[pos] == ex_video) & (ex_sec >= lo) & (ex_sec < lo + span)
        ex_key = pos[known] * span + (ex_sec[known] - lo)
        excluded = np.isin(keys, ex_key)
    return inverse[: len(g_rows)], inverse[len(g_rows) :], excluded


def _first_appearance_rank(keyframes: np.ndarray) -> np.ndarray:
    """Per row, the rank of its keyframe in order of first appearance (the official's dict order)."""
    if len(keyframes) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = _run_starts(keyframes)
    lengths = np.diff(np.append(starts, len(keyframes)))
    unique, first, inverse = np.unique(keyframes[starts], return_index=True, return_inverse=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(unique))
    return np.repeat(rank[inverse], lengths)


# --------------------------------------------------------------------------------------------------
# The official order of detections and ground truth (activitynet)


def _official_detection_order(
    d: _Columns, rows: np.ndarray, keyframes: np.ndarray, cls: np.ndarray
) -> tuple[np.ndarray, int, int]:
    """Positions (into ``rows``) of the detections the official keeps, in its order, and counts.

    Keyframes in order of first appearance; within each, the top 50 by decreasing score. Where that is
    ambiguous — the 50th and 51st scores tie, or two kept detections of one class tie — the keyframe is
    replayed through the official heap. Returns (order, rows dropped by the cap, keyframes replayed).
    """
    n = len(rows)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0, 0
    image = _first_appearance_rank(keyframes)
    scores = d.score[rows]
    # By keyframe, then decreasing score, ties in file order: one stable sort of an exact integer key
    # (keyframe rank, rank of -score), about twice as fast as np.lexsort.
    levels, score_rank = np.unique(-scores, return_inverse=True)
    order = np.argsort(image * len(levels) + score_rank, kind="stable")
    counts = np.bincount(image)
    starts = np.cumsum(counts) - counts
    sorted_image, sorted_scores = image[order], scores[order]
    position = np.arange(n) - starts[sorted_image]
    kept = position < MAX_DETECTIONS_PER_KEYFRAME
    over_cap = n - int(np.count_nonzero(kept))

    cap = MAX_DETECTIONS_PER_KEYFRAME
    full = np.flatnonzero(counts > cap)
    replay = set(full[sorted_scores[starts[full] + cap - 1] == sorted_scores[starts[full] + cap]].tolist())
    # Kept detections of one keyframe and class with equal scores: their order is the heap's.
    same = np.flatnonzero((sorted_scores[1:] == sorted_scores[:-1]) & (sorted_image[1:] == sorted_image[:-1]))
    tied = np.union1d(same, same + 1)
    tied = tied[kept[tied]]
    if len(tied) > 1:
        tied_cls = cls[order[tied]]
        # Runs of equal (keyframe, score); a class appearing twice in one run needs the heap.
        breaks = (
            (np.diff(tied) != 1)
            | (sorted_scores[tied[1:]] != sorted_scores[tied[:-1]])
            | (sorted_image[tied[1:]] != sorted_image[tied[:-1]])
        )
        run = np.cumsum(np.concatenate([[1], breaks]))
        pair = np.lexsort((tied_cls, run))
        dup = (run[pair][1:] == run[pair][:-1]) & (tied_cls[pair][1:] == tied_cls[pair][:-1])
        replay.update(sorted_image[tied[pair][1:][dup]].tolist())

    final = order[kept]
    kept_counts = np.minimum(counts, cap)
    kept_starts = np.cumsum(kept_counts) - kept_counts
    for img in sorted(replay):
        segment = np.sort(order[starts[img] : starts[img] + counts[img]])  # file order
        final[kept_starts[img] : kept_starts[img] + kept_counts[img]] = segment[_replay_heap(d, rows[segment], cap)]
    return final, over_cap, len(replay)


def _official_groundtruth_order(
    g: _Columns, rows: np.ndarray, keyframes: np.ndarray, cls: np.ndarray
) -> tuple[np.ndarray, int]:
    """Positions (into ``rows``) of the ground truth in the official order: by keyframe, then by
    decreasing 8th column, ties in heap order (replayed where two boxes of one class tie)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64), 0
    keys = g.score[rows]
    order = np.lexsort((-keys, keyframes))
    kf, k, c = keyframes[order], keys[order], cls[order]
    tie = (kf[1:] == kf[:-1]) & (k[1:] == k[:-1])
    replay = []
    if tie.any():
        same = np.flatnonzero(tie)
        tied = np.union1d(same, same + 1)
        pair = np.lexsort((c[tied], k[tied], kf[tied]))
        t = tied[pair]
        dup = (kf[t][1:] == kf[t][:-1]) & (k[t][1:] == k[t][:-1]) & (c[t][1:] == c[t][:-1])
        replay = np.unique(kf[t][1:][dup]).tolist()
    if replay:
        counts = np.bincount(kf)
        starts = np.cumsum(counts) - counts
        order = order.copy()
        for key in replay:
            segment = np.sort(order[starts[key] : starts[key] + counts[key]])
            order[starts[key] : starts[key] + counts[key]] = segment[_replay_heap(g, rows[segment], 0)]
    return order, len(replay)


def _replay_heap(columns: _Columns, rows: np.ndarray, capacity: int) -> np.ndarray:
    """The official ``read_csv`` for one keyframe: which rows its heap keeps and in which order.

    ``rows`` are in file order. Mirrors ``heappush``/``heapreplace`` on ``(score, action_id, y1, x1,
    y2, x2)`` tuples and the final ``sorted(..., key=-score)``; returns positions into ``rows``.
    Identical tuples are interchangeable, so they map back to rows in file order.
    """
    x1, y1, x2, y2 = columns.boxes[rows].T.tolist()
    tuples = list(zip(columns.score[rows].tolist(), columns.action[rows].tolist(), y1, x1, y2, x2, strict=True))
    heap: list[tuple] = []
    for item in tuples:
        if capacity < 1 or len(heap) < capacity:
            heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
            heapq.heapreplace(heap, item)
    where: dict[tuple, deque[int]] = defaultdict(deque)
    for position, item in enumerate(tuples):
        where[item].append(position)
    return np.asarray([where[item].popleft() for item in sorted(heap, key=lambda t: -t[0])], dtype=np.int64)


# --------------------------------------------------------------------------------------------------
# Matching and means


def _iou(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of paired xyxy boxes with the official's arithmetic (its [y1, x1, y2, x2] order, continuous
    areas, union = (area_det + area_gt) - intersection), so that ties and the 0.5 threshold fall alike."""
    height = np.maximum(0.0, np.minimum(det[:, 3], gt[:, 3]) - np.maximum(det[:, 1], gt[:, 1]))
    width = np.maximum(0.0, np.minimum(det[:, 2], gt[:, 2]) - np.maximum(det[:, 0], gt[:, 0]))
    intersection = height * width
    det_area = (det[:, 3] - det[:, 1]) * (det[:, 2] - det[:, 0])
    gt_area = (gt[:, 3] - gt[:, 1]) * (gt[:, 2] - gt[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / (det_area + gt_area - intersection)


def _match(det_boxes: np.ndarray, det_group: np.ndarray, gt_boxes: np.ndarray, gt_group: np.ndarray) -> np.ndarray:
    """True-positive flags of detections in the official order; groups are (keyframe, class).

    A detection's box choice (argmax IoU over its group's ground truth, first on ties) does not depend
    on the other detections, so the greedy loop reduces to: TP iff IoU >= 0.5 and it is the first
    detection, in order, to choose that box. Ground truth must be sorted by group, official order within.
    """
    n = len(det_group)
    tp = np.zeros(n, dtype=bool)
    if n == 0 or len(gt_group) == 0:
        return tp
    starts = _run_starts(gt_group)
    group_ids = gt_group[starts]
    sizes = np.diff(np.append(starts, len(gt_group)))
    pos = np.minimum(np.searchsorted(group_ids, det_group), len(group_ids) - 1)
    found = group_ids[pos] == det_group
    first = np.where(found, starts[pos], 0)
    size = np.where(found, sizes[pos], 0)
    best = np.full(n, -np.inf)
    choice = np.zeros(n, dtype=np.int64)
    for m in range(int(size.max(initial=0))):  # m-th box of the group; at most the boxes of one class
        sel = np.flatnonzero(size > m)
        iou = _iou(det_boxes[sel], gt_boxes[first[sel] + m])
        better = iou > best[sel]  # strictly: the first box keeps ties, like np.argmax
        best[sel[better]], choice[sel[better]] = iou[better], m
    candidates = np.flatnonzero(found & (best >= IOU_THRESHOLD))
    _, first_taker = np.unique(first[candidates] + choice[candidates], return_index=True)
    tp[candidates[first_taker]] = True
    return tp


def _official_mean(class_ids: np.ndarray, ap: np.ndarray) -> float:
    """``np.nanmean`` over the official's layout: an array of max(id) entries, AP of id i at i - 1."""
    if not np.isfinite(ap).any():
        return math.nan
    if len(class_ids) and class_ids.min() >= 1:
        layout = np.full(int(class_ids.max()), np.nan)
        layout[class_ids - 1] = ap
        return float(np.nanmean(layout))
    return float(np.nanmean(ap))


def _group_means(
    class_ids: np.ndarray, ap: np.ndarray, label_types: dict[int, str]
) -> tuple[dict[str, float], tuple[str | None, ...]]:
    """Mean AP per AVA group (label_type, else AVA's id ranges) over the classes with ground truth."""
    names = []
    for label_id in class_ids.tolist():
        group = label_types.get(label_id)
        if group is None:
            group = next((name for name, lo, hi in AVA_GROUPS if lo <= label_id <= hi), None)
        names.append(group)
    order = [name for name, _, _ in AVA_GROUPS if name in names]
    order += [name for name in dict.fromkeys(names) if name is not None and name not in order]
    means = {}
    for name in order:
        values = ap[[k for k, group in enumerate(names) if group == name]]
        values = values[~np.isnan(values)]
        means[name] = float(values.mean()) if len(values) else math.nan
    return means, tuple(names)
