"""One person detector from the ``detector`` section of a config.

``backend`` picks the class, written out below rather than registered: ``torchvision`` →
:class:`TorchvisionDetector` (``model`` names the architecture, ``weights`` the weights), ``precomputed`` →
:class:`PrecomputedBoxes` (``model`` is the box file), ``detectron2`` → ``Detectron2Detector``, imported
only when asked for because Detectron2 is an optional install.
"""

from __future__ import annotations

import dataclasses

from detection.config import DetectorConfig
from detection.persons.base import DetectorSettings, PersonDetector

__all__ = ["BackendUnavailableError", "DETECTRON2_INSTALL", "build_detector", "detector_settings"]

DETECTRON2_INSTALL = "run `make detectron2` (or `python scripts/install_detectron2.py`), see README"
# PySlowFast's demo detector; used when the config still names the torchvision default model.
DETECTRON2_DEFAULT_MODEL = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"


class BackendUnavailableError(ImportError):
    """The chosen backend's optional dependency is not installed."""


def detector_settings(cfg: DetectorConfig) -> DetectorSettings:
    """The filters and batching of a detector config. Raises ValueError for out-of-range values."""
    return DetectorSettings(
        score_threshold=cfg.score_threshold,
        min_box_size=cfg.min_box_size,
        max_people=cfg.max_people,
        batch_size=cfg.batch_size,
        device=cfg.device,
    )


def build_detector(cfg: DetectorConfig, *, progress: bool = True) -> PersonDetector:
    """The detector ``cfg`` describes, ready to run (weights loaded, on its device).

    Raises ValueError for an unknown backend or model, BackendUnavailableError when Detectron2 is asked for
    but not installed, and what the backend raises for weights (WeightsUnavailableError offline,
    FileNotFoundError, WeightsLoadError).
    """
    settings = detector_settings(cfg)
    if cfg.backend == "torchvision":
        from detection.persons.torchvision_backend import TorchvisionDetector

        return TorchvisionDetector(cfg.model, cfg.weights, settings, progress=progress)
    if cfg.backend == "precomputed":
        from detection.persons.precomputed import PrecomputedBoxes

        return PrecomputedBoxes(cfg.model, settings)
    if cfg.backend == "detectron2":
        try:
            from detection.persons.detectron2_backend import Detectron2Detector

            if cfg.model == DetectorConfig().model:
                cfg = dataclasses.replace(cfg, model=DETECTRON2_DEFAULT_MODEL)
            return Detectron2Detector(cfg, progress=progress)
        except ImportError as err:
            root = err  # the import that failed, under any wrapping error
            while isinstance(root.__cause__, ImportError):
                root = root.__cause__
            missing = root.name or ""
            if missing.startswith("detection.") and missing != "detection.persons.detectron2_backend":
                raise  # a bug in our own imports, not a missing install
            raise BackendUnavailableError(
                f"the detectron2 person detector needs Detectron2, which cannot be imported here "
                f"({missing or root}): {DETECTRON2_INSTALL}"
            ) from err
    raise ValueError(f"unknown detector backend {cfg.backend!r}; expected torchvision, detectron2 or precomputed")
