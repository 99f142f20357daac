"""The training / evaluation dataset over AVA-format data: one item per keyframe with at least one box.

Reads PySlowFast's layout (AVA itself, converted custom data, the synthetic dataset) through
:class:`~detection.config.DataConfig`: box CSVs, excluded timestamps, the label map, and frames from JPEG
folders or straight from the videos.

Conventions:

- Keyframe: ``(video_id, timestamp)`` of a box CSV; its frame index is
  ``round((timestamp - time_offset) * fps)`` on the frame grid of the frame folders.
- Clip: ``num_frames`` frames ``sampling_rate`` apart, ``center + (k - num_frames // 2) * sampling_rate``
  for ``k = 0 .. T-1``, clamped to the video's frames (edge frames repeat). The keyframe is clip frame
  ``T // 2`` (in training ``augment.temporal_jitter`` may move the centre a few frames off it). For even
  ``T`` (every recipe) this is PySlowFast's ``get_sequence``; for odd ``T`` it keeps
  the keyframe in the clip, where PySlowFast's would not.
- Boxes: train uses the ground-truth boxes (rows with the same box are one person, their actions its
  labels) plus the proposals scoring at least ``train_score_threshold``; a proposal takes the labels of
  every GT box it overlaps with IoU >= ``proposal_iou`` and is a negative (all-zero target) when it
  overlaps none (``proposal_negatives``; otherwise it is dropped). val/test score the proposals at or
  above ``test_score_threshold``, labelled by the same rule when ground truth exists; without a
  proposal file they use the GT boxes. Excluded timestamps are skipped. ``test`` reads val's files.
- Labels: (N, C) float32 multi-hot in the label map's column order; ids outside the map are ignored.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from detection.config import DataConfig
from detection.data.sources import FrameFolderSource, FrameReadError, FrameSource, VideoFileSource
from detection.data.transforms import ClipTransform
from detection.formats.ava import AvaRows, read_ava_csv, read_exclusions
from detection.models.action_model import InputSpec, preprocess
from detection.structures import LabelMap

__all__ = ["AvaBatch", "AvaDataset", "AvaSample", "MissingFrameWarning", "clip_indices", "collate"]

Split = Literal["train", "val", "test"]


class MissingFrameWarning(UserWarning):
    """A keyframe skipped because a frame of its clip is missing or unreadable (``on_missing: skip``)."""


def clip_indices(center: int, num_frames: int, sampling_rate: int, video_frames: int | None) -> np.ndarray:
    """Frame indices (T,) of the clip around ``center``, clamped to ``[0, video_frames - 1]`` (see module doc)."""
    idx = center + (np.arange(num_frames, dtype=np.int64) - num_frames // 2) * sampling_rate
    return np.clip(idx, 0, None if video_frames is None else max(video_frames - 1, 0))


@dataclass
class AvaSample:
    """One keyframe's clip and boxes, as the dataset returns it.

    ``clip``: (3, T, H, W), float32 normalised with the input spec's mean/std, or uint8 RGB when the
    dataset was made with ``normalize=False``. ``boxes``: (N, 4) float32 normalized xyxy in the clip (after
    augmentation). ``labels``: (N, C) float32 multi-hot, None where the split has no ground truth.
    ``original_boxes``: the same boxes normalized in the original frame (what an AVA CSV reports).
    """

    clip: Tensor
    boxes: np.ndarray
    labels: Tensor | None
    original_boxes: np.ndarray
    from_gt: np.ndarray  # (N,) bool: a ground-truth box (False: a proposal)
    scores: np.ndarray  # (N,) float32: proposal score, 1 for GT boxes
    video_id: str
    timestamp: float  # seconds, as in the CSV (AVA: with the 900 s offset)
    frame_index: int  # the keyframe on the frame grid
    frame_indices: np.ndarray  # (T,) frame indices of the clip after clamping
    original_size: tuple[int, int]  # (H, W) pixels of the source frames


@dataclass
class AvaBatch:
    """Samples stacked for the model: ``model(batch.clips, batch.boxes)``.

    Clips of different sizes are padded at the bottom and right with 0 (the mean colour of normalised
    clips) to the largest ``(H, W)``; ``boxes`` are normalized to the padded size, so they still cover
    the same pixels. Per-box tensors (``labels``, ``original_boxes``, ``from_gt``, ``scores``,
    ``box_clip``) run over the boxes of all clips in order. ``skipped``: keyframes of this batch dropped
    for missing frames.
    """

    clips: Tensor  # (B, 3, T, H, W)
    boxes: list[Tensor]  # B x (N_i, 4) float32 normalized in the padded clip
    labels: Tensor | None  # (N, C) float32
    original_boxes: Tensor  # (N, 4) normalized in the original frames
    from_gt: Tensor  # (N,) bool
    scores: Tensor  # (N,) float32
    box_clip: Tensor  # (N,) int64: the clip of each box
    video_ids: list[str]
    timestamps: list[float]
    frame_indices: list[int]
    image_sizes: list[tuple[int, int]]  # (H, W) of each clip before padding
    original_sizes: list[tuple[int, int]]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.video_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> AvaBatch:
        """The tensors on ``device`` (lists of metadata are shared)."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, clips=move(self.clips), boxes=[move(b) for b in self.boxes],
                       labels=None if self.labels is None else move(self.labels),
                       original_boxes=move(self.original_boxes), from_gt=move(self.from_gt),
                       scores=move(self.scores), box_clip=move(self.box_clip))

    def pin_memory(self) -> AvaBatch:
        """Page-locked copies (called by ``DataLoader(pin_memory=True)``)."""
        return replace(self, clips=self.clips.pin_memory(), boxes=[b.pin_memory() for b in self.boxes],
                       labels=None if self.labels is None else self.labels.pin_memory())


def collate(samples: list[AvaSample | None]) -> AvaBatch:
    """Stack samples with different box counts and sizes into an :class:`AvaBatch` (``None`` = skipped)."""
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        raise FrameReadError(f"every keyframe of this batch ({skipped}) was skipped for missing frames", "")
    height = max(s.clip.shape[-2] for s in kept)
    width = max(s.clip.shape[-1] for s in kept)
    clips = kept[0].clip.new_zeros((len(kept), *kept[0].clip.shape[:2], height, width))
    boxes = []
    for i, s in enumerate(kept):
        h, w = s.clip.shape[-2:]
        clips[i, :, :, :h, :w] = s.clip
        factor = np.array([w / width, h / height] * 2, dtype=np.float32)
        boxes.append(torch.from_numpy(np.ascontiguousarray(s.boxes * factor, dtype=np.float32)))
    with_labels = all(s.labels is not None for s in kept)
    return AvaBatch(
        clips=clips,
        boxes=boxes,
        labels=torch.cat([s.labels for s in kept]) if with_labels else None,
        original_boxes=torch.from_numpy(np.concatenate([s.original_boxes for s in kept]).reshape(-1, 4)),
        from_gt=torch.from_numpy(np.concatenate([s.from_gt for s in kept])),
        scores=torch.from_numpy(np.concatenate([s.scores for s in kept]).astype(np.float32)),
        box_clip=torch.from_numpy(np.repeat(np.arange(len(kept)), [len(s.boxes) for s in kept])),
        video_ids=[s.video_id for s in kept],
        timestamps=[s.timestamp for s in kept],
        frame_indices=[s.frame_index for s in kept],
        image_sizes=[tuple(s.clip.shape[-2:]) for s in kept],
        original_sizes=[s.original_size for s in kept],
        skipped=skipped,
    )


# --------------------------------------------------------------------------------------------------
# The keyframe table, built once from the CSVs (plain numpy arrays: cheap to share with workers)


@dataclass
class _Boxes:
    """Boxes of keyframes; ``kf`` is each box's keyframe key, labels in CSR form (label-map columns)."""

    kf: np.ndarray  # (M,) int64 keyframe key
    boxes: np.ndarray  # (M, 4) float32
    scores: np.ndarray  # (M,) float32
    from_gt: np.ndarray  # (M,) bool
    label_ptr: np.ndarray  # (M + 1,) int64
    label_cols: np.ndarray  # (L,) int64
    order: np.ndarray = field(default=None)  # (M,) position in the source file, for stable ordering

    def __post_init__(self) -> None:
        if self.order is None:
            self.order = np.arange(len(self.kf))


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    offsets = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + offsets


def _csr(owner: np.ndarray, cols: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Deduplicated (owner, col) pairs as CSR arrays over ``n`` owners, columns sorted within an owner."""
    if len(owner) == 0:
        return np.zeros(n + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    span = int(cols.max()) + 1
    codes = np.unique(owner.astype(np.int64) * span + cols)
    owner, cols = codes // span, codes % span
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=n), out=ptr[1:])
    return ptr, cols


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a[i]`` with box ``b[i]`` (elementwise, not a matrix), float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


class AvaDataset(Dataset):
    """AVA-format keyframes as model-ready samples (see the module docstring for the conventions).

    ``data``: a DataConfig, or a dataset root (the DataConfig defaults, i.e. PySlowFast's layout with the
    synthetic generator's file names). ``split``: train (augmented, GT + proposals), val or test (resized,
    proposals). ``input_spec``: frames, sampling rate, the eval short side (unless the config's
    ``augment.test_short_side`` says otherwise), mean and std. ``label_map``: the model's columns (None:
    the config's label map file). ``normalize``: float clips for the model, or uint8 RGB (3, T, H, W).
    ``seed``: augmentations drawn from ``(seed, epoch, index)`` (reproducible whichever worker loads
    the item; see :meth:`set_epoch`); None draws fresh randomness.

    ``__getitem__`` returns an :class:`AvaSample`, or None for a keyframe skipped under
    ``on_missing: skip`` (a :class:`MissingFrameWarning` names the file; :func:`collate` drops it and
    counts it in ``AvaBatch.skipped``). Raises FileNotFoundError / ValueError from ``__init__`` naming
    the file that is missing or malformed, FrameReadError from ``__getitem__`` under ``on_missing: error``.
    """

    def __init__(self, data: DataConfig | str | os.PathLike, split: Split, input_spec: InputSpec,
                 label_map: LabelMap | None = None, *, normalize: bool = True, seed: int | None = None) -> None:
        if not isinstance(data, DataConfig):
            data = DataConfig(root=str(data), synthetic=None)
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        self.config, self.split, self.input_spec = data, split, input_spec
        self.root = Path(data.root)
        self.label_map = label_map if label_map is not None else LabelMap.load(self._path(data.label_map))
        self.normalize, self.seed, self.epoch = normalize, seed, 0
        self.skipped = 0  # keyframes skipped for missing frames by this process
        train = split == "train"
        eval_side = data.augment.test_short_side or input_spec.short_side
        self.transform = ClipTransform(data.augment, train=train, eval_short_side=eval_side)
        self.source = self._make_source()
        self._build_index()

    # ---------------------------------------------------------------------------------------------- setup

    def _path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.root / path

    def _file(self, name: str, what: str) -> Path:
        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: {what} not found (data.root={self.config.root})")
        return path

    def _files(self) -> dict[str, str | None]:
        c = self.config
        if self.split == "train":
            return {"annotations": c.train_annotations, "proposals": c.train_proposals,
                    "exclusions": c.train_exclusions, "frame_list": c.train_frame_list}
        return {"annotations": c.val_annotations, "proposals": c.val_proposals,
                "exclusions": c.val_exclusions, "frame_list": c.val_frame_list}

    def _make_source(self) -> FrameSource:
        c = self.config
        if c.source == "videos":
            return VideoFileSource(self._path(c.videos_dir), c.fps)
        frame_list = self._files()["frame_list"]
        lists = [self._path(frame_list)] if frame_list and self._path(frame_list).is_file() else []
        return FrameFolderSource(self._path(c.frames_dir), c.frame_naming, lists)

    def _read_boxes(self, rows: AvaRows, names: dict[str, int], path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Keyframe keys (video index, timestamp) of each row; checks the timestamps against time_offset."""
        vid = np.array([names.setdefault(v, len(names)) for v in rows.video_ids.tolist()], dtype=np.int64)
        frames = np.rint((rows.timestamps - self.config.time_offset) * self.config.fps)
        if len(frames) and frames.min() < 0:
            i = int(np.argmin(frames))
            raise ValueError(f"{path}: timestamp {rows.timestamps[i]} of video {rows.video_ids[i]} is before "
                             f"data.time_offset={self.config.time_offset} s (frame {int(frames[i])})")
        return vid, rows.timestamps

    def _build_index(self) -> None:
        c, files = self.config, self._files()
        names: dict[str, int] = {}
        gt_path = self._path(files["annotations"])
        has_gt = gt_path.is_file()
        if not has_gt and (self.split != "test" or not files["proposals"]):
            self._file(files["annotations"], "ground-truth box CSV")  # raises
        use_proposals = files["proposals"] is not None
        keys_v, keys_t = [], []
        parts: list[tuple[str, AvaRows, np.ndarray, np.ndarray]] = []
        if has_gt:
            rows = read_ava_csv(gt_path, kind="groundtruth")
            v, t = self._read_boxes(rows, names, gt_path)
            parts.append(("gt", rows, v, t))
        if use_proposals:
            path = self._file(files["proposals"], "proposal box CSV")
            rows = read_ava_csv(path, kind="detections")
            threshold = c.train_score_threshold if self.split == "train" else c.test_score_threshold
            rows = rows.select(rows.scores >= threshold)
            v, t = self._read_boxes(rows, names, path)
            parts.append(("proposals", rows, v, t))
        for _, _, v, t in parts:
            keys_v.append(v)
            keys_t.append(t)
        # One integer key per keyframe (video index, timestamp), ordered by video id then time.
        all_v = np.concatenate(keys_v) if keys_v else np.zeros(0, np.int64)
        all_t = np.concatenate(keys_t) if keys_t else np.zeros(0)
        video_names = np.array(list(names), dtype=str) if names else np.zeros(0, str)
        name_rank = np.argsort(np.argsort(video_names)) if len(video_names) else np.zeros(0, np.int64)
        pairs = np.stack([name_rank[all_v].astype(np.float64), all_t], axis=1) if len(all_v) else np.zeros((0, 2))
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        offset = 0
        grouped: dict[str, _Boxes] = {}
        for kind, rows, v, _ in parts:
            kf = inverse[offset:offset + len(v)]
            offset += len(v)
            grouped[kind] = self._group_gt(rows, kf) if kind == "gt" else self._proposals(rows, kf)
        gt = grouped.get("gt")
        if "proposals" in grouped:
            proposals = grouped["proposals"]
            if gt is not None:
                proposals = self._label_proposals(proposals, gt, len(uniq))
            if self.split == "train":
                boxes = self._concat([gt, proposals] if gt is not None else [proposals])
            else:
                boxes = proposals
        else:
            boxes = gt
        # Keyframes: video id, timestamp, frame index; drop exclusions and videos that are not there.
        rank_to_name = np.empty(len(video_names), dtype=object)
        rank_to_name[name_rank] = video_names
        kf_video = rank_to_name[uniq[:, 0].astype(np.int64)] if len(uniq) else np.zeros(0, object)
        kf_time = uniq[:, 1] if len(uniq) else np.zeros(0)
        usable = np.zeros(len(uniq), dtype=bool)
        usable[boxes.kf] = True
        if files["exclusions"] and self._path(files["exclusions"]).is_file():
            excluded = read_exclusions(self._path(files["exclusions"]))
            usable &= np.array([(v, int(t)) not in excluded for v, t in zip(kf_video, kf_time, strict=True)],
                               dtype=bool)
        self.missing_videos = self._check_videos(sorted(set(kf_video[usable].tolist())))
        if self.missing_videos:
            usable &= ~np.isin(kf_video, list(self.missing_videos))
        # Boxes ordered by keyframe, then GT before proposals, then file order.
        keep = usable[boxes.kf]
        sel = np.flatnonzero(keep)
        sel = sel[np.lexsort((boxes.order[sel], ~boxes.from_gt[sel], boxes.kf[sel]))]
        kept_kf = np.flatnonzero(usable)
        new_id = np.full(len(uniq), -1, dtype=np.int64)
        new_id[kept_kf] = np.arange(len(kept_kf))
        counts = np.bincount(new_id[boxes.kf[sel]], minlength=len(kept_kf))
        self._video_ids = kf_video[kept_kf].astype(str)
        self._timestamps = kf_time[kept_kf].astype(np.float64)
        self._frame_index = np.rint((self._timestamps - c.time_offset) * c.fps).astype(np.int64)
        self._box_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts
        self._box_count = counts.astype(np.int64)
        self._boxes = boxes.boxes[sel]
        self._scores = boxes.scores[sel]
        self._from_gt = boxes.from_gt[sel]
        lab_counts = np.diff(boxes.label_ptr)[sel]
        self._label_cols = boxes.label_cols[_ranges(boxes.label_ptr[sel], lab_counts)]
        self._label_ptr = np.concatenate([[0], np.cumsum(lab_counts)]).astype(np.int64)
        self.has_labels = gt is not None

    def _group_gt(self, rows: AvaRows, kf: np.ndarray) -> _Boxes:
        """GT rows (one per box and action) -> one box per (keyframe, box), labels = its actions."""
        key = np.concatenate([kf[:, None].astype(np.float64), rows.boxes.astype(np.float64)], axis=1)
        uniq, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        cols = self.label_map.indices(rows.action_ids)
        ok = cols >= 0
        ptr, label_cols = _csr(inverse[ok], cols[ok], len(uniq))
        n = len(uniq)
        return _Boxes(kf=uniq[:, 0].astype(np.int64), boxes=uniq[:, 1:].astype(np.float32),
                      scores=np.ones(n, np.float32), from_gt=np.ones(n, bool), label_ptr=ptr,
                      label_cols=label_cols, order=first)

    @staticmethod
    def _proposals(rows: AvaRows, kf: np.ndarray) -> _Boxes:
        n = len(rows)
        return _Boxes(kf=kf.astype(np.int64), boxes=rows.boxes, scores=rows.scores, from_gt=np.zeros(n, bool),
                      label_ptr=np.zeros(n + 1, np.int64), label_cols=np.zeros(0, np.int64))

    def _label_proposals(self, props: _Boxes, gt: _Boxes, num_keyframes: int) -> _Boxes:
        """Labels of the GT boxes each proposal overlaps with IoU >= proposal_iou (vectorised over pairs)."""
        gt_sorted = np.argsort(gt.kf, kind="stable")
        gt_count = np.bincount(gt.kf, minlength=num_keyframes)
        gt_start = np.concatenate([[0], np.cumsum(gt_count)[:-1]])
        # Every (proposal, GT box of the same keyframe) pair.
        per_prop = gt_count[props.kf]
        p = np.repeat(np.arange(len(props.kf)), per_prop)
        g = gt_sorted[_ranges(gt_start[props.kf], per_prop)]
        match = _pairwise_iou(props.boxes[p], gt.boxes[g]) >= self.config.proposal_iou
        p, g = p[match], g[match]
        matched = np.zeros(len(props.kf), dtype=bool)
        matched[p] = True
        lab_counts = np.diff(gt.label_ptr)[g]
        owner = np.repeat(p, lab_counts)
        cols = gt.label_cols[_ranges(gt.label_ptr[g], lab_counts)]
        ptr, label_cols = _csr(owner, cols, len(props.kf))
        labelled = replace(props, label_ptr=ptr, label_cols=label_cols)
        if self.config.proposal_negatives:
            return labelled
        return self._select(labelled, matched)

    @staticmethod
    def _select(b: _Boxes, keep: np.ndarray) -> _Boxes:
        idx = np.flatnonzero(keep)
        counts = np.diff(b.label_ptr)[idx]
        return _Boxes(kf=b.kf[idx], boxes=b.boxes[idx], scores=b.scores[idx], from_gt=b.from_gt[idx],
                      label_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                      label_cols=b.label_cols[_ranges(b.label_ptr[idx], counts)], order=b.order[idx])

    @staticmethod
    def _concat(parts: list[_Boxes]) -> _Boxes:
        ptrs, shift = [np.zeros(1, np.int64)], 0
        for b in parts:
            ptrs.append(b.label_ptr[1:] + shift)
            shift += int(b.label_ptr[-1])
        return _Boxes(kf=np.concatenate([b.kf for b in parts]), boxes=np.concatenate([b.boxes for b in parts]),
                      scores=np.concatenate([b.scores for b in parts]),
                      from_gt=np.concatenate([b.from_gt for b in parts]), label_ptr=np.concatenate(ptrs),
                      label_cols=np.concatenate([b.label_cols for b in parts]),
                      order=np.concatenate([b.order for b in parts]))

    def _check_videos(self, video_ids: list[str]) -> set[str]:
        """Videos with keyframes whose frames/file are not there: raise (on_missing=error) or skip them."""
        missing = {v for v in video_ids if self.source.location(v) is None}
        if missing and self.config.on_missing == "error":
            where = self.config.frames_dir if self.config.source == "frames" else self.config.videos_dir
            first = sorted(missing)[0]
            raise FileNotFoundError(f"{self._path(where) / first}: no {self.config.source} for video {first} "
                                    f"({len(missing)} of {len(video_ids)} videos missing; data.on_missing=skip "
                                    f"skips their keyframes)")
        if missing:
            warnings.warn(f"{self.split}: {len(missing)} of {len(video_ids)} videos have no "
                          f"{self.config.source} (e.g. {sorted(missing)[0]}); their keyframes are skipped",
                          MissingFrameWarning, stacklevel=3)
        return missing

    # ---------------------------------------------------------------------------------------------- items

    def __len__(self) -> int:
        return len(self._video_ids)

    @property
    def num_boxes(self) -> int:
        return len(self._boxes)

    def set_epoch(self, epoch: int) -> None:
        """Draw other augmentations for the next pass (with a ``seed``); call before creating the workers."""
        self.epoch = int(epoch)

    def keyframe(self, index: int) -> tuple[str, float, int]:
        """``(video_id, timestamp, frame_index)`` of item ``index``."""
        return str(self._video_ids[index]), float(self._timestamps[index]), int(self._frame_index[index])

    def targets(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4) normalized in the original frame, multi-hot labels (N, C), from_gt (N,), scores (N,)."""
        lo = int(self._box_start[index])
        hi = lo + int(self._box_count[index])
        labels = np.zeros((hi - lo, len(self.label_map)), dtype=np.float32)
        counts = np.diff(self._label_ptr[lo:hi + 1])
        rows = np.repeat(np.arange(hi - lo), counts)
        labels[rows, self._label_cols[self._label_ptr[lo]:self._label_ptr[hi]]] = 1.0
        return self._boxes[lo:hi].copy(), labels, self._from_gt[lo:hi].copy(), self._scores[lo:hi].copy()

    def _rng(self, index: int, stream: int = 0) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index] + ([stream] if stream else []))

    def _jittered(self, center: int, index: int, video_frames: int | None) -> int:
        """The clip's centre: the keyframe, moved by ``augment.temporal_jitter`` frames at most in training."""
        jitter = self.config.augment.temporal_jitter
        if self.split != "train" or jitter == 0:
            return center
        # A stream of its own: the spatial augmentations draw what they drew without the jitter.
        shifted = max(0, center + int(self._rng(index, stream=1).integers(-jitter, jitter + 1)))
        return shifted if video_frames is None else min(shifted, video_frames - 1)

    def __getitem__(self, index: int) -> AvaSample | None:
        if not 0 <= index < len(self):
            raise IndexError(f"keyframe {index} out of range ({len(self)} keyframes)")
        video_id, timestamp, center = self.keyframe(index)
        spec = self.input_spec
        try:
            video_frames = self.source.num_frames(video_id)
            if video_frames is not None and center >= video_frames:
                where = self.source.location(video_id) or video_id
                raise FrameReadError(f"{where}: keyframe {timestamp} s is frame {center}, past the video's last "
                                     f"frame {video_frames - 1}", where)
            indices = clip_indices(self._jittered(center, index, video_frames), spec.num_frames,
                                   spec.sampling_rate, video_frames)
            frames = self.source.read(video_id, indices)
        except FrameReadError as err:
            if self.config.on_missing == "error":
                raise
            self.skipped += 1
            warnings.warn(f"{err}; keyframe {video_id} {timestamp} skipped ({self.skipped} in this process)",
                          MissingFrameWarning, stacklevel=2)
            return None
        boxes, labels, from_gt, scores = self.targets(index)
        original_size = (int(frames.shape[1]), int(frames.shape[2]))
        frames, moved, keep = self.transform(frames, boxes, self._rng(index))
        if self.normalize:
            clip = preprocess(frames, spec.mean, spec.std)
        else:
            clip = torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous()
        return AvaSample(
            clip=clip,
            boxes=moved,
            labels=torch.from_numpy(labels[keep]) if self.has_labels else None,
            original_boxes=boxes[keep],
            from_gt=from_gt[keep],
            scores=scores[keep],
            video_id=video_id,
            timestamp=timestamp,
            frame_index=center,
            frame_indices=indices,
            original_size=original_size,
        )
