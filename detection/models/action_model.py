"""The action model: a video backbone, the RoI action head, the label map and the input contract.

``ActionModel.forward(clips, boxes)`` takes normalized float clips (B, 3, T, H, W) and one tensor of
normalized ``x1, y1, x2, y2`` person boxes per clip, and returns logits (N_total, C) whose column ``k`` is
the action ``label_map.ids[k]``. ``predict`` returns probabilities (bf16 autocast on CUDA, fp32 on CPU).
Turning frames into clips: :func:`preprocess` only scales, normalises and permutes; sampling frames
(``num_frames`` every ``sampling_rate``) and resizing the short side belong to the data code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from detection.config import ModelConfig
from detection.models.roi_head import RoIActionHead, action_loss
from detection.structures import LabelMap

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "ActionModel",
    "InputSpec",
    "build_action_model",
    "encode_targets",
    "predict_probabilities",
    "preprocess",
]

# The normalisation of PySlowFast / pytorchvideo / torchvision's MViT Kinetics weights (RGB in [0, 1]).
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What a model expects of a clip.

    ``num_frames`` frames, ``sampling_rate`` source frames apart (the "16x4" of a recipe); frames resized
    so that their short side is ``short_side`` pixels (aspect kept); RGB scaled to [0, 1], then
    ``(x - mean) / std`` per channel. ``size``: the ``(H, W)`` the model was built and measured for.
    """

    num_frames: int
    sampling_rate: int
    short_side: int
    size: tuple[int, int]
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.sampling_rate < 1 or self.short_side < 1 or min(self.size) < 1:
            raise ValueError(f"InputSpec: frames, sampling rate and sizes must be >= 1, got {self}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"InputSpec: mean and std need 3 values each, std > 0; got {self.mean}, {self.std}")

    @property
    def window(self) -> int:
        """Source frames spanned by one clip."""
        return self.num_frames * self.sampling_rate

    def describe(self) -> str:
        """``16x4, short side 224``."""
        return f"{self.num_frames}x{self.sampling_rate}, short side {self.short_side}"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def preprocess(
    frames: np.ndarray | Tensor,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> Tensor:
    """uint8 RGB frames (T, H, W, 3) -> float32 clip (3, T, H, W), or (B, T, H, W, 3) -> (B, 3, T, H, W).

    Values are scaled to [0, 1] and normalised per channel: ``(x / 255 - mean) / std``. No resizing.
    Raises ValueError on another shape or a dtype other than uint8.
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8:
        raise ValueError(f"frames: expected uint8 RGB, got {x.dtype}")
    if x.ndim not in (4, 5) or x.shape[-1] != 3:
        raise ValueError(f"frames: expected shape (T, H, W, 3) or (B, T, H, W, 3), got {tuple(x.shape)}")
    m = torch.tensor(mean, dtype=torch.float32) * 255.0
    s = torch.tensor(std, dtype=torch.float32) * 255.0
    x = (x.float() - m) / s  # channel-last broadcasting
    return x.movedim(-1, -4).contiguous()  # (..., T, H, W, 3) -> (..., 3, T, H, W)


def encode_targets(
    labels: Sequence[Sequence[int]], label_map: LabelMap, activation: str = "sigmoid"
) -> Tensor:
    """Training targets from the label ids of each box (one sequence per box, over all clips).

    ``sigmoid``: (N, C) float multi-hot. ``softmax``: (N,) columns; each box needs exactly one label.
    Ids not in the label map are ignored (AVA's ground truth holds ids outside the evaluated 60).
    """
    if activation == "softmax":
        if any(len(ids) != 1 for ids in labels):
            raise ValueError("softmax targets need exactly one label per box")
        cols = label_map.indices(np.array([ids[0] for ids in labels], dtype=np.int64))
        if (cols < 0).any():
            bad = int(np.array([ids[0] for ids in labels])[cols < 0][0])
            raise ValueError(f"label id {bad} is not in the label map")
        return torch.from_numpy(cols)
    out = torch.zeros(len(labels), len(label_map))
    for row, ids in enumerate(labels):
        cols = label_map.indices(np.asarray(ids, dtype=np.int64).reshape(-1))
        out[row, torch.from_numpy(cols[cols >= 0])] = 1.0
    return out


class ActionModel(nn.Module):
    """Backbone + RoI action head; output column ``k`` is action ``label_map.ids[k]``.

    ``backbone``: a module mapping (B, 3, T, H, W) to (B, C, T', H', W') with attributes ``out_channels``
    and ``feature_stride``. ``config``: the ModelConfig it was built from (None when built by hand).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: RoIActionHead,
        label_map: LabelMap,
        input_spec: InputSpec,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        if head.num_classes != len(label_map):
            raise ValueError(f"head has {head.num_classes} classes but the label map {len(label_map)}")
        if head.in_channels != backbone.out_channels or head.feature_stride != backbone.feature_stride:
            raise ValueError(
                f"head expects {head.in_channels} channels at stride {head.feature_stride}, the backbone gives "
                f"{backbone.out_channels} at stride {backbone.feature_stride}"
            )
        self.backbone, self.head = backbone, head
        self.label_map, self.input_spec, self.config = label_map, input_spec, config
        self.load_report = None  # set by build_action_model when backbone weights were loaded

    @property
    def num_classes(self) -> int:
        return len(self.label_map)

    @property
    def activation(self) -> str:
        return self.head.activation

    def forward(self, clips: Tensor, boxes: Sequence[Tensor | np.ndarray]) -> Tensor:
        """Logits (N_total, C) for normalized clips (B, 3, T, H, W) and normalized xyxy boxes per clip.

        Rows follow the clips, then the boxes within each clip; a clip may have no boxes.
        Raises ValueError on a clip that is not (B, 3, T, H, W) or boxes that do not match it.
        """
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"clips: expected shape (B, 3, T, H, W), got {tuple(clips.shape)}")
        if len(boxes) != clips.shape[0]:
            raise ValueError(f"boxes: expected one box tensor per clip ({clips.shape[0]}), got {len(boxes)}")
        size = (clips.shape[-2], clips.shape[-1])
        if self.head.fine_channels:
            features, fine = self.backbone.forward_fine(clips)
            return self.head(features, boxes, image_size=size, fine=fine)
        return self.head(self.backbone(clips), boxes, image_size=size)

    def scores(self, logits: Tensor) -> Tensor:
        """Logits -> probabilities (sigmoid or softmax, as the head is configured)."""
        return self.head.scores(logits)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """BCE-with-logits (sigmoid head) or cross-entropy (softmax head); see :func:`action_loss`."""
        return action_loss(logits, targets, self.head.activation)

    def predict(self, clips: Tensor, boxes: Sequence[Tensor | np.ndarray]) -> Tensor:
        """Probabilities (N_total, C), float32, without gradients and in eval mode (restored afterwards).

        On CUDA the forward pass runs under bf16 autocast; on CPU in fp32.
        """
        return predict_probabilities(self, clips, boxes)

    def preprocess(self, frames: np.ndarray | Tensor) -> Tensor:
        """uint8 frames (T, H, W, 3) -> normalized clip (3, T, H, W) with this model's mean and std."""
        return preprocess(frames, self.input_spec.mean, self.input_spec.std)


def predict_probabilities(model: nn.Module, clips: Tensor, boxes: Sequence[Tensor | np.ndarray]) -> Tensor:
    """``model.scores(model(clips, boxes))`` in eval mode (restored after), without gradients, as float32.

    Runs under bf16 autocast when the clips are on CUDA. Shared by ActionModel and the pytorchvideo wrapper.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=clips.is_cuda):
            return model.scores(model(clips, boxes).float())
    finally:
        model.train(was_training)


def _fine_channels(backbone: nn.Module) -> int:
    channels = getattr(backbone, "fine_channels", 0)
    if not channels:
        raise ValueError(f"head.fine_features: {type(backbone).__name__} has no stride-8 features to give")
    return channels


def build_action_model(
    cfg: ModelConfig,
    label_map: LabelMap,
    *,
    load_weights: bool = True,
    backbone: nn.Module | None = None,
) -> ActionModel:
    """The ActionModel of ``cfg`` with one output per class of ``label_map`` (in its order).

    The backbone comes from ``detection.models.backbone.build_backbone(cfg.backbone)`` unless one is
    passed. With ``load_weights`` and ``cfg.backbone.weights`` set, its initial weights are loaded through
    ``load_backbone_weights`` (the report is kept as ``model.load_report``); that raises
    ``WeightsUnavailableError`` when they cannot be fetched (offline). The head starts untrained.
    """
    if backbone is None:
        from detection.models.backbone import build_backbone

        backbone = build_backbone(cfg.backbone)
    report = None
    if load_weights and cfg.backbone.weights:
        from detection.models.weights import load_backbone_weights

        report = load_backbone_weights(backbone, cfg.backbone.weights)
    head = RoIActionHead(
        in_channels=backbone.out_channels,
        num_classes=len(label_map),
        feature_stride=backbone.feature_stride,
        roi_size=cfg.head.roi_size,
        dropout=cfg.head.dropout,
        activation=cfg.head.activation,
        fine_channels=_fine_channels(backbone) if cfg.head.fine_features else 0,
        row_bins=cfg.head.row_bins,
    )
    frames, height, width = cfg.backbone.input_size
    spec = InputSpec(num_frames=frames, sampling_rate=cfg.sampling_rate, short_side=min(height, width),
                     size=(height, width))
    model = ActionModel(backbone, head, label_map, spec, config=cfg)
    model.load_report = report
    return model
