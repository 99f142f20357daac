"""Person detection with torchvision's COCO detectors: Faster R-CNN (ResNet-50 FPN v2, MobileNetV3 FPN) and
Keypoint R-CNN (ResNet-50 FPN, 17 COCO keypoints).

Weights, in :class:`TorchvisionDetector`'s ``weights`` argument:

- ``None`` or ``"default"``: the model's published COCO weights (torchvision's ``..._Weights.DEFAULT``; URL,
  box mAP in :data:`MODELS`), downloaded once into torch.hub's cache. Offline the download gives up within
  ``DOWNLOAD_TIMEOUT_S`` seconds with :class:`WeightsUnavailableError`, which names the URL and the manual way.
- a local file: a state dict of the same architecture (or one under ``"model"``, ``"state_dict"`` or
  ``"model_state"``), read with ``torch.load(..., weights_only=True)``. Fine-tuned models may have other
  class counts (read from the file); class 1 must be the person.
- ``"random"``: random initialisation, for tests and speed benchmarks only (its boxes mean nothing).

Only the person class (COCO label 1) is kept, inside the model: the box head's post-processing is narrowed
to that class (score threshold, NMS and the per-image limit apply to people alone, so other classes can
neither crowd people out nor cost time). Frames go through in batches of ``settings.batch_size``, in eval
mode under ``torch.inference_mode``; on CUDA under bf16 autocast, with box regressions decoded in float32
(bf16 cannot address single pixels at HD sizes).
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models import detection as tvd
from torchvision.ops import boxes as box_ops

from detection.device import resolve_device
from detection.models.weights import DOWNLOAD_TIMEOUT_S, WeightsLoadError, WeightsUnavailableError, socket_timeout
from detection.persons.base import DetectorSettings, PersonDetector

__all__ = ["MODELS", "PERSON_LABEL", "TorchvisionDetector", "TorchvisionModel"]

PERSON_LABEL = 1  # COCO's "person" in torchvision's 91-class (and Keypoint R-CNN's 2-class) numbering


@dataclass(frozen=True)
class TorchvisionModel:
    """A torchvision detector we can run: its builder and its COCO weights enum (URL and metrics inside)."""

    name: str
    builder: Callable[..., nn.Module]
    weights: Any  # torchvision WeightsEnum class; ``.DEFAULT`` is what "default" downloads
    keypoints: bool = False

    @property
    def url(self) -> str:
        return self.weights.DEFAULT.url

    @property
    def box_map(self) -> float:
        """COCO val2017 box mAP as torchvision reports it."""
        return self.weights.DEFAULT.meta["_metrics"]["COCO-val2017"]["box_map"]


MODELS: dict[str, TorchvisionModel] = {
    m.name: m
    for m in (
        TorchvisionModel("fasterrcnn_resnet50_fpn_v2", tvd.fasterrcnn_resnet50_fpn_v2,
                         tvd.FasterRCNN_ResNet50_FPN_V2_Weights),
        TorchvisionModel("fasterrcnn_mobilenet_v3_large_fpn", tvd.fasterrcnn_mobilenet_v3_large_fpn,
                         tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights),
        TorchvisionModel("keypointrcnn_resnet50_fpn", tvd.keypointrcnn_resnet50_fpn,
                         tvd.KeypointRCNN_ResNet50_FPN_Weights, keypoints=True),
    )
}


def _person_postprocess(
    self: tvd.roi_heads.RoIHeads,
    class_logits: Tensor,
    box_regression: Tensor,
    proposals: list[Tensor],
    image_shapes: list[tuple[int, int]],
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """``RoIHeads.postprocess_detections`` for the person class alone (bound to a model's ``roi_heads``).

    Per image: person probability (softmax over all classes, as trained), the person box decoded from its
    proposal and clipped, then score >= ``score_thresh`` and height >= ``min_height_frac`` of the image,
    boxes of width or height under 0.01 px dropped, NMS at ``nms_thresh``, the best ``detections_per_img``.
    """
    num_classes = class_logits.shape[-1]
    scores = torch.softmax(class_logits.float(), -1)[:, PERSON_LABEL]
    deltas = box_regression.float().reshape(len(box_regression), num_classes, 4)[:, PERSON_LABEL]
    boxes = self.box_coder.decode(deltas, proposals).reshape(-1, 4)
    out_boxes, out_scores, out_labels = [], [], []
    for b, s, shape in zip(boxes.split([len(p) for p in proposals]), scores.split([len(p) for p in proposals]),
                           image_shapes, strict=True):
        b = box_ops.clip_boxes_to_image(b, shape)
        keep = s >= self.score_thresh
        if self.min_height_frac > 0:
            keep &= (b[:, 3] - b[:, 1]) >= self.min_height_frac * shape[0]
        b, s = b[keep], s[keep]
        keep = box_ops.remove_small_boxes(b, min_size=1e-2)
        b, s = b[keep], s[keep]
        keep = box_ops.nms(b, s, self.nms_thresh)[: self.detections_per_img]  # sorted by score
        out_boxes.append(b[keep])
        out_scores.append(s[keep])
        out_labels.append(torch.full((len(keep),), PERSON_LABEL, dtype=torch.int64, device=b.device))
    return out_boxes, out_scores, out_labels


def _outputs_to_float(module: nn.Module, inputs: Any, output: Any) -> Any:
    """Forward hook: a head's tensors (or lists/tuples of them) back in float32 under autocast."""
    if isinstance(output, Tensor):
        return output.float()
    if isinstance(output, list | tuple):
        return type(output)(_outputs_to_float(module, inputs, o) for o in output)
    return output


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"detector weights {path} not found (use 'default' for the published COCO weights)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for non-tensor objects, RuntimeError/EOFError for broken files
        raise WeightsLoadError(
            f"{path}: not a readable state dict (read with torch.load(weights_only=True), which refuses "
            f"arbitrary objects): {err}"
        ) from None
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsLoadError(f"{path}: expected a state dict (a mapping of tensors)")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _shown(keys: list[str]) -> str:
    return (", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")) or "none"


class TorchvisionDetector(PersonDetector):
    """A torchvision COCO detector that returns people.

    model: a key of :data:`MODELS`. weights: None/"default" (published COCO weights, downloaded), a local
    file, or "random" (tests and benchmarks only). min_size / max_size: the model's own resize of each
    frame (short side, long-side cap, pixels; torchvision's defaults 800 / 1333). model_kwargs: more
    arguments for the torchvision builder (e.g. ``rpn_post_nms_top_n_test``). ``progress``: download bar.
    Keypoint R-CNN also returns 17 keypoints per person (x, y normalized; confidence = torchvision's
    keypoint score, a heatmap logit). Raises ValueError for an unknown model, WeightsUnavailableError when
    the published weights cannot be downloaded, FileNotFoundError / WeightsLoadError for a bad file.
    """

    name = "torchvision"

    def __init__(
        self,
        model: str = "fasterrcnn_resnet50_fpn_v2",
        weights: str | os.PathLike | None = None,
        settings: DetectorSettings | None = None,
        *,
        min_size: int = 800,
        max_size: int = 1333,
        model_kwargs: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(settings)
        if model not in MODELS:
            raise ValueError(f"unknown torchvision person detector {model!r}; known: {', '.join(MODELS)}")
        self.spec = MODELS[model]
        self.device = resolve_device(self.settings.device)
        self.weights = "default" if weights is None else os.fspath(weights)
        kwargs = {"min_size": min_size, "max_size": max_size, **(model_kwargs or {})}
        self.model = self._build(kwargs, progress).eval().to(self.device)
        self.model.requires_grad_(False)
        self._narrow_to_people()

    # -- building ----------------------------------------------------------------------------------
    def _build(self, kwargs: dict[str, Any], progress: bool) -> nn.Module:
        spec = self.spec
        if self.weights == "random":
            return spec.builder(weights=None, weights_backbone=None, **kwargs)
        if self.weights == "default":
            weights = spec.weights.DEFAULT
            try:
                with socket_timeout(DOWNLOAD_TIMEOUT_S):
                    return spec.builder(weights=weights, progress=progress, **kwargs)
            except OSError as err:  # URLError, HTTPError, time-outs, refused connections
                target = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
                raise WeightsUnavailableError(
                    f"cannot download the COCO weights of {spec.name} from {weights.url}: {err}. Without network "
                    f"access, download that file on another machine (e.g. `curl -LO {weights.url}`) and pass its "
                    f"local path as the detector weights (--weights /path/to/{Path(weights.url).name}, or "
                    f"detector.weights in the config), or copy it to {target} where torch.hub finds it."
                ) from err
        path = Path(self.weights).expanduser()
        state = _read_state_dict(path)
        extra: dict[str, Any] = {}
        cls = state.get("roi_heads.box_predictor.cls_score.weight")
        if cls is not None:
            extra["num_classes"] = cls.shape[0]
        kps = state.get("roi_heads.keypoint_predictor.kps_score_lowres.weight")
        if spec.keypoints and kps is not None:
            extra["num_keypoints"] = kps.shape[1]
        model = spec.builder(weights=None, weights_backbone=None, **extra, **kwargs)
        result = model.load_state_dict(state, strict=False)
        # Without published weights the builders use BatchNorm (with a batch counter) where the published
        # models use frozen BatchNorm; in eval mode both compute the same, the counter is unused.
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise WeightsLoadError(
                f"{path}: does not fit {spec.name}: {len(missing)} missing keys ({_shown(missing)}), "
                f"{len(result.unexpected_keys)} unexpected ({_shown(result.unexpected_keys)})"
            )
        return model

    def _narrow_to_people(self) -> None:
        """Person-only post-processing with our threshold and limits; head outputs in float32."""
        heads = self.model.roi_heads
        heads.postprocess_detections = types.MethodType(_person_postprocess, heads)
        heads.score_thresh = self.settings.score_threshold
        heads.min_height_frac = self.settings.min_box_size
        # After the threshold and height filter, the best max_people are exactly what filter_people keeps.
        heads.detections_per_img = self.settings.max_people
        for head in (self.model.rpn.head, heads.box_predictor, getattr(heads, "keypoint_predictor", None)):
            if head is not None:
                head.register_forward_hook(_outputs_to_float)

    # -- running -----------------------------------------------------------------------------------
    def _detect_pixels(
        self, frames: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        cuda = self.device.type == "cuda"
        # uint8 to the device, then to float there: a quarter of the bytes through PCIe.
        images = [
            torch.from_numpy(np.ascontiguousarray(f)).to(self.device, non_blocking=cuda).permute(2, 0, 1).float()
            / 255.0
            for f in frames
        ]
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            outputs = self.model(images)
        return [self._people(out) for out in outputs]

    @staticmethod
    def _people(out: Mapping[str, Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One image's output dict → person pixel boxes, scores and (N, K, 3) keypoints (x, y, score) or None."""
        keep = out["labels"] == PERSON_LABEL
        boxes = out["boxes"][keep].float().cpu().numpy()
        scores = out["scores"][keep].float().cpu().numpy()
        keypoints = None
        if "keypoints" in out:
            xy = out["keypoints"][keep][..., :2].float()
            conf = out["keypoints_scores"][keep].float()[..., None]
            keypoints = torch.cat([xy, conf], dim=-1).cpu().numpy()
        return boxes, scores, keypoints
