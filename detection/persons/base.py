"""The person-detector interface shared by every backend (torchvision, Detectron2, precomputed boxes).

A detector takes a batch of RGB frames (H×W×3 uint8) and returns, per frame, the people found:
normalized ``x1, y1, x2, y2`` boxes and scores, highest score first, after the common filters (score
threshold, minimum box size, at most ``max_people``). Backends only implement ``_detect_pixels``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detection.structures import as_boxes, clip_boxes, normalize_boxes

__all__ = ["DetectorSettings", "PersonDetections", "PersonDetector", "filter_people"]


@dataclass(frozen=True)
class DetectorSettings:
    """Filters and batching common to every backend.

    score_threshold: keep people scoring at least this. min_box_size: minimum box height, as a
    fraction of the frame height (0 keeps all). max_people: keep at most this many per frame, by score.
    batch_size: frames per forward pass. device: "auto" (CUDA when available), "cpu" or "cuda[:k]".
    """

    score_threshold: float = 0.5
    min_box_size: float = 0.0
    max_people: int = 100
    batch_size: int = 4
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.min_box_size < 1.0:
            raise ValueError(f"min_box_size must be in [0, 1), got {self.min_box_size}")
        if self.max_people < 1 or self.batch_size < 1:
            raise ValueError(f"max_people and batch_size must be >= 1, got {self.max_people}, {self.batch_size}")


@dataclass
class PersonDetections:
    """The people on one frame: boxes (N, 4) normalized xyxy float32, scores (N,) float32, best first.

    keypoints: (N, K, 3) normalized x, y and a confidence, for backends that predict them, else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = as_boxes(self.boxes, "PersonDetections.boxes")
        self.scores = np.ascontiguousarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.scores) != len(self.boxes):
            raise ValueError(f"PersonDetections: {len(self.boxes)} boxes but {len(self.scores)} scores")
        if self.keypoints is not None:
            self.keypoints = np.ascontiguousarray(self.keypoints, dtype=np.float32)
            if self.keypoints.ndim != 3 or self.keypoints.shape[0] != len(self.boxes):
                raise ValueError(f"PersonDetections.keypoints: expected (N, K, 3), got {self.keypoints.shape}")

    def __len__(self) -> int:
        return len(self.boxes)


def filter_people(
    boxes_px: np.ndarray,
    scores: np.ndarray,
    width: int,
    height: int,
    settings: DetectorSettings,
    keypoints_px: np.ndarray | None = None,
) -> PersonDetections:
    """Pixel boxes of one frame → normalized, clipped, filtered, sorted ``PersonDetections``.

    Keypoints (N, K, 3) in pixels are normalized alongside (x / width, y / height, confidence kept).
    """
    boxes = clip_boxes(normalize_boxes(np.asarray(boxes_px, np.float32).reshape(-1, 4), width, height))
    scores = np.asarray(scores, np.float32).reshape(-1)
    keep = scores >= settings.score_threshold
    if settings.min_box_size > 0:
        keep &= (boxes[:, 3] - boxes[:, 1]) >= settings.min_box_size
    order = np.flatnonzero(keep)
    order = order[np.argsort(-scores[order], kind="stable")][: settings.max_people]
    kps = None
    if keypoints_px is not None:
        kps = np.asarray(keypoints_px, np.float32)[order].copy()
        kps[..., 0] /= width
        kps[..., 1] /= height
    return PersonDetections(boxes[order], scores[order], kps)


class PersonDetector(ABC):
    """Frames in, people out. Subclasses implement :meth:`_detect_pixels` on one batch."""

    name: str = "detector"

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()

    @abstractmethod
    def _detect_pixels(
        self, frames: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Raw person detections per frame: (pixel boxes (N, 4), scores (N,), keypoints (N, K, 3) or None)."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[PersonDetections]:
        """People on each frame (H×W×3 uint8 RGB, any sizes), in ``settings.batch_size`` batches."""
        for i, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
                raise ValueError(f"{self.name}: frame {i} must be an H×W×3 uint8 RGB array, got {got}")
        out: list[PersonDetections] = []
        step = self.settings.batch_size
        for start in range(0, len(frames), step):
            batch = frames[start : start + step]
            for frame, (boxes, scores, kps) in zip(batch, self._detect_pixels(batch), strict=True):
                height, width = frame.shape[:2]
                out.append(filter_people(boxes, scores, width, height, self.settings, kps))
        return out

    __call__ = detect
