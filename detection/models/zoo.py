"""The model zoo: named models with their metadata, our checkpoint format, and conversion into it.

Every :class:`ZooEntry` says in code where its weights come from, what they were trained on, the input
they expect and the number they reach (with its source), like torchvision's weight enums. Names are
what users type: ``pytorchvideo/slowfast_r50_detection``, ``ava/mvit_v2_s_16x4`` (also a config name),
``synthetic/tiny``.

Checkpoint format ``actdet-1`` (one ``torch.save`` dict, read with ``weights_only=True``)::

    {"format": "actdet-1",
     "model": state_dict,                       # tensors on the CPU
     "config": resolved config dict,            # a whole Config (ActionModel) or {"pytorchvideo": name, ...}
     "label_map": [[id, name], ...]}            # the output columns, in order

Written to a temporary name and renamed, so a crash never leaves half a checkpoint behind.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detection.config import (
    Config,
    ConfigError,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    shipped_file,
)
from detection.formats.files import atomic_path
from detection.models.action_model import ActionModel, InputSpec, build_action_model
from detection.models.pytorchvideo_ava import (
    AVA_EVALUATED,
    AVA_LABEL_MAP,
    PYTORCHVIDEO_AVA,
    PytorchVideoAvaModel,
    build_pytorchvideo_ava,
)
from detection.structures import LabelMap

__all__ = [
    "CHECKPOINT_FORMAT",
    "ZOO",
    "ConvertResult",
    "Metric",
    "ZooEntry",
    "build_model",
    "config_label_map",
    "convert",
    "list_models",
    "load_checkpoint",
    "model_info",
    "read_actdet_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "actdet-1"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pyth", ".ckpt")
Model = ActionModel | PytorchVideoAvaModel


@dataclass(frozen=True)
class Metric:
    """A reported result: what was measured, the number, and where it is published."""

    name: str
    value: float
    source: str


@dataclass(frozen=True)
class ZooEntry:
    """A named model and everything a user should know before running it.

    ``weights``: what ``pretrained=True`` loads (a URL or a named source). ``metric``: the published
    number of exactly these weights, or None with ``metric_note`` saying why there is none.
    ``builder(pretrained)`` returns the model. ``config``: the config name, for config-built models.
    """

    name: str
    description: str
    architecture: str
    weights: str
    trained_on: str
    input_spec: InputSpec
    metric: Metric | None
    metric_note: str
    label_map: str
    builder: Callable[[bool], nn.Module]
    config: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain metadata (no builder), for listings and JSON."""
        return {
            "name": self.name,
            "description": self.description,
            "architecture": self.architecture,
            "weights": self.weights,
            "trained_on": self.trained_on,
            "input": self.input_spec.describe(),
            "input_spec": self.input_spec.to_dict(),
            "metric": None if self.metric is None else vars(self.metric).copy(),
            "metric_note": self.metric_note,
            "label_map": self.label_map,
            "config": self.config,
        }


# --------------------------------------------------------------------------------------------------
# Config-built models


# Label maps a config may name that ship with the project, for when the dataset is not on this machine.
# AVA v2.2's evaluated list for ActivityNet 2019 has the same 60 ids and names as v2.1's for 2018.
_SHIPPED_LABEL_MAPS = {
    "ava_action_list_v2.2_for_activitynet_2019.pbtxt": AVA_EVALUATED,
    "ava_action_list_v2.1_for_activitynet_2018.pbtxt": AVA_EVALUATED,
    "ava_action_list_v2.2.pbtxt": AVA_LABEL_MAP,
}


def config_label_map(cfg: Config) -> LabelMap:
    """The classes of ``cfg``: its dataset's label map file, else the one its dataset would have.

    In order: ``data.root / data.label_map`` if it exists; the synthetic label map when the data is
    synthetic; the shipped copy of a known AVA label map. Raises FileNotFoundError naming the file.
    """
    path = Path(cfg.data.root) / cfg.data.label_map
    if path.is_file():
        return LabelMap.load(path)
    if cfg.data.synthetic is not None:
        from data_prep.synthetic import synthetic_label_map

        return synthetic_label_map()
    if path.name in _SHIPPED_LABEL_MAPS:
        return LabelMap.from_pbtxt(shipped_file(_SHIPPED_LABEL_MAPS[path.name]))
    raise FileNotFoundError(f"{path}: label map of config {cfg.name!r} not found (is the dataset prepared?)")


def _build_from_config(cfg: Config, pretrained: bool) -> ActionModel:
    return build_action_model(cfg.model, config_label_map(cfg), load_weights=pretrained)


def _config_entry_builder(name: str) -> Callable[[bool], nn.Module]:
    return lambda pretrained: _build_from_config(load_config(name), pretrained)


def _ava_mvit_entry(variant: str, title: str, weights_enum: str) -> ZooEntry:
    """The zoo entry of a shipped AVA MViT config (``ava/mvit_{variant}_16x4``): K400 backbone, untrained head."""
    config = f"ava/mvit_{variant}_16x4"
    return ZooEntry(
        name=config,
        description=f"{title} 16x4 for AVA with a RoIAlign head at stride 16 (config {config})",
        architecture=f"{title} (torchvision layout, last pooling stride dropped) + RoIActionHead",
        weights=f"torchvision {weights_enum}.KINETICS400_V1 (backbone only; head randomly initialised)",
        trained_on="backbone: Kinetics-400 classification; head: not trained",
        input_spec=_input_of(config),
        metric=None,
        metric_note=_UNTRAINED_AVA,
        label_map="AVA v2.2 ActivityNet 2019 list (60 classes), from the dataset or the shipped copy",
        builder=_config_entry_builder(config),
        config=config,
    )


def _input_of(config_name: str) -> InputSpec:
    """The input contract of a shipped config, read when the zoo is imported (a small YAML file)."""
    m = load_config(config_name).model
    t, h, w = m.backbone.input_size
    return InputSpec(num_frames=t, sampling_rate=m.sampling_rate, short_side=min(h, w), size=(h, w))


def _pytorchvideo_entry(name: str, description: str, architecture: str, trained_on: str, value: float) -> ZooEntry:
    variant = PYTORCHVIDEO_AVA[name]
    return ZooEntry(
        name=f"pytorchvideo/{name}",
        description=description,
        architecture=architecture,
        weights=variant.url,
        trained_on=trained_on,
        input_spec=variant.input_spec,
        metric=Metric(
            name="AVA v2.2 frame-mAP@0.5 (val, 60 classes)",
            value=value,
            source="pytorchvideo model zoo, AVA table: "
            "https://github.com/facebookresearch/pytorchvideo/blob/main/docs/source/model_zoo.md",
        ),
        metric_note="measured by the pytorchvideo authors with PySlowFast's AVA evaluation; not reproduced here",
        label_map=f"configs/{AVA_LABEL_MAP} (80 outputs in id order; the 60 evaluated are scored)",
        builder=lambda pretrained: build_pytorchvideo_ava(name, pretrained=pretrained),
    )


_UNTRAINED_AVA = (
    "none yet: the backbone is Kinetics-400-initialised and the AVA head is untrained until this config is "
    "trained; the number will come from our own evaluation, not from the paper"
)

ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        _pytorchvideo_entry(
            "slowfast_r50_detection",
            "SlowFast R50 AVA detector from pytorchvideo's model zoo: the strongest ready-trained model here",
            "SlowFast R50 (8x8, alpha 4) + RoIAlign head; pytorchvideo.models.hub.slowfast_r50_detection",
            "Kinetics-400 pretraining, AVA v2.2 fine-tuning (80 classes)",
            24.67,
        ),
        _pytorchvideo_entry(
            "slow_r50_detection",
            "Slow R50 AVA detector from pytorchvideo's model zoo: one pathway, 4 frames, cheaper",
            "Slow R50 (4x16) + RoIAlign head; pytorchvideo.models.hub.slow_r50_detection",
            "Kinetics-400 pretraining, AVA v2.2 fine-tuning (80 classes)",
            19.5,
        ),
        _ava_mvit_entry("v1_b", "MViTv1-B", "MViT_V1_B_Weights"),
        _ava_mvit_entry("v2_s", "MViTv2-S", "MViT_V2_S_Weights"),
        ZooEntry(
            name="synthetic/tiny",
            description="A 4-block MViTv2 (32 channels, 1 M parameters) for the synthetic data, small enough for a CPU",
            architecture="MViTv2-S layout shrunk to depth 4, embed dim 32, 1 head + RoIActionHead",
            weights="none: random initialisation (pretrained=True changes nothing)",
            trained_on="nothing yet; meant to be trained on the synthetic dataset (config synthetic/tiny)",
            input_spec=_input_of("synthetic/tiny"),
            metric=None,
            metric_note="none: randomly initialised; a smoke-test model, not a benchmark entry",
            label_map="the synthetic dataset's 6 classes (data_prep.synthetic.SYNTHETIC_LABELS)",
            builder=_config_entry_builder("synthetic/tiny"),
            config="synthetic/tiny",
        ),
    ]
}


def list_models() -> list[str]:
    """Names of the zoo's models, in registry order."""
    return list(ZOO)


def _is_checkpoint_path(name: str | os.PathLike) -> bool:
    path = Path(name)
    return path.suffix in CHECKPOINT_SUFFIXES and path.is_file()


def build_model(name_or_config_path: str | os.PathLike, pretrained: bool = False) -> Model:
    """A model by zoo name, checkpoint file (ours) or config name/path.

    ``pretrained``: load the entry's weights (zoo names, configs: ``model.backbone.weights``); this may
    download and raises ``WeightsUnavailableError`` offline. A checkpoint file always loads its weights.
    Raises ConfigError for a name that is none of these.
    """
    key = str(name_or_config_path)
    if key in ZOO:
        return ZOO[key].builder(pretrained)
    if f"pytorchvideo/{key}" in ZOO:
        return ZOO[f"pytorchvideo/{key}"].builder(pretrained)
    if _is_checkpoint_path(key):
        return load_checkpoint(key)
    try:
        cfg = load_config(key)
    except ConfigError as err:
        raise ConfigError(f"{key!r} is no zoo model ({', '.join(ZOO)}), checkpoint file or config: {err}") from None
    return _build_from_config(cfg, pretrained)


# --------------------------------------------------------------------------------------------------
# Information


def _count_gflops(model: Model, clip: torch.Tensor, boxes: list[torch.Tensor]) -> float:
    with warnings.catch_warnings():  # fvcore's import and its tracing warn (torch.jit); the count is right
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, (clip, boxes))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return analysis.total() / 1e9


def model_info(
    model_or_name: Model | str | os.PathLike, input_size: tuple[int, int, int] | None = None
) -> dict[str, Any]:
    """Size and cost of a model (or of a zoo name / config / checkpoint, built without downloading).

    Returns ``parameters`` (count), ``parameters_m``, ``gflops`` per clip with one box (fvcore's count:
    one multiply-add is one flop, as the papers and model zoos report), ``input_size`` ``[T, H, W]`` it
    was measured at (default: the model's ``input_spec``), ``feature_stride``, ``num_classes`` and
    ``input`` (``frames x rate, short side``).
    """
    by_name = isinstance(model_or_name, str | os.PathLike)
    name = str(model_or_name) if by_name else None
    model = build_model(model_or_name, pretrained=False) if by_name else model_or_name
    spec: InputSpec = model.input_spec
    t, h, w = input_size or (spec.num_frames, *spec.size)
    param = next(model.parameters())
    clip = torch.zeros(1, 3, t, h, w, device=param.device)
    boxes = [torch.tensor([[0.25, 0.25, 0.75, 0.75]], device=param.device)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            gflops = _count_gflops(model, clip, boxes)
    finally:
        model.train(was_training)
    parameters = sum(p.numel() for p in model.parameters())
    stride = model.head.feature_stride if isinstance(model, ActionModel) else model.feature_stride
    return {
        "name": name or (model.config.get("name") if isinstance(model.config, dict) else type(model).__name__),
        "architecture": type(model).__name__,
        "parameters": parameters,
        "parameters_m": round(parameters / 1e6, 3),
        "gflops": round(gflops, 3),
        "input_size": [t, h, w],
        "feature_stride": stride,
        "num_classes": model.num_classes,
        "input": spec.describe(),
    }


# --------------------------------------------------------------------------------------------------
# Checkpoints


def _config_dict(model: Model, config: Config | ModelConfig | dict | None) -> dict[str, Any]:
    config = model.config if config is None else config
    if isinstance(config, Config):
        return config_to_dict(config)
    if isinstance(config, ModelConfig):
        return {"model": config_to_dict(config)}
    if isinstance(config, dict):
        return dict(config)
    raise ValueError(f"save_checkpoint: no config for {type(model).__name__}; pass the Config it was built from")


def save_checkpoint(
    path: str | os.PathLike, model: Model, config: Config | ModelConfig | dict | None = None
) -> Path:
    """Write ``model`` in the ``actdet-1`` format (atomically); returns the path.

    ``config``: the resolved Config (or ModelConfig) the model was built from; default ``model.config``.
    """
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().to("cpu") for k, v in model.state_dict().items()},
        "config": _config_dict(model, config),
        "label_map": [[int(i), str(n)] for i, n in model.label_map],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_actdet_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The raw ``actdet-1`` dict of a checkpoint file (``torch.load(weights_only=True)``, on the CPU).

    Raises FileNotFoundError, or ValueError naming the file when it is not an ``actdet-1`` checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: cannot read as a torch checkpoint: {err}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{path}: not an {CHECKPOINT_FORMAT} checkpoint (format {found!r}); turn weights from elsewhere into "
            f"one with `actdet model convert {path} --config CONFIG --out FILE`"
        )
    missing = [k for k in ("model", "config", "label_map") if k not in data]
    if missing:
        raise ValueError(f"{path}: {CHECKPOINT_FORMAT} checkpoint without {', '.join(missing)}")
    return data


def load_checkpoint(path: str | os.PathLike) -> Model:
    """The model saved in an ``actdet-1`` checkpoint, on the CPU, in eval mode.

    Raises ValueError naming the file when the weights do not fit the saved config.
    """
    data = read_actdet_checkpoint(path)
    label_map = LabelMap.from_pairs((int(i), str(n)) for i, n in data["label_map"])
    config = data["config"]
    if "pytorchvideo" in config:
        model: Model = build_pytorchvideo_ava(str(config["pytorchvideo"]))
        if model.label_map.ids != label_map.ids:
            raise ValueError(f"{path}: label map does not match pytorchvideo's AVA model {config['pytorchvideo']}")
    else:
        try:
            cfg = config_from_dict(Config, config)
        except ConfigError as err:
            raise ValueError(f"{path}: saved config does not fit this version's schema: {err}") from None
        model = build_action_model(cfg.model, label_map, load_weights=False)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the saved config: {str(err)[:500]}") from None
    return model.eval()


@dataclass
class ConvertResult:
    """What :func:`convert` wrote: the checkpoint, the model, and the backbone load report if any."""

    path: Path
    model: Model
    load_report: Any = None


def convert(
    source: str | os.PathLike,
    out: str | os.PathLike,
    config: str | os.PathLike | None = None,
    progress: bool = True,
) -> ConvertResult:
    """Turn ``source`` into an ``actdet-1`` checkpoint at ``out``.

    ``source`` may be: a zoo name (its pretrained weights; no ``config``); an ``actdet-1`` checkpoint
    (re-written); pytorchvideo's AVA ``.pyth`` file with ``config`` ``pytorchvideo/<name>``; or backbone
    weights (``torchvision``, ``pytorchvideo:mvit_base_16x4``, a torchvision / pytorchvideo / PySlowFast
    checkpoint file) with ``config`` an MViT config name or path, loaded through ``load_backbone_weights``
    (the head stays untrained). Raises ValueError when the combination makes no sense,
    ``WeightsUnavailableError`` when a download is impossible.
    """
    key = str(source)
    cfg_name = None if config is None else str(config)
    if key in ZOO or f"pytorchvideo/{key}" in ZOO:
        if cfg_name is not None:
            raise ValueError(f"{key} is a zoo model with its own config; drop --config {cfg_name}")
        entry = ZOO.get(key) or ZOO[f"pytorchvideo/{key}"]
        model = entry.builder(True)
        saved = load_config(entry.config) if entry.config else None
        return ConvertResult(save_checkpoint(out, model, saved), model, model.load_report)
    if cfg_name is not None and cfg_name.removeprefix("pytorchvideo/") in PYTORCHVIDEO_AVA:
        model = build_pytorchvideo_ava(cfg_name, checkpoint=key, progress=progress)
        return ConvertResult(save_checkpoint(out, model), model)
    if _is_checkpoint_path(key):
        try:
            model = load_checkpoint(key)
        except ValueError as err:
            if "not an actdet-1 checkpoint" not in str(err):
                raise
        else:
            if cfg_name is not None:
                raise ValueError(f"{key} is already an {CHECKPOINT_FORMAT} checkpoint with its config; drop --config")
            return ConvertResult(save_checkpoint(out, model, read_actdet_checkpoint(key)["config"]), model)
    if cfg_name is None:
        raise ValueError(f"{key}: say which model these weights initialise with a config (--config CONFIG)")
    cfg = load_config(cfg_name)
    model = build_action_model(cfg.model, config_label_map(cfg), load_weights=False)
    from detection.models.weights import load_backbone_weights

    model.load_report = load_backbone_weights(model.backbone, key)
    return ConvertResult(save_checkpoint(out, model, cfg), model, model.load_report)
