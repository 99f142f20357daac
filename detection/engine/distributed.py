"""Processes started by ``torchrun`` (one node or many), collectives that also work in one process, seeding,
and the train sampler that makes N processes see exactly what one process sees.

``init_distributed`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): NCCL with one GPU per process on CUDA, gloo on the CPU. Without those variables (or with
``WORLD_SIZE=1``) it is a single process and every collective here is the identity.

:class:`GlobalBatchSampler` cuts each epoch's permutation into *global* batches and gives process ``r`` the
``r``-th slice of every one of them. With the loss averaged per global batch (see :func:`loss_weight`) and DDP
averaging gradients, 2 processes with batch b/2 each make the same updates as 1 process with batch b.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from detection.device import resolve_device

__all__ = [
    "DistContext",
    "GlobalBatchSampler",
    "all_gather_object",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "epoch_loader",
    "eval_shard",
    "init_distributed",
    "is_main",
    "loss_weight",
    "no_sync",
    "unwrap_model",
    "seed_everything",
]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or any wrapper with ``.module``), else ``model``."""
    return model.module if isinstance(getattr(model, "module", None), nn.Module) else model


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its ``local_rank`` on the node, its ``device``
    and the ``backend`` ("nccl", "gloo", or None for a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        barrier()

    def all_reduce_mean(self, value: torch.Tensor | float) -> torch.Tensor | float:
        return all_reduce_mean(value)

    def all_reduce_sum(self, value: torch.Tensor | float) -> torch.Tensor | float:
        return all_reduce_sum(value)

    def all_gather_object(self, obj: Any) -> list[Any]:
        return all_gather_object(obj)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` on this device, inside DistributedDataParallel when there are several processes."""
        model = model.to(self.device)
        if not self.distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def close(self) -> None:
        """Leave the process group (call once at the end of a distributed job)."""
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join torchrun's process group, or make a single-process context when torchrun's variables are absent.

    ``device``: "auto" (CUDA when available), "cpu" or "cuda". Several processes on CUDA use
    ``cuda:LOCAL_RANK`` and NCCL; on the CPU gloo. Raises RuntimeError when only some of RANK, WORLD_SIZE and
    LOCAL_RANK are set, or when there are fewer GPUs on the node than LOCAL_RANK needs.
    """
    device = resolve_device(device)
    present = [name for name in _TORCHRUN_VARS if name in os.environ]
    if not present or os.environ.get("WORLD_SIZE") == "1":
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return DistContext(device=device)
    if len(present) != len(_TORCHRUN_VARS):
        missing = sorted(set(_TORCHRUN_VARS) - set(present))
        raise RuntimeError(f"torchrun environment incomplete: {', '.join(missing)} not set (start with torchrun)")
    rank, world, local = (int(os.environ[name]) for name in _TORCHRUN_VARS)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} needs GPU {local} but this node has {torch.cuda.device_count()}")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device, backend=backend)


def is_main() -> bool:
    """Whether this is rank 0 (always true in a single process)."""
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if _active():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor | float) -> torch.Tensor | float:
    """Sum of ``value`` over the processes; a tensor comes back as a new tensor, a number as a float."""
    if not _active():
        return value.clone() if isinstance(value, torch.Tensor) else float(value)
    tensor = value.detach().clone() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    original_device = value.device if isinstance(value, torch.Tensor) else torch.device("cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor = tensor.to(original_device)
    return tensor if isinstance(value, torch.Tensor) else float(tensor)


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """Mean of ``value`` over the processes (for logging losses and timings)."""
    total = all_reduce_sum(value)
    world = dist.get_world_size() if _active() else 1
    return total / world


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; ``[obj]`` in a single process)."""
    if not _active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def loss_weight(local_count: int | float) -> float:
    """The factor that turns this process's mean loss over ``local_count`` items into its share of the mean
    over the whole global batch, given that DDP averages gradients over the processes.

    ``local_mean * loss_weight(n)`` = ``sum_local * world / sum_all``: with a different number of boxes on each
    process, the update equals one process's over the union. 1.0 in a single process; 0.0 when no process has
    an item.
    """
    if not _active():
        return 1.0
    total = all_reduce_sum(float(local_count))
    return float(local_count) * dist.get_world_size() / total if total > 0 else 0.0


def no_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """``model.no_sync()`` for accumulation passes that should not all-reduce yet (``sync`` False on a DDP
    model), else a null context."""
    if not sync and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python ``random``, numpy's global generator and torch (CPU and every GPU) with ``seed + rank``.

    Build the model after seeding with rank 0's seed (or rely on DDP, which copies rank 0's weights to the
    others). Returns the seed used.
    """
    value = int(seed) + int(rank)
    random.seed(value)
    np.random.seed(value % 2**32)  # noqa: NPY002 (the global generator is what third-party code draws from)
    torch.manual_seed(value)
    return value


# --------------------------------------------------------------------------------------------------
# Sampling


class GlobalBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices for one process, as slices of global batches (a ``batch_sampler``).

    ``batch_size``: clips per optimizer step over all processes and accumulation passes (TrainConfig's
    batch_size). Each epoch shuffles ``range(num_samples)`` with a generator seeded ``seed + epoch`` (the
    global RNGs are not touched), keeps ``num_samples // batch_size`` whole steps (the rest is dropped, like
    ``drop_last``), and cuts them into passes of ``batch_size // accumulation_steps`` clips; process ``rank``
    gets clips ``[rank * local, (rank + 1) * local)`` of every pass, ``local = batch_size // (accumulation_steps
    * world_size)``. Every process yields the same number of batches.

    ``set_epoch(epoch, start_batch)`` selects the epoch and skips its first ``start_batch`` batches (passes)
    when resuming. Raises ValueError when the batch does not divide over the processes and passes.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        accumulation_steps: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if batch_size < 1 or accumulation_steps < 1 or batch_size % (accumulation_steps * world_size):
            raise ValueError(
                f"global batch_size {batch_size} must be a positive multiple of accumulation_steps "
                f"{accumulation_steps} x world_size {world_size}"
            )
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.world_size, self.rank = int(world_size), int(rank)
        self.accumulation_steps, self.seed, self.shuffle = int(accumulation_steps), int(seed), shuffle
        self.pass_size = self.batch_size // self.accumulation_steps  # clips per pass over all processes
        self.local_batch_size = self.pass_size // self.world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch."""
        return self.num_samples // self.batch_size

    @property
    def batches_per_epoch(self) -> int:
        """Batches (passes) this process gets in a whole epoch: ``steps_per_epoch * accumulation_steps``."""
        return self.steps_per_epoch * self.accumulation_steps

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Use ``epoch``'s order and skip its first ``start_batch`` batches (0 <= start_batch <= batches)."""
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} is not in [0, {self.batches_per_epoch}]")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def order(self, epoch: int) -> list[int]:
        """The epoch's permutation of all indices (the same in every process)."""
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator().manual_seed(self.seed + int(epoch))
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order(self.epoch)
        lo = self.rank * self.local_batch_size
        for batch in range(self.start_batch, self.batches_per_epoch):
            start = batch * self.pass_size + lo
            yield order[start : start + self.local_batch_size]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch


def epoch_loader(
    dataset: Dataset,
    sampler: GlobalBatchSampler,
    epoch: int,
    start_batch: int = 0,
    *,
    num_workers: int = 0,
    collate_fn: Callable | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over ``epoch`` of ``sampler`` (from batch ``start_batch`` on), made fresh for each epoch.

    Its worker seeds come from a generator seeded with ``(sampler.seed, epoch)``, not from the global torch
    RNG, so creating it neither shifts the training's random stream nor depends on where a resumed run
    started. (Augmentations that must repeat exactly on resume should draw from a generator seeded by
    ``(seed, epoch, index)``: a skipped start moves batches to other workers.)
    """
    sampler.set_epoch(epoch, start_batch)
    generator = torch.Generator().manual_seed(sampler.seed * 1_000_003 + int(epoch))
    return DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory,
        generator=generator, persistent_workers=False,
    )


def eval_shard(num_samples: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The indices process ``rank`` evaluates: ``rank, rank + world, ...`` (every index exactly once overall,
    unlike DistributedSampler, which pads). Gather the results with :func:`all_gather_object`."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    return list(range(rank, num_samples, world_size))

