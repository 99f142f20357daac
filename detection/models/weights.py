"""Initial weights for the MViT backbone: named sources, checkpoint files, key-layout conversion, a report.

Every path ends in :func:`load_backbone_weights` ``(backbone, source) -> LoadReport``. A source is

- ``"torchvision"``: torchvision's Kinetics-400 weights for the backbone's arch (``MViT_V1_B_Weights`` /
  ``MViT_V2_S_Weights.KINETICS400_V1``), also addressable as ``"torchvision:mvit_v1_b"`` / ``":mvit_v2_s"``;
- ``"pytorchvideo:mvit_base_16x4"`` / ``"pytorchvideo:mvit_base_32x3"``: pytorchvideo's hub checkpoints
  (MViTv1-B, Kinetics-400), converted from pytorchvideo's key layout;
- a local file: a plain state dict or a dict holding one under ``"model"`` (ours, with ``"config"``),
  ``"model_state"`` (PySlowFast ``.pyth``, pytorchvideo hub files) or ``"state_dict"``, in torchvision's,
  pytorchvideo's or PySlowFast's key layout (detected from the keys); ``module.`` prefixes (DDP) are
  stripped and of a whole-model checkpoint (``backbone.*`` keys) only the backbone part is used;
- an in-memory state dict (a mapping of tensors).

Downloads go through torch.hub's cache (``torch.hub.get_dir()/checkpoints``); offline they fail within
``DOWNLOAD_TIMEOUT_S`` with :class:`WeightsUnavailableError`, which names the URL and the manual way (download
the file elsewhere, pass its path). Files are read with ``torch.load(..., weights_only=True)`` only.

Positional embeddings trained at another clip size are re-sampled to the backbone's grid (v1 spatial:
bicubic, v1 temporal and v2 relative tables: linear, as at run time); every other tensor must have the
backbone's shape. Nothing is skipped silently: the report lists loaded, interpolated, missing, unexpected
and mismatched keys, and the classifier keys (expected to be unused) separately.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import socket
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models.video import MViT_V1_B_Weights, MViT_V2_S_Weights

from detection.models.backbone import (
    MViTBackbone,
    patch_grid,
    resize_rel_pos,
    resize_spatial_pos,
)

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "SOURCES",
    "LoadReport",
    "WeightsLoadError",
    "WeightsSource",
    "WeightsUnavailableError",
    "convert_pyslowfast_mvit",
    "convert_pytorchvideo_mvit",
    "detect_layout",
    "load_backbone_weights",
    "read_checkpoint",
    "resolve_source",
    "socket_timeout",
    "to_torchvision_layout",
]

# A stalled connection gives up after this many seconds (per socket operation, not for the whole download).
DOWNLOAD_TIMEOUT_S = 30.0


class WeightsUnavailableError(RuntimeError):
    """Named weights could not be downloaded (no network, HTTP error, time-out)."""


class WeightsLoadError(ValueError):
    """A weights source that cannot be read or does not fit the backbone."""


# --------------------------------------------------------------------------------------------------
# Named sources and their metadata


@dataclass(frozen=True)
class WeightsSource:
    """Where named weights come from, what they were trained on and the input they expect."""

    name: str
    arch: str  # the backbone arch they fit
    url: str
    layout: str  # key layout of the file: "torchvision" or "pytorchvideo"
    trained_on: str
    input_size: tuple[int, int, int]  # (T, H, W) of the training/eval clips
    sampling_rate: int  # source frames between two clip frames (the "4" of 16x4)
    mean: tuple[float, float, float]  # RGB in [0, 1], then (x - mean) / std
    std: tuple[float, float, float]
    top1: float  # Kinetics-400 top-1 (%) as reported by the source
    note: str = ""
    torchvision_weights: Any = None  # the torchvision WeightsEnum member, downloaded via its get_state_dict

    @property
    def file_name(self) -> str:
        return os.path.basename(urlparse(self.url).path)


def _torchvision_source(arch: str, weights: Any) -> WeightsSource:
    transforms = weights.transforms.keywords
    return WeightsSource(
        name=f"torchvision:{arch}",
        arch=arch,
        url=weights.url,
        layout="torchvision",
        trained_on="Kinetics-400",
        input_size=(weights.meta["min_temporal_size"], *weights.meta["min_size"]),
        sampling_rate=4,
        mean=tuple(transforms["mean"]),
        std=tuple(transforms["std"]),
        top1=weights.meta["_metrics"]["Kinetics-400"]["acc@1"],
        note=f"torchvision {type(weights).__name__}.{weights.name}; " + weights.meta["_docs"],
        torchvision_weights=weights,
    )


_PYTORCHVIDEO_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo"

SOURCES: dict[str, WeightsSource] = {
    "torchvision:mvit_v1_b": _torchvision_source("mvit_v1_b", MViT_V1_B_Weights.KINETICS400_V1),
    "torchvision:mvit_v2_s": _torchvision_source("mvit_v2_s", MViT_V2_S_Weights.KINETICS400_V1),
    "pytorchvideo:mvit_base_16x4": WeightsSource(
        name="pytorchvideo:mvit_base_16x4",
        arch="mvit_v1_b",
        url=f"{_PYTORCHVIDEO_ZOO}/kinetics/MVIT_B_16x4.pyth",
        layout="pytorchvideo",
        trained_on="Kinetics-400",
        input_size=(16, 224, 224),
        sampling_rate=4,
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
        top1=78.9,
        note="pytorchvideo.models.hub.mvit_base_16x4 (PySlowFast-trained MViT-B)",
    ),
    "pytorchvideo:mvit_base_32x3": WeightsSource(
        name="pytorchvideo:mvit_base_32x3",
        arch="mvit_v1_b",
        url=f"{_PYTORCHVIDEO_ZOO}/kinetics/MVIT_B_32x3_f294077834.pyth",
        layout="pytorchvideo",
        trained_on="Kinetics-400",
        input_size=(32, 224, 224),
        sampling_rate=3,
        mean=(0.45, 0.45, 0.45),
        std=(0.225, 0.225, 0.225),
        top1=80.3,
        note="pytorchvideo.models.hub.mvit_base_32x3; its 16 temporal positions are interpolated for 16-frame clips",
    ),
}


def resolve_source(source: str, arch: str) -> WeightsSource | None:
    """The named source ``source`` means for a backbone of ``arch`` (None when it is not a name).

    Raises WeightsLoadError for an unknown name under a known prefix, or a source made for another arch.
    """
    name = f"torchvision:{arch}" if source == "torchvision" else source
    if name in SOURCES:
        found = SOURCES[name]
        if found.arch != arch:
            raise WeightsLoadError(
                f"weights {source!r} are {found.arch} weights but the backbone is {arch} "
                f"(set backbone.arch: {found.arch})"
            )
        return found
    prefix = source.split(":", 1)[0]
    if ":" in source and prefix in ("torchvision", "pytorchvideo"):
        raise WeightsLoadError(f"unknown weights name {source!r}; known: 'torchvision', {', '.join(sorted(SOURCES))}")
    return None


# --------------------------------------------------------------------------------------------------
# The report


@dataclass
class LoadReport:
    """What :func:`load_backbone_weights` did with each key (torchvision names, backbone-relative).

    ``loaded``: copied into the backbone (interpolated ones included); ``interpolated``: key -> (checkpoint
    shape, backbone shape); ``missing``: backbone keys the source lacks; ``unexpected``: source keys the
    backbone lacks; ``mismatched``: key -> (checkpoint shape, backbone shape), not loaded; ``head``: the
    classifier (or, in a whole-model checkpoint, non-backbone) keys, expected to be unused.
    """

    source: str
    layout: str
    arch: str
    loaded: list[str] = field(default_factory=list)
    interpolated: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    head: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every backbone tensor was loaded and every source tensor was used (head aside)."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """A readable account listing every key that was interpolated, missing, unexpected or mismatched."""
        lines = [
            f"weights {self.source} ({self.layout} layout) -> {self.arch} backbone: {len(self.loaded)} tensors loaded "
            f"({len(self.interpolated)} interpolated), {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.mismatched)} shape mismatches; {len(self.head)} head keys unused (expected)"
        ]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  interpolated: {k} {_shape(a)} -> {_shape(b)}" for k, (a, b) in self.interpolated.items()]
        lines += [f"  missing: {k}" for k in self.missing]
        lines += [f"  unexpected: {k}" for k in self.unexpected]
        lines += [
            f"  shape mismatch: {k}: checkpoint {_shape(a)} vs backbone {_shape(b)}"
            for k, (a, b) in self.mismatched.items()
        ]
        if self.head:
            lines.append(f"  unused head keys: {', '.join(self.head)}")
        return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


# --------------------------------------------------------------------------------------------------
# Key layouts: pytorchvideo and PySlowFast -> torchvision

# Block-level renames shared by pytorchvideo and PySlowFast (their blocks use the same names).
_BLOCK_RULES: list[tuple[str, str]] = [
    (r"^(blocks\.\d+)\.attn\.proj\.", r"\1.attn.project.0."),
    (r"^(blocks\.\d+)\.attn\.pool_([qkv])\.weight$", r"\1.attn.pool_\2.pool.weight"),
    (r"^(blocks\.\d+)\.attn\.norm_([qkv])\.", r"\1.attn.pool_\2.norm_act.0."),
    (r"^(blocks\.\d+)\.mlp\.fc1\.", r"\1.mlp.0."),
    (r"^(blocks\.\d+)\.mlp\.fc2\.", r"\1.mlp.3."),
    (r"^(blocks\.\d+)\.proj\.", r"\1.project."),
]

_PYTORCHVIDEO_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.patch_model\.", "conv_proj."),
    (r"^cls_positional_encoding\.cls_token$", "pos_encoding.class_token"),
    (r"^cls_positional_encoding\.pos_embed_spatial$", "pos_encoding.spatial_pos"),
    (r"^cls_positional_encoding\.pos_embed_temporal$", "pos_encoding.temporal_pos"),
    (r"^cls_positional_encoding\.pos_embed_class$", "pos_encoding.class_pos"),
    (r"^norm_embed\.", "norm."),
    (r"^head\.proj\.", "head.1."),
    *_BLOCK_RULES,
]

_PYSLOWFAST_RULES: list[tuple[str, str]] = [
    (r"^patch_embed\.proj\.", "conv_proj."),
    (r"^cls_token$", "pos_encoding.class_token"),
    (r"^pos_embed_spatial$", "pos_encoding.spatial_pos"),
    (r"^pos_embed_temporal$", "pos_encoding.temporal_pos"),
    (r"^pos_embed_class$", "pos_encoding.class_pos"),
    (r"^head\.projection\.", "head.1."),
    *_BLOCK_RULES,
]

# torchvision keeps class token/position as (C,) and tables as (N, C); the others add leading 1-dims.
_FLATTEN = {
    "pos_encoding.class_token": lambda t: t.reshape(-1),
    "pos_encoding.class_pos": lambda t: t.reshape(-1),
    "pos_encoding.spatial_pos": lambda t: t.reshape(-1, t.shape[-1]),
    "pos_encoding.temporal_pos": lambda t: t.reshape(-1, t.shape[-1]),
}


def _merge_qkv(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Separate ``attn.q/k/v`` linears -> torchvision's fused ``attn.qkv`` (rows: all q, then k, then v)."""
    out = dict(state)
    for key in list(state):
        match = re.match(r"^(blocks\.\d+\.attn)\.q\.(weight|bias)$", key)
        if not match:
            continue
        prefix, kind = match.groups()
        parts = [f"{prefix}.{name}.{kind}" for name in ("q", "k", "v")]
        if all(p in state for p in parts):
            out[f"{prefix}.qkv.{kind}"] = torch.cat([state[p] for p in parts], dim=0)
            for p in parts:
                del out[p]
    return out


def _convert(state: Mapping[str, Tensor], rules: list[tuple[str, str]]) -> dict[str, Tensor]:
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out: dict[str, Tensor] = {}
    for key, value in _merge_qkv(dict(state)).items():
        new = key
        for pattern, repl in compiled:
            new, hits = pattern.subn(repl, new)
            if hits:
                break
        out[new] = _FLATTEN[new](value) if new in _FLATTEN and isinstance(value, Tensor) else value
    return out


def convert_pytorchvideo_mvit(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A pytorchvideo ``MultiscaleVisionTransformers`` state dict in torchvision's ``MViT`` key layout.

    q/k/v linears are fused into ``qkv``; pool norms, MLP, projections and the class/position parameters
    are renamed (and flattened); the classifier becomes ``head.1.*``. Keys with no torchvision counterpart
    (e.g. a joint ``pos_embed``) keep their names, so that a loader reports them.
    """
    return _convert(state_dict, _PYTORCHVIDEO_RULES)


def convert_pyslowfast_mvit(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A PySlowFast ``MViT`` (v1 or v2) state dict in torchvision's ``MViT`` key layout.

    Handles both fused ``attn.qkv`` (current PySlowFast) and separate ``attn.q/k/v`` (older MViTv1
    checkpoints); relative-position tables keep their names. Unknown keys keep their names.
    """
    return _convert(state_dict, _PYSLOWFAST_RULES)


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    """"torchvision", "pytorchvideo" or "pyslowfast", from the keys; raises WeightsLoadError otherwise."""
    keys = list(state_dict)
    if any(k.startswith(("conv_proj.", "pos_encoding.")) for k in keys):
        return "torchvision"
    if any(k.startswith(("patch_embed.patch_model.", "cls_positional_encoding.", "norm_embed.")) for k in keys):
        return "pytorchvideo"
    if any(k.startswith("patch_embed.proj.") or k in ("cls_token", "pos_embed_spatial", "pos_embed") for k in keys):
        return "pyslowfast"
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    raise WeightsLoadError(
        f"cannot tell the MViT key layout of this state dict (expected torchvision 'conv_proj.*', pytorchvideo "
        f"'patch_embed.patch_model.*' or PySlowFast 'patch_embed.proj.*' keys); its keys: {shown or 'none'}"
    )


def to_torchvision_layout(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """The state dict in torchvision's layout, and the layout it was detected in."""
    layout = detect_layout(state_dict)
    if layout == "pytorchvideo":
        return convert_pytorchvideo_mvit(state_dict), layout
    if layout == "pyslowfast":
        return convert_pyslowfast_mvit(state_dict), layout
    return dict(state_dict), layout


# --------------------------------------------------------------------------------------------------
# Reading files and downloading


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The state dict held by the file at ``path`` and the config stored beside it (or None).

    Always ``torch.load(path, map_location="cpu", weights_only=True)``. Raises FileNotFoundError, or
    WeightsLoadError for a file that is not a checkpoint, holds non-tensor objects or no state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} not found (named weights: 'torchvision', {', '.join(sorted(SOURCES))})"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise WeightsLoadError(
            f"{path}: refused to load: the file holds objects other than tensors and plain containers, and "
            f"checkpoints are only read with torch.load(weights_only=True) so that loading cannot run code. If "
            f"you trust the file, re-save its state dict alone (torch.save(checkpoint['model_state'], ...)). "
            f"torch said: {err}"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise WeightsLoadError(f"{path}: not a readable PyTorch checkpoint: {err}") from None
    return _unwrap(obj, str(path))


def _unwrap(obj: Any, where: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if not isinstance(obj, Mapping):
        raise WeightsLoadError(f"{where}: expected a state dict or a checkpoint dict, got {type(obj).__name__}")
    config = obj.get("config") if isinstance(obj.get("config"), Mapping) else None
    for key in ("model", "model_state", "state_dict"):
        if isinstance(obj.get(key), Mapping):
            return dict(obj[key]), config
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        return dict(obj), None
    raise WeightsLoadError(
        f"{where}: no state dict found: expected a mapping of tensors, or one under 'model', 'model_state' or "
        f"'state_dict' (top-level keys: {', '.join(map(str, list(obj)[:10]))})"
    )


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Sockets opened inside give up after ``seconds`` without progress (urllib sets no time-out itself)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(source: WeightsSource, progress: bool) -> Any:
    """The checkpoint object of a named source, from torch.hub's cache or the network."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / source.file_name
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            if source.torchvision_weights is not None:
                return source.torchvision_weights.get_state_dict(
                    progress=progress, check_hash=True, map_location="cpu", weights_only=True
                )
            return torch.hub.load_state_dict_from_url(
                source.url, map_location="cpu", progress=progress, weights_only=True
            )
    except OSError as err:  # URLError, HTTPError, time-outs, refused connections
        raise WeightsUnavailableError(
            f"cannot download the {source.name} weights from {source.url}: {err}. Without network access, download "
            f"that file on another machine (e.g. `curl -LO {source.url}`) and pass its local path as the weights "
            f"source (model.backbone.weights=/path/to/{source.file_name}), or copy it to {cached} where torch.hub "
            f"finds it."
        ) from err
    except pickle.UnpicklingError as err:
        raise WeightsLoadError(f"{cached}: the downloaded {source.name} file cannot be read safely: {err}") from err


# --------------------------------------------------------------------------------------------------
# Matching a state dict to the backbone


def _source_grid(config: Mapping[str, Any] | None) -> tuple[int, int, int] | None:
    """The patch grid of the clip size a checkpoint's config was built for, when the config says."""
    if not config:
        return None
    for section in (config.get("model", {}).get("backbone") if isinstance(config.get("model"), Mapping) else None,
                    config.get("backbone"), config):
        if isinstance(section, Mapping) and isinstance(section.get("input_size"), list | tuple):
            size = section["input_size"]
            if len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size):
                return patch_grid(size)
    return None


def _config_arch(config: Mapping[str, Any] | None) -> str | None:
    if not config:
        return None
    for section in (config.get("model", {}).get("backbone") if isinstance(config.get("model"), Mapping) else None,
                    config.get("backbone"), config):
        if isinstance(section, Mapping) and isinstance(section.get("arch"), str):
            return section["arch"]
    return None


def _resizer(
    key: str, value: Tensor, target: torch.Size, backbone: MViTBackbone, grid: tuple[int, int, int] | None
) -> Callable[[], Tensor] | None:
    """How to re-sample ``value`` to ``target`` when ``key`` is a positional table (None: it cannot be)."""
    if value.dim() != 2 or len(target) != 2 or value.shape[1] != target[1]:
        return None
    if key == "pos_encoding.spatial_pos":
        if grid is not None and grid[1] * grid[2] == value.shape[0]:
            src = grid[1:]
        else:
            side = math.isqrt(value.shape[0])
            if side * side != value.shape[0]:
                return None  # a non-square grid of unknown aspect
            src = (side, side)
        return lambda: resize_spatial_pos(value, src, backbone.pos_encoding.spatial_size)
    if key == "pos_encoding.temporal_pos" or re.search(r"\.attn\.rel_pos_[hwt]$", key):
        return lambda: resize_rel_pos(value, target[0])
    return None


def _strip_prefixes(state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop DDP's ``module.``; of a whole-model checkpoint keep ``backbone.*`` (returns the other keys too)."""
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        others = [k for k in state if not k.startswith("backbone.")]
        return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}, others
    return state, []


def load_backbone_weights(
    backbone: MViTBackbone,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
    progress: bool = True,
) -> LoadReport:
    """Load initial weights from ``source`` (a name, a file path or a state dict) into ``backbone``.

    The source is converted to torchvision's layout, positional tables trained at another clip size are
    re-sampled, every other tensor is shape-checked. With ``strict`` (default) nothing is loaded and
    WeightsLoadError (with the report's summary) is raised unless every backbone tensor is provided and
    every source tensor used (classifier keys aside); without it, what fits is loaded and a warning with the
    summary is issued. Raises WeightsUnavailableError when named weights cannot be downloaded,
    FileNotFoundError / WeightsLoadError for unreadable files.
    """
    config: Mapping[str, Any] | None = None
    grid: tuple[int, int, int] | None = None
    if isinstance(source, Mapping):
        label = "<state dict>"
        raw, config = _unwrap(source, label)
    else:
        label = os.fspath(source)
        named = resolve_source(label, backbone.arch) if isinstance(source, str) else None
        if named is not None:
            label = named.name
            raw, config = _unwrap(_download(named, progress), named.url)
            grid = patch_grid(named.input_size)
        else:
            raw, config = read_checkpoint(source)
    grid = grid or _source_grid(config)

    state, outside = _strip_prefixes(raw)
    converted, layout = to_torchvision_layout(state)
    report = LoadReport(source=label, layout=layout, arch=backbone.arch, head=list(outside))
    stored_arch = _config_arch(config)
    if stored_arch is not None and stored_arch != backbone.arch:
        report.notes.append(f"the checkpoint's config says arch {stored_arch}, the backbone is {backbone.arch}")

    model_state = backbone.state_dict()
    accepted: dict[str, Tensor] = {}
    for key, value in converted.items():
        if key.startswith("head."):
            report.head.append(key)
        elif key not in model_state or not isinstance(value, Tensor):
            report.unexpected.append(key)
        elif value.shape == model_state[key].shape:
            accepted[key] = value
        else:
            target = model_state[key].shape
            resize = _resizer(key, value, target, backbone, grid)
            if resize is None:
                report.mismatched[key] = (tuple(value.shape), tuple(target))
            else:
                accepted[key] = resize()
                report.interpolated[key] = (tuple(value.shape), tuple(target))
    report.loaded = [k for k in model_state if k in accepted]
    report.missing = [k for k in model_state if k not in accepted and k not in report.mismatched]
    if "pos_encoding.spatial_pos" in report.missing and any(k.endswith("rel_pos_h") for k in report.unexpected):
        report.notes.append("the source holds MViTv2 weights (relative positions): use arch mvit_v2_s")
    if any(k.endswith("rel_pos_h") for k in report.missing) and "pos_encoding.spatial_pos" in report.unexpected:
        report.notes.append("the source holds MViTv1 weights (absolute positions): use arch mvit_v1_b")

    if not report.ok:
        if strict:
            raise WeightsLoadError(f"weights {label} do not fit the {backbone.arch} backbone:\n{report.summary()}")
        warnings.warn(report.summary(), stacklevel=2)
    backbone.load_state_dict(accepted, strict=False)
    if layout == "pytorchvideo":
        _use_pytorchvideo_pool_norms(backbone)
        report.notes.append("attention-pool LayerNorm eps set to 1e-5, as pytorchvideo trained them")
    return report


def _use_pytorchvideo_pool_norms(backbone: nn.Module) -> None:
    """pytorchvideo's attention-pool norms use LayerNorm's default eps 1e-5 (torchvision's: 1e-6).

    The weights were trained with 1e-5; keeping 1e-6 would move the features (by ~1e-3 on random weights).
    """
    from detection.models.backbone import ChannelsLastPool  # MViTBackbone's every pool

    for module in backbone.modules():
        if isinstance(module, ChannelsLastPool) and module.norm_act is not None:  # not the skip pool
            for norm in module.norm_act:
                if isinstance(norm, nn.LayerNorm):
                    norm.eps = 1e-5
