"""The RoI action head: per-person action logits from a video feature map and person boxes.

Shape of the computation (the head of SlowFast/MViT AVA detectors, one pathway):

    features (B, C, T', H', W')
      -> average over time                      (B, C, H', W')
      -> RoIAlign per box, roi_size x roi_size  (N, C, S, S)   N = boxes over all clips
      -> max over the S x S cells               (N, C)          (N, C * row_bins) with row_bins
      -> dropout -> linear                      (N, num_classes)  logits

``row_bins`` > 1 takes the max over that many horizontal bands of the cells instead (top to bottom,
adaptive pooling's bins: 2 bands of 7 rows are rows 0-3 and 3-6), so the head knows whether a feature
is at the top or the bottom of the person: a hand above the head, bent knees.

With ``fine_channels`` the head also takes finer features (the backbone's stride-8 tokens): they go
through a LayerNorm over channels (they are not normalized in the backbone), the same temporal average,
RoIAlign and max, and are concatenated to the coarse ones before the dropout and the linear layer.

Boxes come in as the project passes them around: one tensor per clip of normalized ``x1, y1, x2, y2``.
They become pixel boxes of the clip here and nowhere else. RoIAlign runs with ``aligned=True`` and
``spatial_scale = 1 / feature_stride``: feature cell ``i`` covers pixels ``[i * stride, (i + 1) * stride)``,
so pixel ``x`` (continuous coordinates) lands at feature coordinate ``x / stride`` whatever the clip size.
That is exact when the clip is not a multiple of the stride too, as long as the true clip size is given;
deriving it from the feature map (``H' * stride``) is only exact for multiples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import RoIAlign

__all__ = ["RoIActionHead", "action_loss", "boxes_to_pixels"]

Activation = Literal["sigmoid", "softmax"]


def boxes_to_pixels(
    boxes: Sequence[Tensor | np.ndarray], image_size: tuple[int, int], device: torch.device, dtype: torch.dtype
) -> list[Tensor]:
    """Normalized xyxy boxes (one (n_i, 4) array per clip) as pixel boxes of an ``(H, W)`` clip.

    Raises ValueError naming the clip (and box) whose boxes are not an (n, 4) array, not finite, or have
    ``x2 < x1`` or ``y2 < y1`` (RoIAlign would fail deep inside, or silently read garbage on a GPU).
    """
    height, width = image_size
    scale = torch.tensor([width, height, width, height], device=device, dtype=dtype)
    out = []
    for i, b in enumerate(boxes):
        b = torch.as_tensor(b, device=device, dtype=dtype)
        if b.numel() == 0:
            b = b.reshape(0, 4)
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}]: expected shape (n, 4) of normalized x1, y1, x2, y2, got {tuple(b.shape)}")
        out.append(b * scale)
    flat = torch.cat(out) if out else scale.new_zeros(0, 4)
    bad = ~torch.isfinite(flat).all(dim=1) | (flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1])
    if bad.any():  # one device sync per call; the loop below only runs to word the error
        row = int(bad.nonzero()[0, 0])
        for i, b in enumerate(out):
            if row < len(b):
                raise ValueError(f"boxes[{i}][{row}]: expected finite x1 <= x2, y1 <= y2, got "
                                 f"{(b[row] / scale).tolist()}")
            row -= len(b)
    return out


def action_loss(logits: Tensor, targets: Tensor, activation: Activation = "sigmoid") -> Tensor:
    """Mean loss of ``logits`` (N, C) against ``targets``.

    ``sigmoid`` (multi-label, AVA): binary cross-entropy with logits; targets (N, C) multi-hot (or soft) in
    [0, 1]. ``softmax`` (single-label): cross-entropy; targets (N,) integer columns or (N, C) class
    probabilities. With no rows (N = 0) the loss is a zero that still carries a gradient.
    Raises ValueError on shapes that do not match.
    """
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (N, C), got {tuple(logits.shape)}")
    logits = logits.float()  # losses in fp32 also under bf16 autocast
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if activation == "sigmoid":
        if targets.shape != logits.shape:
            raise ValueError(f"targets: expected shape {tuple(logits.shape)} (multi-hot), got {tuple(targets.shape)}")
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
    if targets.ndim == 1:
        if targets.shape[0] != logits.shape[0]:
            raise ValueError(f"targets: expected {logits.shape[0]} class columns, got {targets.shape[0]}")
        return F.cross_entropy(logits, targets.long())
    if targets.shape != logits.shape:
        raise ValueError(f"targets: expected shape ({logits.shape[0]},) or {tuple(logits.shape)}, "
                         f"got {tuple(targets.shape)}")
    return F.cross_entropy(logits, targets.to(logits.dtype))


class RoIActionHead(nn.Module):
    """Action logits for person boxes from a (B, C, T', H', W') feature map with spatial stride ``feature_stride``.

    ``activation`` says how logits become scores (:meth:`scores`) and which loss applies (:meth:`loss`):
    ``sigmoid`` for multi-label actions (AVA), ``softmax`` for one action per person.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feature_stride: int,
        roi_size: int = 7,
        dropout: float = 0.5,
        activation: Activation = "sigmoid",
        fine_channels: int = 0,
        fine_stride: int = 8,
        row_bins: int = 1,
    ) -> None:
        super().__init__()
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
        if in_channels < 1 or num_classes < 1 or feature_stride < 1 or roi_size < 1:
            raise ValueError(
                f"RoIActionHead: in_channels, num_classes, feature_stride and roi_size must be >= 1, got "
                f"{in_channels}, {num_classes}, {feature_stride}, {roi_size}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.feature_stride, self.roi_size, self.activation = feature_stride, roi_size, activation
        self.roi_align = RoIAlign(
            output_size=(roi_size, roi_size), spatial_scale=1.0 / feature_stride, sampling_ratio=0, aligned=True
        )
        self.fine_channels, self.fine_stride, self.row_bins = int(fine_channels), int(fine_stride), int(row_bins)
        if self.fine_channels < 0 or self.fine_stride < 1 or not 1 <= self.row_bins <= roi_size:
            raise ValueError(f"fine_channels must be >= 0, fine_stride >= 1 and row_bins in [1, roi_size], got "
                             f"{fine_channels}, {fine_stride}, {row_bins}")
        if self.fine_channels:
            self.fine_norm = nn.LayerNorm(self.fine_channels)
            self.fine_roi_align = RoIAlign(output_size=(roi_size, roi_size), spatial_scale=1.0 / fine_stride,
                                           sampling_ratio=0, aligned=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.Linear((in_channels + self.fine_channels) * self.row_bins, num_classes)
        # Small initial logits (as PySlowFast initialises its heads): scores start near the prior.
        nn.init.normal_(self.proj.weight, std=0.01)
        nn.init.zeros_(self.proj.bias)

    def pool(
        self,
        features: Tensor,
        boxes: Sequence[Tensor | np.ndarray],
        image_size: tuple[int, int] | None = None,
        fine: Tensor | None = None,
    ) -> Tensor:
        """Per-box features (N, (C [+ fine_channels]) * row_bins) before dropout and the linear layer (see
        :meth:`forward`): the coarse channels, then the fine ones, each channel's bands top to bottom."""
        if features.ndim != 5:
            raise ValueError(f"features: expected shape (B, C, T, H, W), got {tuple(features.shape)}")
        if features.shape[1] != self.in_channels:
            raise ValueError(f"features: expected {self.in_channels} channels, got {features.shape[1]}")
        if len(boxes) != features.shape[0]:
            raise ValueError(f"boxes: expected one box tensor per clip ({features.shape[0]}), got {len(boxes)}")
        if (fine is not None) != (self.fine_channels > 0):
            raise ValueError(f"fine: this head takes {self.fine_channels or 'no'} fine channels, got "
                             f"{'none' if fine is None else tuple(fine.shape)}")
        if image_size is None:
            image_size = (features.shape[-2] * self.feature_stride, features.shape[-1] * self.feature_stride)
        pooled = self._roi_max(self.roi_align, features.mean(dim=2), boxes, image_size, self.row_bins)
        if fine is not None:
            if fine.ndim != 5 or fine.shape[0] != features.shape[0] or fine.shape[1] != self.fine_channels:
                raise ValueError(f"fine: expected shape ({features.shape[0]}, {self.fine_channels}, T, H, W), "
                                 f"got {tuple(fine.shape)}")
            frame = self.fine_norm(fine.mean(dim=2).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            fine_pooled = self._roi_max(self.fine_roi_align, frame, boxes, image_size, self.row_bins)
            pooled = torch.cat((pooled, fine_pooled), dim=1)
        return pooled if torch.is_autocast_enabled(pooled.device.type) else pooled.to(features.dtype)

    @staticmethod
    def _roi_max(align: RoIAlign, frame: Tensor, boxes: Sequence[Tensor | np.ndarray],
                 image_size: tuple[int, int], row_bins: int) -> Tensor:
        """RoIAlign of each box on a (B, C, H, W) map, then the max over its cells, per band of rows:
        (N, C * row_bins)."""
        # RoIAlign runs in fp32 (fp64 stays fp64): its CPU kernel has no bf16, and bf16's 8-bit mantissa is
        # too coarse for pixel coordinates. Under autocast the linear layer casts back down.
        work = frame if frame.dtype == torch.float64 else frame.float()
        regions = align(work, boxes_to_pixels(boxes, image_size, work.device, work.dtype))
        if row_bins == 1:
            return regions.amax(dim=(-2, -1))
        return F.adaptive_max_pool2d(regions, (row_bins, 1)).flatten(1)

    def forward(
        self,
        features: Tensor,
        boxes: Sequence[Tensor | np.ndarray],
        image_size: tuple[int, int] | None = None,
        fine: Tensor | None = None,
    ) -> Tensor:
        """Logits (N_total, num_classes): rows follow the clips, then the boxes within each clip.

        ``boxes``: one (n_i, 4) tensor per clip of normalized ``x1, y1, x2, y2`` (n_i may be 0).
        ``image_size``: ``(H, W)`` in pixels of the clip the features come from; None derives it as the
        feature size times the stride (exact only when the clip is a multiple of the stride).
        ``fine``: the (B, fine_channels, T', H'', W'') finer features, exactly when ``fine_channels`` > 0.
        Raises ValueError on inconsistent shapes.
        """
        return self.proj(self.dropout(self.pool(features, boxes, image_size, fine)))

    def scores(self, logits: Tensor) -> Tensor:
        """Logits -> probabilities: per-class sigmoid, or softmax over the classes."""
        return torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=-1)

    def predict(
        self,
        features: Tensor,
        boxes: Sequence[Tensor | np.ndarray],
        image_size: tuple[int, int] | None = None,
        fine: Tensor | None = None,
    ) -> Tensor:
        """Probabilities (N_total, num_classes): :meth:`forward` followed by :meth:`scores`."""
        return self.scores(self.forward(features, boxes, image_size, fine))

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The loss that goes with this head's activation (see :func:`action_loss`)."""
        return action_loss(logits, targets, self.activation)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}, fine_channels={self.fine_channels}, row_bins={self.row_bins}"
