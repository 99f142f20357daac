"""pytorchvideo's AVA-trained detectors behind the ActionModel interface.

``slowfast_r50_detection`` (SlowFast R50, 32x2 input, alpha 4) and ``slow_r50_detection`` (Slow R50,
4x16 input) from ``pytorchvideo.models.hub``: Kinetics-400 pretrained, fine-tuned on AVA v2.2, 80 outputs.
The wrapper takes what every model of this project takes, normalized clips (B, 3, T, H, W) and one tensor
of normalized ``x1, y1, x2, y2`` boxes per clip, and does the rest the way these models were trained:

- pathways: SlowFast gets ``[slow, fast]``, the slow pathway being ``T / alpha`` frames picked evenly from
  the clip (``linspace(0, T - 1, T // alpha)``, as pytorchvideo's AVA tutorial and PySlowFast do);
- boxes: one (N, 5) tensor ``batch_index, x1, y1, x2, y2`` in pixels of the clip;
- normalisation: RGB in [0, 1], mean 0.45, std 0.225 (the same as ours), short side 256;
- outputs: their head ends in a sigmoid; the wrapper removes it so that ``forward`` returns logits and
  ``predict`` probabilities, as ActionModel does. Column ``k`` is AVA action ``k + 1``
  (``configs/ava/ava_action_list_v2.2.pbtxt``).

Their heads average a fixed number of frames (8 slow / 32 fast, or 4), so clips must have exactly
``input_spec.num_frames`` frames; any H x W runs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor, nn

from detection.config import shipped_file
from detection.models.action_model import InputSpec, predict_probabilities, preprocess
from detection.models.roi_head import action_loss, boxes_to_pixels
from detection.models.weights import DOWNLOAD_TIMEOUT_S, WeightsUnavailableError, read_checkpoint, socket_timeout
from detection.structures import LabelMap

__all__ = [
    "AVA_LABEL_MAP",
    "PYTORCHVIDEO_AVA",
    "AvaVariant",
    "PytorchVideoAvaModel",
    "ava_label_map",
    "build_pytorchvideo_ava",
]

ZOO_ROOT = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo"
AVA_LABEL_MAP = "ava/ava_action_list_v2.2.pbtxt"  # relative to the shipped configs folder
AVA_EVALUATED = "ava/ava_action_list_v2.1_for_activitynet_2018.pbtxt"  # the 60 classes of the benchmark


@dataclass(frozen=True)
class AvaVariant:
    """One of pytorchvideo's AVA detectors: its hub builder, weights and input contract.

    ``alpha``: frame-rate ratio between the fast and the slow pathway (None: a single pathway).
    """

    name: str
    builder: str  # function name in pytorchvideo.models.hub
    url: str
    input_spec: InputSpec
    alpha: int | None


# Input contracts: pytorchvideo's AVA tutorial (tutorial_torchhub_detection_inference.md) feeds 4 frames to
# slow_r50_detection and 32 frames with alpha 4 to slowfast_r50_detection, short side 256, mean 0.45,
# std 0.225. The sampling rates are those of the recipes in the names (Slow 4x16; SlowFast 8x8 =
# 8 slow frames every 8 = 32 fast frames every 2); the heads' temporal pools fix the frame counts.
PYTORCHVIDEO_AVA: dict[str, AvaVariant] = {
    "slowfast_r50_detection": AvaVariant(
        name="slowfast_r50_detection",
        builder="slowfast_r50_detection",
        url=f"{ZOO_ROOT}/ava/SLOWFAST_8x8_R50_DETECTION.pyth",
        input_spec=InputSpec(num_frames=32, sampling_rate=2, short_side=256, size=(256, 256)),
        alpha=4,
    ),
    "slow_r50_detection": AvaVariant(
        name="slow_r50_detection",
        builder="slow_r50_detection",
        url=f"{ZOO_ROOT}/ava/SLOW_4x16_R50_DETECTION.pyth",
        input_spec=InputSpec(num_frames=4, sampling_rate=16, short_side=256, size=(256, 256)),
        alpha=None,
    ),
}


def ava_label_map() -> LabelMap:
    """AVA v2.2's 80 actions in id order (the column order of these models), the benchmark's 60 evaluated."""
    full = LabelMap.from_pbtxt(shipped_file(AVA_LABEL_MAP))
    evaluated = LabelMap.from_pbtxt(shipped_file(AVA_EVALUATED))
    return LabelMap(full.ids, full.names, evaluated=frozenset(evaluated.ids), label_types=full.label_types)


class PytorchVideoAvaModel(nn.Module):
    """A pytorchvideo AVA detector with ActionModel's interface (forward -> logits, predict -> scores)."""

    activation = "sigmoid"

    def __init__(self, variant: AvaVariant, net: nn.Module, label_map: LabelMap) -> None:
        super().__init__()
        head = net.detection_head
        if head.proj.out_features != len(label_map):
            raise ValueError(f"{variant.name}: {head.proj.out_features} outputs but {len(label_map)} labels")
        head.activation = None  # logits out; predict() applies the sigmoid
        self.net, self.variant, self.label_map = net, variant, label_map
        self.input_spec = variant.input_spec
        self.feature_stride = round(1.0 / head.roi_layer.spatial_scale)
        self.load_report = None
        self.config = {"name": f"pytorchvideo/{variant.name}", "pytorchvideo": variant.name}

    @property
    def num_classes(self) -> int:
        return len(self.label_map)

    def pathways(self, clips: Tensor) -> Tensor | list[Tensor]:
        """The network's input: the clip itself, or ``[slow, fast]`` for SlowFast."""
        if self.variant.alpha is None:
            return clips
        frames = clips.shape[2]
        index = torch.linspace(0, frames - 1, frames // self.variant.alpha, device=clips.device).long()
        return [clips.index_select(2, index), clips]

    def forward(self, clips: Tensor, boxes: Sequence[Tensor | np.ndarray]) -> Tensor:
        """Logits (N_total, 80) for normalized clips (B, 3, T, H, W) and normalized xyxy boxes per clip.

        Raises ValueError when T is not ``input_spec.num_frames`` or the boxes do not match the clips.
        """
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"clips: expected shape (B, 3, T, H, W), got {tuple(clips.shape)}")
        if clips.shape[2] != self.input_spec.num_frames:
            raise ValueError(
                f"{self.variant.name}: expected clips of {self.input_spec.num_frames} frames "
                f"({self.input_spec.describe()}), got {clips.shape[2]}"
            )
        if len(boxes) != clips.shape[0]:
            raise ValueError(f"boxes: expected one box tensor per clip ({clips.shape[0]}), got {len(boxes)}")
        pixel = boxes_to_pixels(boxes, (clips.shape[-2], clips.shape[-1]), clips.device, torch.float32)
        index = torch.cat([torch.full((len(b), 1), float(i), device=clips.device) for i, b in enumerate(pixel)])
        rois = torch.cat([index, torch.cat(pixel)], dim=1)  # (N, 5): batch index, x1, y1, x2, y2
        if len(rois) == 0:  # their head reshapes with view(N, -1), which fails on zero rows
            return clips.new_zeros((0, self.num_classes))
        return self.net(self.pathways(clips), rois.to(clips.dtype))

    def scores(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return action_loss(logits, targets, "sigmoid")

    def predict(self, clips: Tensor, boxes: Sequence[Tensor | np.ndarray]) -> Tensor:
        """Probabilities (N_total, 80), float32, eval mode and no gradients; bf16 autocast on CUDA."""
        return predict_probabilities(self, clips, boxes)

    def preprocess(self, frames: np.ndarray | Tensor) -> Tensor:
        return preprocess(frames, self.input_spec.mean, self.input_spec.std)


def _hub_builder(name: str):
    with warnings.catch_warnings():  # pytorchvideo's import warns about torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        import pytorchvideo.models.hub as hub
    return getattr(hub, name)


def _download_state(variant: AvaVariant, progress: bool) -> dict:
    """The checkpoint at ``variant.url`` through torch.hub's cache; WeightsUnavailableError when offline.

    Like the backbone weights, a stalled connection gives up after ``DOWNLOAD_TIMEOUT_S`` seconds.
    """
    file_name = Path(urlparse(variant.url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            return torch.hub.load_state_dict_from_url(variant.url, map_location="cpu", progress=progress,
                                                      weights_only=True)
    except OSError as err:  # URLError, HTTPError, time-outs, refused connections
        raise WeightsUnavailableError(
            f"cannot download the {variant.name} weights from {variant.url}: {err}. Without network access, "
            f"download that file on another machine (e.g. `curl -LO {variant.url}`) and pass its local path: "
            f"build_pytorchvideo_ava({variant.name!r}, checkpoint='/path/to/{file_name}') or `actdet model convert "
            f"/path/to/{file_name} --config pytorchvideo/{variant.name} --out model.pt`; or copy it to {cached} "
            f"where torch.hub finds it."
        ) from err


def build_pytorchvideo_ava(
    name: str,
    pretrained: bool = False,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> PytorchVideoAvaModel:
    """pytorchvideo's AVA detector ``name`` (``slowfast_r50_detection`` or ``slow_r50_detection``).

    ``pretrained``: download the published AVA weights (torch.hub cache); ``checkpoint``: load them from a
    local ``.pyth`` file instead (pytorchvideo's file, ``{"model_state": ...}``, or a bare state dict).
    Neither: random initialisation. Raises KeyError for an unknown name, WeightsUnavailableError when the
    download is impossible (the message gives the URL and the manual alternative), ValueError on a file
    whose weights do not fit the architecture.
    """
    name = name.removeprefix("pytorchvideo/")
    if name not in PYTORCHVIDEO_AVA:
        raise KeyError(f"unknown pytorchvideo AVA model {name!r}; known: {', '.join(PYTORCHVIDEO_AVA)}")
    variant = PYTORCHVIDEO_AVA[name]
    net = _hub_builder(variant.builder)(pretrained=False)
    if checkpoint is not None or pretrained:
        source = str(checkpoint) if checkpoint is not None else variant.url
        if checkpoint is not None:
            state, _ = read_checkpoint(checkpoint)  # weights_only=True; unwraps "model_state" / "model"
        else:
            state = _download_state(variant, progress)
            state = state.get("model_state", state)
        if state and all(k.startswith("net.") for k in state):  # our checkpoint of this wrapper
            state = {k.removeprefix("net."): v for k, v in state.items()}
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ValueError(f"{source}: not weights of {name}: {str(err)[:500]}") from None
    return PytorchVideoAvaModel(variant, net, ava_label_map())
