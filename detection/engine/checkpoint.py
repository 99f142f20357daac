"""Training checkpoints: an ``actdet-1`` model checkpoint plus a ``train_state`` entry, written atomically.

``load_checkpoint(out/last.pt)`` (detection.models.zoo) reads one for inference as it is; resuming reads the
rest. Layout (``torch.save``, read back with ``weights_only=True``)::

    {"format": "actdet-1", "model": state_dict (CPU), "config": resolved Config dict,
     "label_map": [[id, name], ...],
     "train_state": {"step", "epoch", "batch_in_epoch", "best_metric", "world_size", "extra",
                     "optimizer": state_dict, "scheduler": state_dict, "scaler": state_dict | None,
                     "rng": [per-rank {"python", "numpy", "torch", "cuda"}]}}

RNG states are stored as tensors, ints and floats (no numpy objects), one entry per rank, so that every
process of a resumed run continues its own random stream. ``step`` counts optimizer steps done; ``epoch`` is
the epoch in progress and ``batch_in_epoch`` the batches of it already consumed (the train sampler's
``start_batch`` on resume).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from detection.config import Config, config_to_dict
from detection.engine.distributed import all_reduce_sum, unwrap_model
from detection.formats.files import atomic_path
from detection.models.zoo import CHECKPOINT_FORMAT, read_actdet_checkpoint

__all__ = [
    "RESUME_FREE_KEYS",
    "NonFiniteLossError",
    "TrainState",
    "best_checkpoint_path",
    "capture_rng_state",
    "check_finite",
    "config_differences",
    "copy_checkpoint",
    "last_checkpoint_path",
    "load_training_checkpoint",
    "restore_rng_state",
    "save_training_checkpoint",
]

# Config keys (dotted prefixes) that may change between a run and its resumption: they do not change the
# numbers a step computes.
RESUME_FREE_KEYS = (
    "name",
    "output_dir",
    "detector",
    "tubes",
    "data.root",
    "model.backbone.weights",
    "model.backbone.checkpointing",
    "train.num_workers",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
)


@dataclass
class TrainState:
    """Where a training run stands; what the loop needs besides the modules' own states.

    ``step``: optimizer steps done. ``epoch``: the epoch in progress. ``batch_in_epoch``: its batches
    (accumulation passes) already consumed. ``best_metric``: the best val mAP so far (None before the first
    validation). ``world_size``: processes of the run that wrote it. ``extra``: anything else (plain values).
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    world_size: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped without writing a checkpoint."""

    def __init__(self, step: int, value: float, checkpoint: str | os.PathLike | None = None) -> None:
        self.step, self.value, self.checkpoint = step, value, checkpoint
        kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint else "no checkpoint had been written"
        super().__init__(
            f"loss is {value} at step {step}: training stopped and {kept} (not overwritten); lower train.lr, set "
            "train.clip_grad_norm, or check the data of that step"
        )


def check_finite(loss: torch.Tensor | float, step: int, checkpoint: str | os.PathLike | None = None) -> None:
    """Raise NonFiniteLossError naming ``step`` (and ``checkpoint``, the last good one) when ``loss`` is NaN/inf.

    With several processes, all of them take part and all raise together when any one has a bad loss (call it
    on every rank at the same point, before ``backward``), so none is left waiting in a collective.
    """
    value = float(loss.detach().float().sum()) if isinstance(loss, torch.Tensor) else float(loss)
    bad = all_reduce_sum(0.0 if math.isfinite(value) else 1.0)
    if bad:
        raise NonFiniteLossError(step, value, checkpoint)


# --------------------------------------------------------------------------------------------------
# Paths


def last_checkpoint_path(out_dir: str | os.PathLike) -> Path:
    """``OUT/last.pt``: the checkpoint a run writes as it goes and ``--resume`` reads."""
    return Path(out_dir) / "last.pt"


def best_checkpoint_path(out_dir: str | os.PathLike) -> Path:
    """``OUT/best.pt``: a copy of ``last.pt`` taken when the val mAP improved."""
    return Path(out_dir) / "best.pt"


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` atomically (temporary file + rename); returns ``dst``."""
    dst = Path(dst)
    with atomic_path(dst, _temp_name(dst)) as tmp:
        shutil.copyfile(src, tmp)
    return dst


# --------------------------------------------------------------------------------------------------
# RNG states as plain values


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy (global), torch CPU and CUDA RNG states, as tensors and numbers."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    return {
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Set the RNGs from :func:`capture_rng_state`'s dict. CUDA states are restored when the GPU count matches."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(f"CUDA RNG states saved for {len(cuda)} GPUs, {torch.cuda.device_count()} here: "
                          "not restored", stacklevel=2)


# --------------------------------------------------------------------------------------------------
# Saving and loading


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu")
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _check_plain(obj: Any, where: str) -> None:
    """Raise TypeError unless ``obj`` is made of what ``torch.load(weights_only=True)`` reads back."""
    if obj is None or isinstance(obj, bool | int | float | str | torch.Tensor):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, where)
            _check_plain(value, f"{where}.{key}")
        return
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored in a checkpoint read with weights_only=True "
                    "(use numbers, strings, tensors, lists and dicts)")


def _world_rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def save_training_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    scaler: Any | None,
    state: TrainState,
    config: Config | Mapping[str, Any],
    *,
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a training checkpoint to ``path`` atomically (temporary file + rename); returns the path.

    ``model`` may be wrapped in DDP (its ``.module`` is saved). ``rng_states``: one
    :func:`capture_rng_state` per rank, in rank order (``all_gather_object(capture_rng_state())`` run on every
    rank); None stores this process's only. Call it on rank 0 only; a failure leaves an existing file as it
    was. Raises TypeError naming the entry when ``state.extra`` holds values ``weights_only`` cannot read.
    """
    path = Path(path)
    core = unwrap_model(model)
    _check_plain(state.extra, "extra")
    if state.best_metric is not None and not isinstance(state.best_metric, int | float):
        raise TypeError(f"best_metric must be a number or None, got {type(state.best_metric).__name__}")
    label_map = getattr(core, "label_map", None)
    train_state = {
        "step": int(state.step),
        "epoch": int(state.epoch),
        "batch_in_epoch": int(state.batch_in_epoch),
        "best_metric": None if state.best_metric is None else float(state.best_metric),
        "world_size": int(state.world_size),
        "extra": state.extra,
        "optimizer": _to_cpu(optimizer.state_dict()),
        "scheduler": None if scheduler is None else _to_cpu(scheduler.state_dict()),
        "scaler": None if scaler is None else _to_cpu(scaler.state_dict()),
        "rng": _to_cpu(rng_states if rng_states is not None else [capture_rng_state()]),
    }
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().to("cpu") for k, v in core.state_dict().items()},
        "config": config_to_dict(config) if not isinstance(config, Mapping) else dict(config),
        "label_map": [] if label_map is None else [[int(i), str(n)] for i, n in label_map],
        "train_state": train_state,
    }
    with atomic_path(path, _temp_name(path)) as tmp:
        torch.save(payload, tmp)
    return path


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat if flat or not prefix else {prefix: {}}
    return {prefix: list(tree) if isinstance(tree, tuple) else tree}


def config_differences(
    saved: Mapping[str, Any], current: Config | Mapping[str, Any], free: Iterable[str] = RESUME_FREE_KEYS
) -> list[str]:
    """``"key: saved -> current"`` for every dotted key that differs, except keys under a prefix in ``free``."""
    now = config_to_dict(current) if not isinstance(current, Mapping) else current
    a, b = _flatten(saved), _flatten(config_to_dict(dict(now)))
    free = tuple(free)

    def is_free(key: str) -> bool:
        return any(key == f or key.startswith(f"{f}.") for f in free)

    return [
        f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}"
        for key in sorted(set(a) | set(b))
        if not is_free(key) and a.get(key, "<absent>") != b.get(key, "<absent>")
    ]


def load_training_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    *,
    config: Config | Mapping[str, Any] | None = None,
    allow_changes: Iterable[str] = (),
    restore_rng: bool = True,
) -> TrainState:
    """Restore a run from ``path`` into ``model`` (DDP-wrapped or not), optimizer, scheduler, scaler and RNGs.

    Build the optimizer and scheduler exactly as the run did (same config), then call this on every rank; rank
    ``r`` takes the RNG state saved for rank ``r`` (with another world size: a warning, and the RNGs are left as
    seeded). ``config``: the resolved config of the resumed run; keys outside :data:`RESUME_FREE_KEYS` and
    ``allow_changes`` must match the saved one. Raises FileNotFoundError, or ValueError naming the file: not
    an actdet-1 checkpoint, no training state, a different config (listing the keys), or weights/optimizer
    state that do not fit.
    """
    data = read_actdet_checkpoint(path)
    ts = data.get("train_state")
    if not isinstance(ts, dict):
        raise ValueError(f"{path}: a weights-only actdet-1 checkpoint (no train_state): it cannot resume a run")
    if config is not None:
        differences = config_differences(data["config"], config, (*RESUME_FREE_KEYS, *allow_changes))
        if differences:
            raise ValueError(
                f"{path}: saved with a different config; resume with the run's config or start a new --out. "
                f"Differences (saved -> now): {'; '.join(differences)}"
            )
    try:
        unwrap_model(model).load_state_dict(data["model"])
        if optimizer is not None:
            optimizer.load_state_dict(ts["optimizer"])
        if scheduler is not None and ts.get("scheduler") is not None:
            scheduler.load_state_dict(ts["scheduler"])
        if scaler is not None and ts.get("scaler") is not None:
            scaler.load_state_dict(ts["scaler"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: does not fit the model/optimizer built from the config: {err}") from None
    world, rank = _world_rank()
    rng = ts.get("rng") or []
    if restore_rng:
        if len(rng) != world:
            warnings.warn(f"{path}: written by {len(rng)} process(es), resumed by {world}: random streams are "
                          "re-seeded, not restored (the run will not repeat bit for bit)", stacklevel=2)
        else:
            restore_rng_state(rng[rank])
    best = ts.get("best_metric")
    return TrainState(
        step=int(ts["step"]),
        epoch=int(ts["epoch"]),
        batch_in_epoch=int(ts["batch_in_epoch"]),
        best_metric=None if best is None else float(best),
        world_size=int(ts.get("world_size", len(rng) or 1)),
        extra=dict(ts.get("extra") or {}),
    )
