"""Evaluation of an action model on a split: AVA-format detections, frame-mAP, and video-mAP when tubes exist.

:func:`evaluate` scores every box of every keyframe of the split (the proposals at or above the split's
score threshold, or the ground-truth boxes where there are no proposals), writes them as an AVA detection
CSV (one row per box and class of the label map, the class probability as the score), and evaluates that
file with :mod:`eval.frame_map` against the split's ground truth, exclusions and label map. When ground-truth
tubes exist (``annotations/gt_tubes.pkl`` under the data root, ACT layout, or a path given), the keyframe
detections of each video are linked into tubes with :func:`detection.tubes.linker.link_offline` (the
config's ``tubes`` section), written as the tubes JSON and scored with :mod:`eval.video_map` (ACT protocol).

With several processes (torchrun), each scores its shard of the keyframes (:func:`eval_shard`); rank 0
gathers them, writes the files and evaluates; every rank gets the same :class:`EvalResult` back. The files
do not depend on the number of processes: rows follow the dataset's keyframe order.

Files written under ``out_dir``: ``detections.csv``, ``metrics.json`` (frame-mAP report and the video-mAP
record), ``per_class.csv``, ``table.txt`` and, with tubes, ``tubes.json`` and ``video_map/``.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from detection.config import Config
from detection.data import AvaDataset, collate
from detection.engine.distributed import DistContext, all_gather_object, eval_shard, unwrap_model
from detection.formats.ava import AvaRows, read_ava_table, read_exclusions, write_ava_csv
from detection.structures import KeyframeDetections, LabelMap

__all__ = ["EvalResult", "KeyframeScores", "evaluate", "reference_map", "score_split", "write_detections"]


@dataclass
class KeyframeScores:
    """Per-box outputs of a split, over all keyframes in dataset order.

    ``boxes``: (N, 4) float32 normalized xyxy in the original frame; ``person_scores``: (N,) proposal
    scores (1 for ground-truth boxes); ``scores``: (N, C) float32 class probabilities in the label map's
    column order; ``keyframe``: (N,) int64 dataset index of each box. Per keyframe (K entries, dataset
    order): ``video_ids``, ``timestamps`` (s), ``frame_indices``, ``sizes`` ((H, W) pixels).
    """

    boxes: np.ndarray
    person_scores: np.ndarray
    scores: np.ndarray
    keyframe: np.ndarray
    video_ids: list[str]
    timestamps: np.ndarray
    frame_indices: np.ndarray
    sizes: list[tuple[int, int]]

    def keyframe_detections(self) -> dict[str, list[KeyframeDetections]]:
        """``{video_id: [KeyframeDetections in frame order]}``."""
        starts = np.searchsorted(self.keyframe, np.arange(len(self.video_ids) + 1))
        per_video: dict[str, list[KeyframeDetections]] = defaultdict(list)
        for k, video in enumerate(self.video_ids):
            lo, hi = starts[k], starts[k + 1]
            per_video[video].append(KeyframeDetections(
                video, int(self.frame_indices[k]), float(self.timestamps[k]), self.boxes[lo:hi],
                self.person_scores[lo:hi], self.scores[lo:hi]))
        return {v: sorted(kfs, key=lambda kf: kf.frame_index) for v, kfs in per_video.items()}


@dataclass
class EvalResult:
    """What :func:`evaluate` measured and wrote. mAPs are fractions in [0, 1].

    ``frame_map``: AVA frame-mAP (IoU 0.5, the official protocol unless another was asked for).
    ``video_map``: video-mAP at tube IoU 0.2 / 0.5 / 0.75 / 0.5:0.95 (None without ground-truth tubes).
    ``frame`` / ``video``: the full results of :mod:`eval.frame_map` / :mod:`eval.video_map`.
    """

    split: str
    frame_map: float
    detections_csv: Path
    num_keyframes: int
    num_boxes: int
    seconds: float
    frame: Any = field(repr=False, default=None)  # eval.frame_map.FrameMapResult
    video: Any = field(repr=False, default=None)  # eval.video_map.VideoMapResult | None
    video_map: dict[str, float | None] | None = None
    tubes_json: Path | None = None

    def metrics(self) -> dict[str, float]:
        """Flat numbers for logs: ``mAP`` and ``video_mAP@0.2`` ... when tubes were evaluated."""
        out = {"mAP": float(self.frame_map)}
        for key, value in (self.video_map or {}).items():
            if value is not None:
                out[f"video_mAP@{key}"] = float(value)
        return out

    def summary(self) -> str:
        text = f"{self.split}: frame-mAP {100 * self.frame_map:.2f} ({self.num_keyframes} keyframes, " \
               f"{self.num_boxes} boxes, {self.seconds:.1f} s)"
        if self.video_map:
            text += ", video-mAP " + ", ".join(
                f"@{k} {100 * v:.2f}" for k, v in self.video_map.items() if v is not None)
        return text


def _split_files(cfg: Config, split: str) -> tuple[Path, Path | None]:
    """Ground-truth CSV and exclusions of ``split`` (``test`` reads val's files, as the dataset does)."""
    data = cfg.data
    root = Path(data.root)
    gt, excl = (data.train_annotations, data.train_exclusions) if split == "train" else (
        data.val_annotations, data.val_exclusions)
    gt_path = Path(gt) if Path(gt).is_absolute() else root / gt
    excl_path = None
    if excl:
        excl_path = Path(excl) if Path(excl).is_absolute() else root / excl
        excl_path = excl_path if excl_path.is_file() else None
    return gt_path, excl_path


@torch.no_grad()
def score_split(
    model: nn.Module,
    dataset: AvaDataset,
    *,
    ctx: DistContext | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    quiet: bool = True,
) -> KeyframeScores | None:
    """Class probabilities of every box of ``dataset`` (this rank's shard, gathered on rank 0).

    Runs ``model`` (DDP unwrapped) in eval mode, restored afterwards, under bf16 autocast on CUDA. Returns
    the scores on rank 0 and None on the other ranks.
    """
    ctx = ctx or DistContext()
    core = unwrap_model(model)
    device = next(core.parameters()).device
    indices = eval_shard(len(dataset), ctx.rank, ctx.world_size)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))  # not the global RNG: training repeats exactly
    was_training = core.training
    core.eval()
    parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (index, boxes, person scores, probs)
    keyframes: dict[int, tuple[str, float, int, tuple[int, int]]] = {}
    position = 0
    try:
        bar = tqdm(total=len(indices), desc="eval", unit="clip", disable=quiet or not ctx.is_main, leave=False)
        for batch in loader:
            if batch.skipped:
                raise RuntimeError("evaluation needs every keyframe: set data.on_missing=error to see which is missing")
            batch = batch.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                probs = core.scores(core(batch.clips, batch.boxes).float()).float().cpu().numpy()
            box_clip = batch.box_clip.cpu().numpy()
            original = batch.original_boxes.cpu().numpy()
            person = batch.scores.cpu().numpy()
            for i in range(len(batch)):
                index = indices[position + i]
                rows = box_clip == i
                parts.append((index, original[rows], person[rows], probs[rows]))
                keyframes[index] = (batch.video_ids[i], batch.timestamps[i], batch.frame_indices[i],
                                    tuple(batch.original_sizes[i]))
            position += len(batch)
            bar.update(len(batch))
        bar.close()
    finally:
        core.train(was_training)
    gathered = all_gather_object((parts, keyframes)) if ctx.distributed else [(parts, keyframes)]
    if not ctx.is_main:
        return None
    all_parts = sorted((p for g in gathered for p in g[0]), key=lambda p: p[0])
    all_keyframes: dict[int, tuple[str, float, int, tuple[int, int]]] = {}
    for g in gathered:
        all_keyframes.update(g[1])
    order = sorted(all_keyframes)
    position_of = {index: k for k, index in enumerate(order)}
    num_classes = len(dataset.label_map)
    counts = [len(p[1]) for p in all_parts]
    return KeyframeScores(
        boxes=np.concatenate([p[1] for p in all_parts]).reshape(-1, 4).astype(np.float32) if all_parts
        else np.zeros((0, 4), np.float32),
        person_scores=np.concatenate([p[2] for p in all_parts]).astype(np.float32) if all_parts
        else np.zeros(0, np.float32),
        scores=np.concatenate([p[3] for p in all_parts]).reshape(-1, num_classes).astype(np.float32) if all_parts
        else np.zeros((0, num_classes), np.float32),
        keyframe=np.repeat(np.array([position_of[p[0]] for p in all_parts], np.int64), counts),
        video_ids=[all_keyframes[i][0] for i in order],
        timestamps=np.array([all_keyframes[i][1] for i in order], np.float64),
        frame_indices=np.array([all_keyframes[i][2] for i in order], np.int64),
        sizes=[all_keyframes[i][3] for i in order],
    )


def write_detections(path: str | os.PathLike, scores: KeyframeScores, label_map: LabelMap) -> Path:
    """The AVA detection CSV: one row per box and class (``video_id,sec,x1,y1,x2,y2,action_id,score``)."""
    n, c = scores.scores.shape
    rows = AvaRows(
        video_ids=np.repeat(np.asarray(scores.video_ids, dtype=str)[scores.keyframe], c) if n else np.zeros(0, str),
        timestamps=np.repeat(scores.timestamps[scores.keyframe], c),
        boxes=np.repeat(scores.boxes, c, axis=0),
        action_ids=np.tile(np.asarray(label_map.ids, dtype=np.int64), n),
        scores=scores.scores.reshape(-1),
        person_ids=np.full(n * c, -1, np.int64),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ava_csv(path, rows, kind="detections")
    return path


def _video_map(scores: KeyframeScores, label_map: LabelMap, gt_tubes: Path, cfg: Config, out_dir: Path,
               ) -> tuple[Any, Path]:
    from detection.formats.act import read_act_groundtruth
    from detection.formats.tubes import VideoTubes, write_tubes_json
    from detection.tubes.linker import link_offline
    from eval.tube_inputs import tubes_from_json
    from eval.video_map import evaluate_video_map

    gt = read_act_groundtruth(gt_tubes)
    labels = dict(zip(label_map.ids, label_map.names, strict=True))
    sizes = dict(zip(scores.video_ids, scores.sizes, strict=True))
    videos = []
    for video, keyframes in scores.keyframe_detections().items():
        frames = np.array([kf.frame_index for kf in keyframes])
        gaps = np.diff(frames)
        stride = int(gaps.min()) if len(gaps) else max(int(round(cfg.data.fps)), 1)
        tubes = link_offline(keyframes, label_map, fps=cfg.data.fps, keyframe_stride=stride, config=cfg.tubes,
                             num_frames=gt.nframes.get(video))
        height, width = gt.resolution.get(video, sizes[video])
        videos.append(VideoTubes(video, float(cfg.data.fps), int(width), int(height), labels, tubes))
    tubes_json = out_dir / "tubes.json"
    write_tubes_json(tubes_json, videos)
    return evaluate_video_map(gt, tubes_from_json(videos, gt, str(tubes_json)), protocol="act"), tubes_json


def evaluate(
    model: nn.Module,
    cfg: Config,
    split: Literal["train", "val", "test"],
    out_dir: str | os.PathLike,
    *,
    ctx: DistContext | None = None,
    dataset: AvaDataset | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    gt_tubes: str | os.PathLike | None = None,
    video_map: bool = True,
    protocol: Literal["activitynet", "pyslowfast"] = "activitynet",
    plots: bool = True,
    quiet: bool = True,
) -> EvalResult:
    """Score ``split`` with ``model`` and evaluate it; see the module docstring for what is written.

    ``dataset``: the split's AvaDataset (built from ``cfg.data`` and the model's input spec when None).
    ``batch_size``: clips per forward pass per process (default: the training pass size, at least 1).
    ``gt_tubes``: ACT ground-truth tubes for video-mAP (default: ``annotations/gt_tubes.pkl`` under the data
    root when it exists); ``video_map=False`` skips it. ``plots``: also the PNG plots of the reports (off during
    training: they take seconds). Call it on every rank. Raises FileNotFoundError
    naming the ground-truth CSV when the split has none.
    """
    start = time.perf_counter()
    ctx = ctx or DistContext()
    core = unwrap_model(model)
    out_dir = Path(out_dir)
    tc = cfg.train
    if dataset is None:
        dataset = AvaDataset(cfg.data, split, core.input_spec, core.label_map, seed=tc.seed)
    if batch_size is None:
        batch_size = max(1, tc.batch_size // (tc.accumulation_steps * ctx.world_size))
    workers = tc.num_workers if num_workers is None else num_workers
    scores = score_split(model, dataset, ctx=ctx, batch_size=batch_size, num_workers=workers, quiet=quiet)
    result = None
    if ctx.is_main:
        result = _evaluate_scores(scores, dataset, cfg, split, out_dir, gt_tubes, video_map, protocol, plots)
        result.seconds = time.perf_counter() - start
    if ctx.distributed:
        result = all_gather_object(result)[0]
    return result


def _report(result: Any, out_dir: Path, plots: bool) -> None:
    """The evaluator's full report, or without plots its metrics.json and table.txt only."""
    if plots:
        result.write_report(out_dir)
        return
    from eval.report import write_json

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", result.to_metrics())
    (out_dir / "table.txt").write_text(result.table() + "\n", encoding="utf-8")


def _evaluate_scores(scores: KeyframeScores, dataset: AvaDataset, cfg: Config, split: str, out_dir: Path,
                     gt_tubes: str | os.PathLike | None, video_map: bool, protocol: str, plots: bool,
                     ) -> EvalResult:
    from eval.frame_map import evaluate_frame_map

    label_map = dataset.label_map
    detections_csv = write_detections(out_dir / "detections.csv", scores, label_map)
    gt_csv, exclusions_path = _split_files(cfg, split)
    if not gt_csv.is_file():
        raise FileNotFoundError(f"{gt_csv}: ground truth of split {split!r} not found; detections are in "
                                f"{detections_csv}")
    exclusions = read_exclusions(exclusions_path) if exclusions_path else frozenset()
    frame = evaluate_frame_map(read_ava_table(gt_csv, kind="groundtruth"),
                               read_ava_table(detections_csv, kind="detections"), label_map, exclusions,
                               protocol=protocol)
    _report(frame, out_dir, plots)
    result = EvalResult(split=split, frame_map=float(frame.mAP), detections_csv=detections_csv,
                        num_keyframes=len(scores.video_ids), num_boxes=len(scores.boxes), seconds=0.0, frame=frame)
    tubes_path = Path(gt_tubes) if gt_tubes is not None else Path(cfg.data.root) / "annotations" / "gt_tubes.pkl"
    if video_map and tubes_path.is_file() and len(scores.boxes):
        video, result.tubes_json = _video_map(scores, label_map, tubes_path, cfg, out_dir)
        _report(video, out_dir / "video_map", plots)
        result.video = video
        result.video_map = {key: video.video_map(key) for key in ("0.2", "0.5", "0.75", "0.5:0.95")}
    elif gt_tubes is not None and not tubes_path.is_file():
        raise FileNotFoundError(f"{tubes_path}: ground-truth tubes not found")
    summary = {"split": split, **result.metrics(), "num_keyframes": result.num_keyframes,
               "num_boxes": result.num_boxes, "detections": str(detections_csv)}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return result


def reference_map(
    cfg: Config,
    split: Literal["val", "test"],
    out_dir: str | os.PathLike,
    kind: Literal["oracle", "prior", "random"],
    *,
    seed: int = 0,
    dataset: AvaDataset | None = None,
) -> EvalResult:
    """Frame-mAP of reference scores on the split's boxes, without a model: the yardsticks of a trained one.

    ``oracle``: each box scores its own labels (1 for the classes of the ground-truth boxes it overlaps at
    ``data.proposal_iou``, else 0): the best any model can do with these boxes. ``prior``: every box scores
    each class's frequency among the train split's ground-truth boxes (chance level that knows the class
    balance). ``random``: uniform random scores (chance level). Written and evaluated as :func:`evaluate`
    does (frame-mAP only).
    """
    from detection.models.action_model import InputSpec

    if dataset is None:
        spec = InputSpec(num_frames=1, sampling_rate=1, short_side=32, size=(32, 32))
        dataset = AvaDataset(cfg.data, split, spec)
    label_map = dataset.label_map
    n_kf = len(dataset)
    parts = [dataset.targets(i) for i in range(n_kf)]
    keyframes = [dataset.keyframe(i) for i in range(n_kf)]
    counts = [len(p[0]) for p in parts]
    labels = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, len(label_map)), np.float32)
    if kind == "oracle":
        scores = labels
    elif kind == "prior":
        table = read_ava_table(_split_files(cfg, "train")[0], kind="groundtruth")
        cols = label_map.indices(np.asarray(table.action_ids, dtype=np.int64))
        freq = np.bincount(cols[cols >= 0], minlength=len(label_map)).astype(np.float32)
        scores = np.tile(freq / max(freq.sum(), 1.0), (len(labels), 1))
    elif kind == "random":
        scores = np.random.default_rng(seed).random(labels.shape, dtype=np.float32)
    else:
        raise ValueError(f"kind must be oracle, prior or random, got {kind!r}")
    ks = KeyframeScores(
        boxes=np.concatenate([p[0] for p in parts]).reshape(-1, 4) if parts else np.zeros((0, 4), np.float32),
        person_scores=np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.float32),
        scores=scores.astype(np.float32), keyframe=np.repeat(np.arange(n_kf), counts),
        video_ids=[k[0] for k in keyframes], timestamps=np.array([k[1] for k in keyframes], np.float64),
        frame_indices=np.array([k[2] for k in keyframes], np.int64), sizes=[(0, 0)] * n_kf)
    return _evaluate_scores(ks, dataset, cfg, split, Path(out_dir), None, False, "activitynet", False)
