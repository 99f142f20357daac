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
import re
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
    "AugmentConfig",
    "DataConfig",
    "BackboneConfig",
    "HeadConfig",
    "ModelConfig",
    "DetectorConfig",
    "RunConfig",
    "TrainConfig",
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
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


# --------------------------------------------------------------------------------------------------
# The schema. Each component receives only its own section.


@dataclass
class AugmentConfig:
    """Clip augmentations of the training split (boxes move with the pixels) and the eval-time resize.

    Defaults are PySlowFast's AVA recipe (``TRAIN_JITTER_SCALES [256, 320]``, ``TRAIN_CROP_SIZE 224``,
    random flip, no colour augmentation, ``TEST_CROP_SIZE 224`` used as the test short side).
    """

    jitter_short_side: tuple[int, int] = (256, 320)  # train: short side (px) drawn from [min, max], 1/size uniform
    crop_size: int | None = 224  # train: square random crop (px) after the jitter; None: no crop
    # train: a box with less than this share of its area inside the crop is dropped with its labels;
    # 0 keeps every box, clipped to the crop (PySlowFast).
    crop_min_visible: float = 0.0
    flip_prob: float = 0.5  # train: probability of a horizontal flip of the whole clip
    # train: the clip's centre moves by up to this many frames either way (uniform); the boxes stay the
    # keyframe's, so keep it to frames over which people move a few pixels. 0: PySlowFast (no shift)
    temporal_jitter: int = 0
    color_jitter: float = 0.0  # train: brightness/contrast/saturation strength (PySlowFast: 0.4 when on); 0 off
    # train: the hue turns by up to this share of the colour circle either way (0.5: any hue); 0 off.
    # Actions do not depend on clothing colours, and a small dataset's colours identify its people.
    hue_jitter: float = 0.0
    test_short_side: int | None = None  # val/test: short side (px), no crop; None: the model's input short side

    def __post_init__(self) -> None:
        lo, hi = self.jitter_short_side
        if not 1 <= lo <= hi:
            raise ValueError(f"jitter_short_side must be [min, max] with 1 <= min <= max, got {[lo, hi]}")
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size must be >= 1 or null, got {self.crop_size}")
        if not 0.0 <= self.flip_prob <= 1.0 or not 0.0 <= self.crop_min_visible <= 1.0:
            raise ValueError(f"flip_prob and crop_min_visible must lie in [0, 1], got {self.flip_prob}, "
                             f"{self.crop_min_visible}")
        if not 0.0 <= self.hue_jitter <= 0.5:
            raise ValueError(f"hue_jitter must lie in [0, 0.5] turns, got {self.hue_jitter}")
        if self.temporal_jitter < 0:
            raise ValueError(f"temporal_jitter must be >= 0 frames, got {self.temporal_jitter}")
        if self.color_jitter < 0.0 or (self.test_short_side is not None and self.test_short_side < 1):
            raise ValueError(f"color_jitter must be >= 0 and test_short_side >= 1 or null, got {self.color_jitter}, "
                             f"{self.test_short_side}")


@dataclass
class DataConfig:
    """Where the prepared AVA-format dataset lives, how to read it, and how to make it when it is synthetic.

    Paths are relative to ``root`` (absolute paths are taken as they are). Timestamps in the box CSVs are
    seconds; the keyframe's frame index is ``round((timestamp - time_offset) * fps)``.
    """

    root: str = "outputs/data/synthetic"  # dataset root in PySlowFast's AVA layout
    label_map: str = "annotations/label_map.pbtxt"  # relative to root
    # When set and ``root`` holds no complete dataset, the synthetic generator builds one there.
    synthetic: SyntheticSpec | None = field(default_factory=SyntheticSpec)
    # Where clip frames come from: JPEG folders ``frames/<video_id>/...`` or the videos themselves (PyAV seek).
    source: Literal["frames", "videos"] = "frames"
    # Frame file names (1-based): pyslowfast ``<video_id>_000001.jpg``, mmaction2 ``img_00001.jpg``.
    frame_naming: Literal["pyslowfast", "mmaction2"] = "pyslowfast"
    frames_dir: str = "frames"  # one folder per video id
    videos_dir: str = "videos"  # ``<video_id>.<any extension>``
    fps: float = 30.0  # frame rate of the frame folders (videos of another rate are resampled to it)
    time_offset: float = 900.0  # timestamp (s) of each video's frame 0 (AVA's clips start at 900 s)
    train_annotations: str = "annotations/train.csv"  # ground-truth box CSV
    val_annotations: str = "annotations/val.csv"  # ground truth of val (and test, when present)
    # Person proposals (box CSV with scores). train: added to the GT boxes; val/test: the boxes scored
    # (None: val/test use the ground-truth boxes, train the GT boxes only).
    train_proposals: str | None = "annotations/train_predicted_boxes.csv"
    val_proposals: str | None = "annotations/val_predicted_boxes.csv"
    # Excluded timestamps (keyframes skipped), used when the file exists.
    train_exclusions: str | None = "annotations/train_excluded_timestamps.csv"
    val_exclusions: str | None = "annotations/val_excluded_timestamps.csv"
    # PySlowFast frame lists (source=frames), used when the file exists: frame counts and paths. Without
    # one, frames are found by their names (frame_naming).
    train_frame_list: str | None = "frame_lists/train.csv"
    val_frame_list: str | None = "frame_lists/val.csv"
    train_score_threshold: float = 0.8  # train proposals below this score are ignored (PySlowFast: 0.8)
    test_score_threshold: float = 0.8  # val/test proposals below this score are ignored (PySlowFast: 0.8)
    # A proposal takes the labels of the GT boxes it overlaps with IoU >= this (PySlowFast's lists: 0.9) ...
    proposal_iou: float = 0.9
    proposal_negatives: bool = True  # ... and one that overlaps none is a negative (all-zero target) or dropped
    on_missing: Literal["error", "skip"] = "error"  # missing/unreadable frames: raise naming the path, or skip
    augment: AugmentConfig = field(default_factory=AugmentConfig)


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
    # Also pool the backbone's stride-8 tokens (end of its second stage) and concatenate them: limbs of
    # small people. Off in the published AVA recipes.
    fine_features: bool = False
    # The max over the RoI's cells per this many horizontal bands (concatenated): where in the box a feature
    # is (a hand above the head). 1: one max over the whole box (PySlowFast).
    row_bins: int = 1


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
class TrainConfig:
    """Optimisation for ``actdet train``: optimizer, learning-rate schedule, batch, precision and cadence.

    A *step* is one optimizer update: ``accumulation_steps`` forward/backward passes over ``batch_size``
    clips in all, across every process. The schedule, logging, validation and checkpoints count steps.
    ``max_steps`` wins over ``epochs`` and ``warmup_steps`` over ``warmup_epochs`` when both are set.
    """

    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-4  # peak learning rate (after warmup), for the global batch_size; never rescaled automatically
    weight_decay: float = 0.05  # never applied to norms, biases, positional embeddings and the class token
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    # Layer-wise lr decay: backbone block i (of depth) gets lr * layer_decay ** (depth - i), the patch and
    # position embeddings lr * layer_decay ** (depth + 1), the head and final norm lr. None: one lr for all.
    layer_decay: float | None = None
    epochs: int | None = 10  # training length in passes over the train split (used when max_steps is None)
    max_steps: int | None = None  # training length in steps
    warmup_epochs: float | None = 1.0  # linear warmup length in epochs (used when warmup_steps is None)
    warmup_steps: int | None = None  # linear warmup length in steps
    warmup_start_factor: float = 0.01  # lr of step 0 as a fraction of lr
    min_lr_factor: float = 0.01  # the cosine ends at lr * min_lr_factor
    batch_size: int = 8  # clips per step over all processes and accumulation passes (the global batch)
    accumulation_steps: int = 1  # forward/backward passes per step (batch_size must be a multiple)
    clip_grad_norm: float | None = None  # max L2 norm of all gradients together; None: no clipping
    bf16: bool | None = None  # bf16 autocast; None: on when training on CUDA, off on the CPU
    num_workers: int = 2  # DataLoader worker processes per training process
    seed: int = 0  # python/numpy/torch seeds (process r adds r) and the shuffling of the train split
    eval_every: int | None = None  # steps between validations (val mAP); None: at the end of every epoch
    log_every: int = 20  # steps between log records (JSONL, TensorBoard)
    checkpoint_every: int | None = None  # steps between writes of last.pt; None: at the end of every epoch

    def __post_init__(self) -> None:
        problems = []
        if self.lr <= 0 or self.weight_decay < 0:
            problems.append(f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not 0.0 <= self.momentum < 1.0 or not all(0.0 <= b < 1.0 for b in self.betas):
            problems.append(f"momentum and betas must lie in [0, 1), got {self.momentum}, {list(self.betas)}")
        if self.layer_decay is not None and not 0.0 < self.layer_decay <= 1.0:
            problems.append(f"layer_decay must lie in (0, 1] or be null, got {self.layer_decay}")
        if self.epochs is None and self.max_steps is None:
            problems.append("one of epochs and max_steps must be set")
        for name in ("epochs", "max_steps", "eval_every", "checkpoint_every", "log_every", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be >= 1, got {value}")
        if (self.warmup_steps is not None and self.warmup_steps < 0) or (
            self.warmup_epochs is not None and self.warmup_epochs < 0
        ):
            problems.append(f"warmup must be >= 0, got {self.warmup_steps} steps, {self.warmup_epochs} epochs")
        if not 0.0 < self.warmup_start_factor <= 1.0 or not 0.0 <= self.min_lr_factor <= 1.0:
            problems.append(f"warmup_start_factor must lie in (0, 1] and min_lr_factor in [0, 1], got "
                            f"{self.warmup_start_factor}, {self.min_lr_factor}")
        if self.accumulation_steps < 1 or self.batch_size % self.accumulation_steps:
            problems.append(f"batch_size {self.batch_size} must be a multiple of accumulation_steps "
                            f"{self.accumulation_steps} (>= 1)")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            problems.append(f"clip_grad_norm must be > 0 or null, got {self.clip_grad_norm}")
        if self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class RunConfig:
    """``actdet run``: how videos stream through detector, action model, tube linker and the output files.

    Times are seconds of the video; sizes pixels; scores in [0, 1]. Queues and buffers are sized by these
    settings and the model's clip length, never by the length of a video.
    """

    keyframes: str = "ava"  # ava (1 Hz at whole seconds), every:N (frames) or fps:F
    time_offset: float = 0.0  # seconds added to the CSV timestamps (AVA's 15-minute clips: 900)
    start_s: float | None = None  # process [start_s, end_s) only; None: from the start / to the end
    end_s: float | None = None
    batch_size: int = 8  # clips per forward pass of the action model
    queue_size: int = 64  # decoded frames waiting between the decode thread and the models
    device: str = "auto"  # action model: auto (CUDA when available), cpu or cuda[:k]
    action_threshold: float = 0.0  # detections.csv / cvat.xml: action rows scoring at least this
    csv_track_ids: bool | None = None  # 9th column; None: on, except in ava mode (the official reader wants 8)
    video: bool = True  # write annotated.mp4
    video_short_side: int | None = 480  # annotated.mp4 short side (never upscaled); None: the video's size
    video_top_k: int = 3  # actions drawn per person, best first ...
    video_score_threshold: float = 0.3  # ... scoring at least this
    cvat: bool = True  # write cvat.xml

    def __post_init__(self) -> None:
        from detection.persons.keyframes import parse_keyframes

        parse_keyframes(self.keyframes)  # ValueError saying what is expected
        if self.batch_size < 1 or self.queue_size < 1 or self.video_top_k < 0:
            raise ValueError(f"batch_size and queue_size must be >= 1 and video_top_k >= 0, got {self.batch_size}, "
                             f"{self.queue_size}, {self.video_top_k}")
        if not 0.0 <= self.action_threshold <= 1.0 or not 0.0 <= self.video_score_threshold <= 1.0:
            raise ValueError(f"action_threshold and video_score_threshold must lie in [0, 1], got "
                             f"{self.action_threshold}, {self.video_score_threshold}")
        if self.start_s is not None and self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be after start_s ({self.start_s})")
        if (self.start_s is not None and self.start_s < 0) or (self.video_short_side is not None
                                                                and self.video_short_side < 2):
            raise ValueError(f"start_s must be >= 0 and video_short_side >= 2, got {self.start_s}, "
                             f"{self.video_short_side}")


@dataclass
class Config:
    """The whole configuration of a job."""

    name: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tubes: LinkerConfig = field(default_factory=LinkerConfig)  # tracking + temporal labelling into tubes
    train: TrainConfig = field(default_factory=TrainConfig)  # optimisation of `actdet train`
    run: RunConfig = field(default_factory=RunConfig)  # `actdet run` over videos
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
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
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
