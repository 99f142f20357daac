"""Optimizer with parameter groups (weight-decay exclusions, layer-wise lr decay) and the per-step lr schedule.

Parameter groups, in the order parameters first appear in ``model.named_parameters()``:

- no weight decay for 0/1-dimensional parameters (norm weights, biases, the class token) and for positional
  embeddings (MViTv1's ``pos_encoding.*``, MViTv2's relative tables ``rel_pos_h/w/t``);
- with ``layer_decay`` set, an lr scale per depth: 0 for the patch embedding and position encoding,
  ``i + 1`` for backbone block ``i``, ``depth + 1`` for everything after the blocks (the final norm and the
  head); depth ``d`` gets ``layer_decay ** (depth + 1 - d)``, so the head keeps the full lr (MAE/BEiT's rule).

The schedule counts optimizer steps: step ``s`` (0-based) uses ``lr * lr_factor(s)`` with a linear warmup
from ``warmup_start_factor`` to 1 over ``warmup`` steps, then a half cosine from 1 to ``min_lr_factor`` that
reaches the floor at step ``total``. It is a pure function of the step, so a restored scheduler gives the same
values as an uninterrupted one.
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from detection.config import TrainConfig
from detection.engine.distributed import unwrap_model

__all__ = [
    "build_optimizer",
    "build_scheduler",
    "layer_id",
    "lr_factor",
    "no_weight_decay",
    "param_groups",
    "schedule_steps",
    "use_bf16",
]

_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")
_EMBEDDINGS = ("backbone.conv_proj.", "backbone.pos_encoding.")
_POSITION_NAMES = ("pos_encoding.", "rel_pos_", "pos_embed", "cls_token", "class_token")


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Whether parameter ``name`` is exempt from weight decay (norms, biases, positional embeddings, class token)."""
    return param.ndim <= 1 or any(part in name for part in _POSITION_NAMES)


def layer_id(name: str, depth: int) -> int:
    """Depth of parameter ``name`` for layer-wise lr decay: 0 embeddings, i + 1 block i, depth + 1 the rest."""
    if name.startswith(_EMBEDDINGS):
        return 0
    match = _BLOCK.match(name)
    if match:
        return int(match.group(1)) + 1
    return depth + 1


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """Optimizer parameter groups of the trainable parameters of ``model`` (wrappers such as DDP are unwrapped).

    Each group carries ``params``, ``weight_decay``, ``lr_scale`` (multiplied into the lr by
    :func:`build_optimizer`), ``layer_id`` and a ``name`` like ``"layer3_decay"``. Raises ValueError when
    ``layer_decay`` is set and the model has no ``backbone.blocks`` to decay over.
    """
    core = unwrap_model(model)
    depth = 0
    if layer_decay is not None:
        blocks = getattr(getattr(core, "backbone", None), "blocks", None)
        if blocks is None:
            raise ValueError(f"layer_decay needs a model with backbone.blocks; {type(core).__name__} has none")
        depth = len(blocks)
    groups: dict[str, dict[str, Any]] = {}
    for name, param in core.named_parameters():
        if not param.requires_grad:
            continue
        decay = not no_weight_decay(name, param)
        lid = layer_id(name, depth) if layer_decay is not None else 0
        scale = layer_decay ** (depth + 1 - lid) if layer_decay is not None else 1.0
        key = f"layer{lid}_{'decay' if decay else 'no_decay'}"
        group = groups.setdefault(
            key,
            {"name": key, "params": [], "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale,
             "layer_id": lid},
        )
        group["params"].append(param)
    if not groups:
        raise ValueError(f"{type(core).__name__} has no trainable parameters")
    return list(groups.values())


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (``cfg.optimizer``) over :func:`param_groups`; each group's lr is ``cfg.lr * lr_scale``.

    Build it on the bare model (before wrapping in DDP) or on the wrapper: the names are the same.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    for group in groups:
        group["lr"] = cfg.lr * group["lr_scale"]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected 'adamw' or 'sgd'")


def schedule_steps(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(total steps, warmup steps) of ``cfg`` for an epoch of ``steps_per_epoch`` optimizer steps.

    ``max_steps`` wins over ``epochs`` and ``warmup_steps`` over ``warmup_epochs`` (rounded to whole steps);
    the warmup is capped at the total. Raises ValueError when ``steps_per_epoch`` < 1 is needed.
    """
    needs_epoch = cfg.max_steps is None or (cfg.warmup_steps is None and cfg.warmup_epochs)
    if needs_epoch and steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch} (is the train split smaller than "
                         "one global batch?)")
    total = cfg.max_steps if cfg.max_steps is not None else int(cfg.epochs) * steps_per_epoch
    if cfg.warmup_steps is not None:
        warmup = cfg.warmup_steps
    else:
        warmup = round((cfg.warmup_epochs or 0.0) * steps_per_epoch)
    return total, min(warmup, total)


def lr_factor(
    step: int, total_steps: int, warmup_steps: int, start_factor: float = 0.01, min_factor: float = 0.0
) -> float:
    """The lr multiplier of optimizer step ``step`` (0-based): linear warmup, then cosine to ``min_factor``.

    Warmup: ``start_factor`` at step 0, rising linearly to 1 at ``warmup_steps``. Then
    ``min + (1 - min) * (1 + cos(pi * p)) / 2`` with ``p = (step - warmup) / (total - warmup)`` clamped to
    [0, 1], so steps past the end stay at the floor.
    """
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    span = total_steps - warmup_steps
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0) if span > 0 else 1.0
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """A per-step LambdaLR: call ``scheduler.step()`` once after every ``optimizer.step()``.

    Every group follows ``group_lr * lr_factor(step)`` (the groups keep their layer-decay scales).
    ``scheduler.last_epoch`` is the number of optimizer steps done.
    """
    total, warmup = schedule_steps(cfg, steps_per_epoch)
    factor = partial(
        lr_factor, total_steps=total, warmup_steps=warmup, start_factor=cfg.warmup_start_factor,
        min_factor=cfg.min_lr_factor,
    )
    return LambdaLR(optimizer, factor)


def use_bf16(cfg: TrainConfig, device: torch.device | str) -> bool:
    """Whether to train under bf16 autocast: ``cfg.bf16``, or when it is None, on CUDA only."""
    device = torch.device(device)
    return cfg.bf16 if cfg.bf16 is not None else device.type == "cuda"
