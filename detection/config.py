"""Typed configuration: dataclasses filled from YAML files plus dotted command-line overrides.

A config file is addressed by path or by name (``synthetic/tiny`` → ``configs/synthetic/tiny.yaml``).
Overrides look like ``data.synthetic.videos=8``; their values are parsed as YAML scalars/lists. Every key
is checked against the dataclass it lands in: an unknown key is an error that names the dotted key and
the nearest valid one, a value of the wrong type names the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from data_prep.synthetic import SyntheticSpec
from detection.tubes.linker import LinkerConfig

__all__ = [
    "Config",
    "DataConfig",
    "BackboneConfig",
    "HeadConfig",
    "ModelConfig",
    "DetectorConfig",
    "ConfigError",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "load_config",
    "save_config",
    "resolve_config_path",
    "shipped_file",
    "list_configs",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


# --------------------------------------------------------------------------------------------------
# The schema. Each component receives only its own section.


@dataclass
class DataConfig:
    """Where the prepared AVA-format dataset lives, and how to make it when it is synthetic."""

    root: str = "outputs/data/synthetic"  # dataset root in PySlowFast's AVA layout
    label_map: str = "annotations/label_map.pbtxt"  # relative to root
    # When set and ``root`` holds no complete dataset, the synthetic generator builds one there.
    synthetic: SyntheticSpec | None = field(default_factory=SyntheticSpec)


@dataclass
class BackboneConfig:
    """An MViT video backbone: a named block layout, optionally shrunk for tests and CPU demos."""

    arch: Literal["mvit_v1_b", "mvit_v2_s"] = "mvit_v2_s"  # block layout and attention flavour
    input_size: tuple[int, int, int] = (16, 224, 224)  # T, H, W the model is built for (any size runs)
    feature_stride: Literal[16, 32] = 16  # 16 drops the last query-pooling stride (RoI heads need resolution)
    # Shrinking the preset (None keeps the preset's value).
    depth: int | None = None  # number of blocks
    embed_dim: int | None = None  # channels of the first stage, doubled at each query-pooling stage
    num_heads: int | None = None  # attention heads of the first stage, doubled likewise
    stochastic_depth: float | None = None  # drop-path rate of the last block
    checkpointing: bool = False  # gradient checkpointing per block (saves memory when training)
    # Initial weights: "torchvision" (Kinetics-400 enum), "pytorchvideo:mvit_base_16x4" / "...:mvit_base_32x3",
    # or a local checkpoint file (ours, torchvision, pytorchvideo or PySlowFast .pyth). None: random init.
    weights: str | None = None


@dataclass
class HeadConfig:
    """The RoI action head: temporal pool, RoIAlign, spatial max pool, dropout, linear."""

    roi_size: int = 7
    dropout: float = 0.5
    activation: Literal["sigmoid", "softmax"] = "sigmoid"  # multi-label (AVA) or single-label


@dataclass
class ModelConfig:
    """The action model: backbone + RoI head; the classes come from the data's label map."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    sampling_rate: int = 4  # source frames between two sampled clip frames (the "4" of 16x4)


@dataclass
class DetectorConfig:
    """The person detector: which backend and model, and the filters applied to its output."""

    backend: Literal["torchvision", "detectron2", "precomputed"] = "torchvision"
    # torchvision: fasterrcnn_resnet50_fpn_v2 | fasterrcnn_mobilenet_v3_large_fpn | keypointrcnn_resnet50_fpn;
    # detectron2: a model-zoo config name (COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml) or a config file;
    # precomputed: an AVA-format box CSV or an mmaction2 proposal pickle.
    model: str = "fasterrcnn_resnet50_fpn_v2"
    weights: str | None = None  # None: the backend's published COCO weights (downloaded); or a local file
    score_threshold: float = 0.5
    min_box_size: float = 0.0  # minimum box height as a fraction of the frame height
    max_people: int = 100
    batch_size: int = 4
    device: str = "auto"


@dataclass
class Config:
    """The whole configuration of a job."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tubes: LinkerConfig = field(default_factory=LinkerConfig)  # tracking + temporal labelling into tubes
    output_dir: str = "outputs/demo"


# --------------------------------------------------------------------------------------------------
# dict <-> dataclass


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _nearest(key: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` against annotation ``tp``; ``key`` is the dotted path for messages."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping for section {tp.__name__}, got {value!r}")
        return config_from_dict(tp, value, prefix=key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_convert(k, kt, key): _convert(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)} in the schema")


def config_from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping; missing keys keep their defaults.

    Raises ConfigError naming the dotted key for unknown keys (with the nearest valid key) and for
    values of the wrong type.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            raise ConfigError(f"unknown config key '{key}'{_nearest(str(name), fields)}")
        kwargs[name] = _convert(value, hints[name], key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from None


def config_to_dict(cfg: Any) -> Any:
    """A dataclass tree as plain dicts/lists (tuples become lists), ready for YAML or JSON."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, list | tuple):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


# --------------------------------------------------------------------------------------------------
# Files and overrides


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (in place, returned for convenience).

    Values are parsed with ``yaml.safe_load`` (``8`` → int, ``[16, 224]`` → list, ``null`` → None).
    Validation of the keys happens when the dict becomes a config.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: cannot parse the value: {err}") from None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{'.'.join(parts[: depth + 1])}' is not a section")
        node[parts[-1]] = value
    return data


def _config_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [here.parent / "configs", Path(sys.prefix) / "share" / "actdet" / "configs"]


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A config file by path, or by name relative to the shipped ``configs/`` folder (``.yaml`` optional)."""
    path = Path(name)
    if path.is_file():
        return path
    candidates = [path.name] if path.suffix in (".yaml", ".yml") else [f"{name}.yaml", f"{name}.yml"]
    for root in _config_dirs():
        for candidate in candidates:
            found = root / Path(name).parent / Path(candidate).name
            if found.is_file():
                return found
    known = ", ".join(list_configs()) or "none found"
    raise ConfigError(f"no config file or name '{name}' (known names: {known})")


def shipped_file(name: str | os.PathLike) -> Path:
    """A file shipped in ``configs/`` (the source tree's or the installed copy), e.g. a label map.

    Raises FileNotFoundError naming the folders searched.
    """
    for root in _config_dirs():
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{name}: not found in the shipped configs ({', '.join(map(str, _config_dirs()))})")


def list_configs() -> list[str]:
    """Names of the shipped configs (``ava/mvit_v2_s_16x4``, ``synthetic/tiny``, ...)."""
    for root in _config_dirs():
        if root.is_dir():
            return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))
    return []


def load_config(
    name: str | os.PathLike | None = None, overrides: Iterable[str] = (), cls: type[T] = Config
) -> T:
    """Load a config by path or name (or the schema defaults when ``name`` is None), apply overrides."""
    data: dict[str, Any] = {}
    if name is not None:
        path = resolve_config_path(name)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = loaded or {}
    apply_overrides(data, overrides)
    try:
        return config_from_dict(cls, data)
    except ConfigError as err:
        where = f"{resolve_config_path(name)}: " if name is not None else ""
        raise ConfigError(f"{where}{err}") from None


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML next to a job's outputs (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return path
