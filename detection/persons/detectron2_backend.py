"""Person detection with Detectron2: any model-zoo config (PySlowFast's demo uses Faster R-CNN R50-FPN 3x).

Detectron2 is not on PyPI; ``make detectron2`` (``python scripts/install_detectron2.py``) installs it.
Importing this module never needs it; constructing a detector without it raises
:class:`Detectron2NotInstalledError` with those instructions.

The model is addressed like Detectron2 addresses it:

- ``model``: a model-zoo config name (``COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml``,
  ``COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml``, ...) or a local ``.yaml`` config file;
- ``weights``: ``None`` for the zoo's COCO weights (``model_zoo.get_checkpoint_url``; for a config file,
  its own ``MODEL.WEIGHTS``), a local ``.pkl`` (Detectron2 zoo format, read by a pickle loader that only
  accepts numpy arrays) or ``.pth`` file (``torch.load(weights_only=True)``), an ``http(s)://`` or
  ``detectron2://`` URL, or ``"random"`` (random init: tests and benchmarks only).

Downloads go to torch.hub's cache (``torch.hub.get_dir()/checkpoints/detectron2/...``); offline they fail
within ``DOWNLOAD_TIMEOUT_S`` with :class:`~detection.models.weights.WeightsUnavailableError`, which
names the URL and the manual way (download elsewhere, pass the local file as ``detector.weights``).

Frames (RGB uint8) are converted to the config's ``INPUT.FORMAT`` (BGR for the zoo models), resized with
the config's test-time short-edge transform (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``, as
``DefaultPredictor`` does) and run as one list-of-dicts batch per ``batch_size`` frames; the model
returns boxes in the original frame's pixels, of which only the person class (COCO class 0 in
Detectron2's contiguous ids) is kept.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import urllib.parse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detection.config import DetectorConfig
from detection.models.weights import DOWNLOAD_TIMEOUT_S, WeightsLoadError, WeightsUnavailableError, socket_timeout
from detection.persons.base import DetectorSettings, PersonDetector

__all__ = ["DEFAULT_MODEL", "Detectron2Detector", "Detectron2NotInstalledError", "detectron2_available"]

DEFAULT_MODEL = "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"  # PySlowFast's DEMO.DETECTRON2_CFG
PERSON_CLASS = 0  # "person" in Detectron2's contiguous COCO class ids
ZOO_URL_PREFIX = "detectron2://"  # Detectron2's own scheme for files under its download prefix
INSTALL_HINT = (
    "Detectron2 is not on PyPI; install it into this environment with `make detectron2` in the actdet "
    "source tree, or `python scripts/install_detectron2.py` (it fetches the detectron2-cdo 0.5 sdist from "
    "PyPI, checks its hash, patches it for current torch/numpy/Pillow and installs it, about 10 s)"
)


class Detectron2NotInstalledError(ImportError):
    """The Detectron2 backend was asked for but ``import detectron2`` fails."""


def detectron2_available() -> bool:
    """Whether ``import detectron2`` works here (imports it)."""
    try:
        _import_detectron2()
    except Detectron2NotInstalledError:
        return False
    return True


def _import_detectron2() -> Any:
    """The ``detectron2`` package with the submodules we use, or Detectron2NotInstalledError."""
    try:
        with warnings.catch_warnings():
            # Detectron2 0.5 decorates a few functions with torch.jit.script, which torch now deprecates.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated")
            import detectron2
            import detectron2.checkpoint
            import detectron2.config
            import detectron2.data.transforms
            import detectron2.model_zoo
            import detectron2.modeling
    except ImportError as err:
        raise Detectron2NotInstalledError(
            f"the detectron2 person detector needs Detectron2, which cannot be imported in {sys.prefix} ({err}). "
            f"{INSTALL_HINT}. Or use detector.backend=torchvision."
        ) from err
    return detectron2


# --------------------------------------------------------------------------------------------------
# The detector


class Detectron2Detector(PersonDetector):
    """People found by a Detectron2 model (see the module docstring for ``model`` and ``weights``).

    ``Detectron2Detector(cfg)`` takes the job's :class:`DetectorConfig`; keyword arguments override its
    fields (``Detectron2Detector(model=..., weights="random", device="cpu")``; without ``cfg`` the
    defaults are :data:`DEFAULT_MODEL` and the zoo weights). ``opts``: Detectron2 config overrides as
    ``merge_from_list`` takes them (``["INPUT.MIN_SIZE_TEST", 320]``). ``person_class``: the contiguous
    class id of people in the model's dataset (0 for COCO).

    Raises Detectron2NotInstalledError without Detectron2, ValueError for an unknown model name or a
    config without weights, FileNotFoundError for a missing weights file, WeightsUnavailableError when
    the weights cannot be downloaded and WeightsLoadError when they do not fit the model.
    """

    name = "detectron2"

    def __init__(
        self,
        cfg: DetectorConfig | None = None,
        *,
        opts: Sequence[Any] = (),
        person_class: int = PERSON_CLASS,
        progress: bool = True,
        **fields: Any,
    ) -> None:
        base = cfg or DetectorConfig(backend="detectron2", model=DEFAULT_MODEL)
        cfg = dataclasses.replace(base, **fields)
        super().__init__(
            DetectorSettings(
                score_threshold=cfg.score_threshold,
                min_box_size=cfg.min_box_size,
                max_people=cfg.max_people,
                batch_size=cfg.batch_size,
                device=cfg.device,
            )
        )
        d2 = _import_detectron2()
        self.config = cfg
        self.person_class = int(person_class)
        self.device = _device(cfg.device)
        config_file, zoo_name = _config_file(cfg.model)
        d2cfg = d2.config.get_cfg()
        d2cfg.merge_from_file(config_file)
        d2cfg.merge_from_list([str(v) for v in opts])
        d2cfg.MODEL.DEVICE = str(self.device)
        # The model's own cut-offs must not remove people that our filters would keep.
        d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = cfg.score_threshold
        d2cfg.MODEL.RETINANET.SCORE_THRESH_TEST = cfg.score_threshold
        d2cfg.TEST.DETECTIONS_PER_IMAGE = max(int(d2cfg.TEST.DETECTIONS_PER_IMAGE), cfg.max_people)
        if d2cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ValueError(f"{config_file}: INPUT.FORMAT {d2cfg.INPUT.FORMAT!r} is not supported (RGB or BGR)")
        weights = _weights_location(cfg.weights, zoo_name, d2cfg.MODEL.WEIGHTS, config_file)
        d2cfg.MODEL.WEIGHTS = weights or ""
        d2cfg.freeze()
        self.d2cfg = d2cfg
        self.input_format = d2cfg.INPUT.FORMAT
        self.resize = d2.data.transforms.ResizeShortestEdge(
            [d2cfg.INPUT.MIN_SIZE_TEST, d2cfg.INPUT.MIN_SIZE_TEST], d2cfg.INPUT.MAX_SIZE_TEST
        )
        self.model = d2.modeling.build_model(d2cfg)
        self.model.eval()
        if weights is not None:
            path = Path(weights) if not _is_url(weights) else _download(weights, progress)
            _load_weights(self.model, path)

    def _detect_pixels(
        self, frames: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        inputs = []
        for frame in frames:
            height, width = frame.shape[:2]
            image = self.resize.get_transform(frame).apply_image(frame)
            if self.input_format == "BGR":
                image = image[:, :, ::-1]
            tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)), dtype=torch.float32)
            inputs.append({"image": tensor, "height": height, "width": width})
        with torch.no_grad():
            outputs = self.model(inputs)
        results = []
        for output in outputs:
            instances = output["instances"].to("cpu")
            people = instances[instances.pred_classes == self.person_class]
            keypoints = people.pred_keypoints.numpy() if people.has("pred_keypoints") else None
            results.append((people.pred_boxes.tensor.numpy(), people.scores.numpy(), keypoints))
        return results


# --------------------------------------------------------------------------------------------------
# Config, device, weights


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"detector.device={name!r} but CUDA is not available here (use auto or cpu)")
    return device


def _config_file(model: str) -> tuple[str, str | None]:
    """(config file path, model-zoo name or None) for a zoo name or a local ``.yaml`` file."""
    from detectron2 import model_zoo

    if Path(model).expanduser().is_file():
        path = Path(model).expanduser()
        if path.suffix not in (".yaml", ".yml"):
            raise ValueError(f"{path}: a Detectron2 .yaml config is expected (LazyConfig .py files are not supported)")
        return str(path), None
    if model.endswith((".yaml", ".yml")):
        try:
            return model_zoo.get_config_file(model), model
        except RuntimeError:
            pass
    raise ValueError(
        f"detector.model={model!r} is neither a config file nor a Detectron2 model-zoo config name; zoo names "
        f"are paths under detectron2/model_zoo/configs, e.g. {DEFAULT_MODEL} or "
        "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml"
    )


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://", ZOO_URL_PREFIX))


def _weights_location(weights: str | None, zoo_name: str | None, config_weights: str, config_file: str) -> str | None:
    """A local path or URL to load, or None for random init."""
    if weights == "random":
        return None
    if weights is None:
        if zoo_name is not None:
            from detectron2 import model_zoo

            try:
                return model_zoo.get_checkpoint_url(zoo_name)
            except RuntimeError:
                raise ValueError(
                    f"the Detectron2 model zoo publishes no weights for {zoo_name}; pass a weights file "
                    "(detector.weights=/path/to/model.pkl or .pth)"
                ) from None
        if not config_weights:
            raise ValueError(f"{config_file}: MODEL.WEIGHTS is empty; pass detector.weights=/path/to/model.pth")
        weights = config_weights
    if _is_url(weights):
        return weights
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Detectron2 weights file not found: {path}")
    return str(path)


def _download(url: str, progress: bool) -> Path:
    """A checkpoint URL as a local file in torch.hub's cache (downloaded once, atomically)."""
    if url.startswith(ZOO_URL_PREFIX):
        from detectron2 import model_zoo

        url = model_zoo.model_zoo._ModelZooUrls.S3_PREFIX + url[len(ZOO_URL_PREFIX) :]
    parts = [p for p in urllib.parse.urlsplit(url).path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"not a checkpoint URL: {url}")
    cached = Path(torch.hub.get_dir(), "checkpoints", *(["detectron2"] if parts[0] != "detectron2" else []), *parts)
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(url, os.fspath(cached), progress=progress)
    except OSError as err:  # URLError, HTTPError, time-outs, refused connections
        raise WeightsUnavailableError(
            f"cannot download the Detectron2 weights from {url}: {err}. Without network access, download that file "
            f"on another machine (e.g. `curl -LO {url}`) and pass its local path as detector.weights="
            f"/path/to/{parts[-1]}, or copy it to {cached} where it is looked for first."
        ) from err
    return cached


class _ArraysOnly(pickle.Unpickler):
    """Unpickles Detectron2 zoo ``.pkl`` files (dicts of numpy arrays) and refuses any other object."""

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):  # files pickled by numpy 1.x
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in self._ALLOWED and not module.startswith("numpy.dtypes"):
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")
        return super().find_class(module, name)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint in the form DetectionCheckpointer's loader takes: ``{"model": state, ...}``."""
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                data = _ArraysOnly(f, encoding="latin1").load()
            if not isinstance(data, dict):
                raise WeightsLoadError(f"{path}: expected a dict of arrays, got {type(data).__name__}")
            if "model" in data and "__author__" in data:  # Detectron2 model-zoo layout
                return data
            blobs = data.get("blobs", data)  # Detectron1 / Caffe2 layout: names converted by heuristics
            state = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
            return {"model": state, "__author__": "Caffe2", "matching_heuristics": True}
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError) as err:
        raise WeightsLoadError(f"{path}: cannot read the Detectron2 weights safely: {err}") from err
    if not isinstance(data, dict):
        raise WeightsLoadError(f"{path}: expected a state dict, got {type(data).__name__}")
    return data if "model" in data else {"model": data}


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load ``path`` into ``model`` with Detectron2's checkpointer; anything missing or misshapen is an error."""
    from detectron2.checkpoint import DetectionCheckpointer

    checkpoint = _read_checkpoint(path)
    # _load_model is DetectionCheckpointer's loading step after reading the file (name heuristics for
    # Caffe2 files, numpy -> tensors); we read the file ourselves so that only arrays are unpickled.
    incompatible = DetectionCheckpointer(model)._load_model(checkpoint)
    problems = []
    if incompatible.missing_keys:
        problems.append(f"{len(incompatible.missing_keys)} missing ({', '.join(incompatible.missing_keys[:5])})")
    if incompatible.incorrect_shapes:
        names = ", ".join(k for k, _, _ in incompatible.incorrect_shapes[:5])
        problems.append(f"{len(incompatible.incorrect_shapes)} of another shape ({names})")
    if problems:
        raise WeightsLoadError(f"{path}: the weights do not fit the model: {'; '.join(problems)} parameters")
