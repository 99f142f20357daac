"""Person detection quality of an AVA proposals file against AVA ground-truth boxes (COCO-style AP).

How good are the person boxes that the action model is given? Both files are AVA box CSVs
(``video_id,timestamp,x1,y1,x2,y2[,action_id[,last]]``, normalized coordinates):

1. A keyframe is ``(video_id, int(timestamp))``, as in the frame-mAP evaluator. Keyframes listed in an
   exclusions file drop out of both files.
2. Ground truth has one row per person *and action*: rows of one keyframe with the same box are one
   person (the action ids and person ids are not looked at). Proposals likewise: rows with the same
   keyframe and box are one proposal, with the highest score of its rows.
3. pycocotools' ``COCOeval`` (bbox) scores the proposals, with one category ("person") and one image
   per keyframe: boxes are the normalized coordinates × 1000 (IoU does not depend on the scale), one
   area range (all: COCO's small/medium/large ranges are for pixels and mean nothing here) and
   ``maxDets = [1, 10, max_dets]``. Reported: **AP** (IoU 0.50:0.95), **AP50** and **AR@max_dets**
   (COCO's average recall), all at the last maxDets. Proposals on keyframes without ground truth are
   false positives; a video without ground truth has no AP (``None`` in JSON).
4. **recall@0.5**, computed directly: the fraction of ground-truth people with at least one proposal of
   their keyframe at IoU >= 0.5, whatever its score or rank (an upper bound on what the action model can
   find, whatever the score threshold).

All numbers are given overall and per video. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from detection.formats.ava import AvaRows, AvaTable, read_ava_table, read_exclusions
from eval.report import fmt_ap, format_table, write_csv, write_json

__all__ = ["PersonScores", "PersonEvalCounts", "PersonEvalResult", "evaluate_persons", "evaluate_persons_files"]

IOU_THRESHOLD = 0.5  # for recall@0.5 (COCOeval's AP50 uses the same threshold)
COORD_SCALE = 1000.0  # normalized coordinates → the units given to COCOeval
_PAIRS_PER_CHUNK = 1 << 22  # ground-truth × proposal pairs held at once when computing recall


@dataclass(frozen=True)
class PersonScores:
    """Person detection numbers of a set of keyframes; fractions in [0, 1], NaN where undefined."""

    AP: float  # COCO AP, IoU 0.50:0.95
    AP50: float  # COCO AP at IoU 0.5
    recall50: float  # ground-truth people with a proposal at IoU >= 0.5, any score
    AR: float  # COCO average recall (IoU 0.50:0.95) at max_dets proposals per keyframe
    num_gt: int  # ground-truth people (after de-duplication)
    num_proposals: int  # proposals (after de-duplication)
    keyframes: int  # keyframes with ground truth or proposals

    def to_dict(self, max_dets: int) -> dict:
        return {
            "AP": _none_if_nan(self.AP),
            "AP50": _none_if_nan(self.AP50),
            "recall@0.5": _none_if_nan(self.recall50),
            f"AR@{max_dets}": _none_if_nan(self.AR),
            "num_gt": self.num_gt,
            "num_proposals": self.num_proposals,
            "keyframes": self.keyframes,
        }


@dataclass(frozen=True)
class PersonEvalCounts:
    """What the evaluator read, merged and dropped."""

    gt_rows: int = 0
    gt_people: int = 0  # distinct (keyframe, box) of the ground truth, before exclusions
    proposal_rows: int = 0
    proposals: int = 0  # distinct (keyframe, box) of the proposals, before exclusions
    excluded_keyframes: int = 0  # keyframes of either file that the exclusions removed
    gt_people_excluded: int = 0
    proposals_excluded: int = 0
    proposals_without_gt_keyframe: int = 0  # on keyframes without ground truth: false positives


@dataclass
class PersonEvalResult:
    """Person detection quality overall and per video (see the module docstring)."""

    overall: PersonScores
    per_video: dict[str, PersonScores]
    counts: PersonEvalCounts
    max_dets: int = 100
    best_iou: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # per GT person, 0 if none

    def to_metrics(self) -> dict:
        """JSON-ready: ``{"AP", "AP50", "recall@0.5", "AR@100", ..., "per_video": {vid: {...}}, "counts"}``."""
        return {
            **self.overall.to_dict(self.max_dets),
            "per_video": {video: s.to_dict(self.max_dets) for video, s in self.per_video.items()},
            "counts": asdict(self.counts),
        }

    def table(self) -> str:
        """Per-video and overall numbers as plain text (percentages)."""
        header = ["video", "keyframes", "GT people", "proposals", "AP", "AP50", "recall@0.5", f"AR@{self.max_dets}"]
        rows = [_row(video, s) for video, s in self.per_video.items()] + [_row("overall", self.overall)]
        c = self.counts
        notes = [
            f"ground truth: {c.gt_rows} rows, {c.gt_people} people (rows of one keyframe and box merged), "
            f"{c.gt_people_excluded} on excluded keyframes",
            f"proposals: {c.proposal_rows} rows, {c.proposals} distinct boxes, {c.proposals_excluded} on excluded "
            f"keyframes, {c.proposals_without_gt_keyframe} on keyframes without ground truth",
            "AP: COCO AP at IoU 0.50:0.95; recall@0.5: GT people with a proposal at IoU >= 0.5, any score",
        ]
        return "\n".join([format_table(header, rows), "", *notes])

    def write_report(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``metrics.json``, ``per_video.csv`` and ``table.txt`` into ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        header = ["video", "keyframes", "num_gt", "num_proposals", "ap", "ap50", "recall50", f"ar{self.max_dets}"]
        rows = [
            (video, s.keyframes, s.num_gt, s.num_proposals, *map(_none_if_nan, (s.AP, s.AP50, s.recall50, s.AR)))
            for video, s in self.per_video.items()
        ]
        paths = {
            "metrics": write_json(out / "metrics.json", self.to_metrics()),
            "per_video": write_csv(out / "per_video.csv", header, rows),
        }
        table = out / "table.txt"
        tmp = table.with_name(f".{table.name}.tmp")
        tmp.write_text(self.table() + "\n", encoding="utf-8")
        tmp.replace(table)
        paths["table"] = table
        return paths


def _row(name: str, s: PersonScores) -> tuple:
    return (name, s.keyframes, s.num_gt, s.num_proposals, *map(fmt_ap, (s.AP, s.AP50, s.recall50, s.AR)))


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# --------------------------------------------------------------------------------------------------
# Entry points


def evaluate_persons_files(
    gt_csv: str | Path,
    proposals_csv: str | Path,
    exclusions_path: str | Path | None = None,
    max_dets: int = 100,
) -> PersonEvalResult:
    """Person detection quality of an AVA proposals CSV against an AVA ground-truth CSV.

    Raises ValueError naming file and line for malformed rows (see :func:`read_ava_table`).
    """
    gt = read_ava_table(gt_csv, kind="groundtruth")
    proposals = read_ava_table(proposals_csv, kind="detections")
    exclusions = read_exclusions(exclusions_path) if exclusions_path else frozenset()
    return evaluate_persons(gt, proposals, exclusions, max_dets=max_dets)


def evaluate_persons(
    gt: AvaRows | AvaTable,
    proposals: AvaRows | AvaTable,
    exclusions: Collection[tuple[str, int]] = frozenset(),
    max_dets: int = 100,
) -> PersonEvalResult:
    """Person detection quality of ``proposals`` against ``gt`` (normalized boxes, seconds).

    ``exclusions``: ``(video_id, second)`` keyframes to leave out. ``max_dets``: proposals per keyframe
    that COCOeval keeps (highest scores first); recall@0.5 always uses all of them.
    """
    if max_dets < 10:
        raise ValueError(f"max_dets must be >= 10 (COCOeval's maxDets are [1, 10, max_dets]), got {max_dets}")
    g_video, g_sec, g_boxes, _ = _columns(gt)
    p_video, p_sec, p_boxes, p_score = _columns(proposals)
    videos = np.unique(np.concatenate([g_video, p_video]))
    g_vid, p_vid = np.searchsorted(videos, g_video), np.searchsorted(videos, p_video)

    # One person per (keyframe, box); one proposal per (keyframe, box) with its best score.
    g_keys, _ = _dedupe(g_vid, g_sec, g_boxes)
    p_keys, p_inverse = _dedupe(p_vid, p_sec, p_boxes)
    p_best = np.full(len(p_keys), -np.inf)
    np.maximum.at(p_best, p_inverse, p_score)
    counts = {"gt_rows": len(g_vid), "gt_people": len(g_keys), "proposal_rows": len(p_vid), "proposals": len(p_keys)}

    # Keyframes shared by both files, exclusions.
    kf, kf_index = np.unique(np.concatenate([g_keys[:, :2], p_keys[:, :2]]), axis=0, return_inverse=True)
    kf_index = kf_index.reshape(-1)
    g_kf, p_kf = kf_index[: len(g_keys)], kf_index[len(g_keys) :]
    excluded = _excluded(kf, videos, exclusions)
    counts["excluded_keyframes"] = int(excluded.sum())
    counts["gt_people_excluded"] = int(excluded[g_kf].sum())
    counts["proposals_excluded"] = int(excluded[p_kf].sum())
    g_keep, p_keep = ~excluded[g_kf], ~excluded[p_kf]
    g_kf, g_boxes = g_kf[g_keep], g_keys[g_keep, 2:]
    p_kf, p_boxes, p_best = p_kf[p_keep], p_keys[p_keep, 2:], p_best[p_keep]
    has_gt = np.zeros(len(kf), dtype=bool)
    has_gt[g_kf] = True
    counts["proposals_without_gt_keyframe"] = int(np.count_nonzero(~has_gt[p_kf]))

    best_iou = _best_iou(g_kf, g_boxes, p_kf, p_boxes)
    hit = best_iou >= IOU_THRESHOLD
    kf_video = kf[:, 0].astype(np.int64)
    used = np.zeros(len(kf), dtype=bool)
    used[g_kf], used[p_kf] = True, True

    coco = _CocoPersons(g_kf, g_boxes, p_kf, p_boxes, p_best, np.flatnonzero(used), max_dets)
    overall = coco.scores(np.flatnonzero(used))
    per_video = {}
    for v, video in enumerate(videos.tolist()):
        frames = np.flatnonzero(used & (kf_video == v))
        if not len(frames):
            continue  # every keyframe of this video was excluded
        gt_in = kf_video[g_kf] == v
        ap, ap50, ar = coco.scores(frames)
        per_video[video] = PersonScores(
            AP=ap, AP50=ap50, AR=ar, recall50=_fraction(hit[gt_in]), num_gt=int(gt_in.sum()),
            num_proposals=int(np.count_nonzero(kf_video[p_kf] == v)), keyframes=len(frames),
        )  # fmt: skip
    return PersonEvalResult(
        overall=PersonScores(
            AP=overall[0], AP50=overall[1], AR=overall[2], recall50=_fraction(hit), num_gt=len(g_kf),
            num_proposals=len(p_kf), keyframes=int(used.sum()),
        ),  # fmt: skip
        per_video=per_video,
        counts=PersonEvalCounts(**counts),
        max_dets=max_dets,
        best_iou=best_iou,
    )


# --------------------------------------------------------------------------------------------------
# Steps


def _columns(rows: AvaRows | AvaTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """video ids, keyframe seconds (int, truncated), float64 boxes, scores (1 where absent)."""
    if isinstance(rows, AvaTable):
        scores = np.where(np.isnan(rows.last), 1.0, rows.last)
    elif isinstance(rows, AvaRows):
        scores = rows.scores.astype(np.float64)
    else:
        raise TypeError(f"expected AvaRows or AvaTable, got {type(rows).__name__}")
    boxes = np.asarray(rows.boxes, dtype=np.float64).reshape(-1, 4)
    timestamps = np.asarray(rows.timestamps, dtype=np.float64)
    if not (np.isfinite(boxes).all() and np.isfinite(timestamps).all()):
        raise ValueError("non-finite box coordinate or timestamp")
    return np.asarray(rows.video_ids, dtype=str), np.trunc(timestamps), boxes, scores


def _dedupe(video: np.ndarray, second: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows ``[video, second, x1, y1, x2, y2]`` (float64, exact) and each input row's index."""
    keys = np.column_stack([video.astype(np.float64), second, boxes])
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    return unique.reshape(-1, 6), inverse.reshape(-1)


def _excluded(kf: np.ndarray, videos: np.ndarray, exclusions: Collection[tuple[str, int]]) -> np.ndarray:
    """Which keyframes ``kf`` (rows ``[video index, second]``) are in ``exclusions``."""
    if not len(exclusions) or not len(kf):
        return np.zeros(len(kf), dtype=bool)
    ex_video = np.asarray([v for v, _ in exclusions], dtype=str)
    ex_sec = np.asarray([int(t) for _, t in exclusions], dtype=np.float64)
    pos = np.minimum(np.searchsorted(videos, ex_video), len(videos) - 1)
    known = videos[pos] == ex_video
    ex = np.column_stack([pos[known].astype(np.float64), ex_sec[known]])
    # A keyframe is excluded when its (video, second) row is among the exclusions' rows.
    both = np.concatenate([kf, ex])
    _, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return np.isin(inverse[: len(kf)], inverse[len(kf) :])


def _best_iou(g_kf: np.ndarray, g_boxes: np.ndarray, p_kf: np.ndarray, p_boxes: np.ndarray) -> np.ndarray:
    """Per ground-truth box, its highest IoU with a proposal of the same keyframe (0 when none)."""
    best = np.zeros(len(g_kf))
    order = np.argsort(p_kf, kind="stable")
    sorted_kf = p_kf[order]
    starts = np.searchsorted(sorted_kf, g_kf, side="left")
    per_gt = np.searchsorted(sorted_kf, g_kf, side="right") - starts  # proposals on each GT box's keyframe
    ends = np.cumsum(per_gt)
    # Every (GT box, proposal of its keyframe) pair, in chunks of GT boxes holding about _PAIRS_PER_CHUNK pairs.
    lo = 0
    while lo < len(g_kf):
        hi = max(int(np.searchsorted(ends, ends[lo] - per_gt[lo] + _PAIRS_PER_CHUNK, side="right")), lo + 1)
        counts = per_gt[lo:hi]
        gt = np.repeat(np.arange(lo, hi), counts)
        # position of each pair within its GT box's run: 0, 1, ..., counts-1
        within = np.arange(len(gt)) - np.repeat(np.cumsum(counts) - counts, counts)
        prop = order[np.repeat(starts[lo:hi], counts) + within]
        iou = _pairwise_iou(g_boxes[gt], p_boxes[prop])
        np.maximum.at(best, gt, iou)
        lo = hi
    return best


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``a[i]`` and ``b[i]`` (continuous areas, as COCO computes it); 0 for empty unions."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _fraction(hits: np.ndarray) -> float:
    return float(hits.mean()) if len(hits) else math.nan


class _CocoPersons:
    """The proposals and ground truth as pycocotools datasets: one image per keyframe, one category."""

    def __init__(
        self,
        g_kf: np.ndarray,
        g_boxes: np.ndarray,
        p_kf: np.ndarray,
        p_boxes: np.ndarray,
        p_scores: np.ndarray,
        images: np.ndarray,
        max_dets: int,
    ) -> None:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        def dataset(kf: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None) -> COCO:
            xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]]) * COORD_SCALE
            annotations = [
                # ids from 1: COCOeval marks "unmatched" with id 0
                {"id": i + 1, "image_id": int(k), "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
                for i, (k, box) in enumerate(zip(kf.tolist(), xywh.tolist(), strict=True))
            ]
            if scores is not None:
                for annotation, score in zip(annotations, scores.tolist(), strict=True):
                    annotation["score"] = score
            coco = COCO()
            coco.dataset = {
                "images": [{"id": int(i)} for i in images],
                "annotations": annotations,
                "categories": [{"id": 1, "name": "person"}],
            }
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                coco.createIndex()
            return coco

        self.eval = COCOeval(dataset(g_kf, g_boxes, None), dataset(p_kf, p_boxes, p_scores), iouType="bbox")
        params = self.eval.params
        params.catIds = [1]
        params.areaRng, params.areaRngLbl = [[0.0, 1e12]], ["all"]  # one range: the COCO ones are for pixels
        params.maxDets = [1, 10, max_dets]
        params.imgIds = [int(i) for i in images]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            self.eval.evaluate()  # the per-image matching, once for all keyframes
        # With one category and one area range, evalImgs holds one entry per image, in params.imgIds order.
        self._per_image = list(self.eval.evalImgs)
        self._position = {int(image): n for n, image in enumerate(self.eval.params.imgIds)}
        self._evaluated = copy.deepcopy(self.eval._paramsEval)

    def scores(self, images: np.ndarray) -> tuple[float, float, float]:
        """(AP 0.50:0.95, AP50, AR) over ``images`` (keyframe ids), NaN without ground truth."""
        ids = sorted(int(i) for i in images)
        # accumulate() ranks the per-image results that evalImgs and _paramsEval.imgIds point at: point
        # both (and params.imgIds, which must list the same images) at this subset.
        self.eval.evalImgs = [self._per_image[self._position[i]] for i in ids]
        self.eval._paramsEval = copy.deepcopy(self._evaluated)
        self.eval._paramsEval.imgIds = ids
        self.eval.params.imgIds = ids
        with contextlib.redirect_stdout(io.StringIO()):
            self.eval.accumulate()
        precision = self.eval.eval["precision"][:, :, 0, 0, -1]  # (IoU thresholds, recall points)
        recall = self.eval.eval["recall"][:, 0, 0, -1]  # (IoU thresholds,); iouThrs[0] is 0.5

        def mean(values: np.ndarray) -> float:
            valid = values[values > -1]
            return float(valid.mean()) if valid.size else math.nan

        return mean(precision), mean(precision[0]), mean(recall)
