"""The training loop of ``actdet train``: one process on the CPU, or many under torchrun.

:func:`train` composes the engine's blocks:

- data: the config's synthetic dataset is rendered first when ``data.synthetic`` is set (rank 0; a
  prepared dataset with the same spec is reused); the train split is an :class:`AvaDataset` whose
  augmentations are drawn from ``(train.seed, epoch, index)``, sampled in global batches
  (:class:`GlobalBatchSampler`), so every process count sees the same clips per step;
- the model: ``build_action_model(cfg.model, ...)`` (gradient checkpointing and initial weights from the
  model config), wrapped in DDP when there are several processes;
- a step: ``accumulation_steps`` forward/backward passes; each pass's mean BCE is weighted by its share
  of the boxes of the whole step over every process, so the update is that of the mean loss over the
  global batch whatever the process count and accumulation; bf16 autocast on CUDA (``train.bf16``);
  gradient clipping (``train.clip_grad_norm``); AdamW or SGD with warmup + cosine per step;
- every ``eval_every`` steps (or at each epoch's end) the val split is evaluated
  (:func:`detection.engine.evaluator.evaluate`: AVA detections CSV + frame-mAP, video-mAP with GT tubes)
  into ``OUT/eval/step_NNNNNNN/``;
- ``OUT/last.pt`` every ``checkpoint_every`` steps (or each epoch's end), after each validation and at the
  end; ``OUT/best.pt`` a copy of it when the val mAP improved (rank 0 only, atomic writes). ``--resume``
  restores model, optimizer, scheduler, step, sampler position and every process's RNGs from ``last.pt``
  and continues as if never stopped;
- ``OUT/metrics.jsonl`` and TensorBoard (``OUT/tensorboard``): train loss, lr, clips/s every ``log_every``
  steps, val metrics at each validation; a progress bar on a terminal; ``OUT/config.yaml`` the resolved
  config.

A NaN or infinite loss stops every process with :class:`NonFiniteLossError` naming the step, before the
bad gradients reach the weights; ``last.pt`` keeps the last good state.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detection.config import Config, save_config
from detection.data import AvaBatch, AvaDataset, collate
from detection.engine.checkpoint import (
    TrainState,
    best_checkpoint_path,
    capture_rng_state,
    check_finite,
    copy_checkpoint,
    last_checkpoint_path,
    load_training_checkpoint,
    save_training_checkpoint,
)
from detection.engine.distributed import (
    DistContext,
    GlobalBatchSampler,
    all_gather_object,
    all_reduce_sum,
    epoch_loader,
    init_distributed,
    no_sync,
    seed_everything,
    unwrap_model,
)
from detection.engine.evaluator import EvalResult, evaluate
from detection.engine.logger import MetricLogger, ThroughputMeter
from detection.engine.optim import build_optimizer, build_scheduler, schedule_steps, use_bf16

__all__ = ["TrainResult", "prepare_data", "train"]


@dataclass
class TrainResult:
    """What a training run did. ``history``: one record per validation: ``step``, ``epoch``, ``minutes`` (time
    spent in training steps so far, validations excluded, summed over resumed parts), ``wall_minutes`` (the
    same with the validations), ``mAP`` and the other val metrics. ``seconds``: this call's wall time."""

    out_dir: Path
    step: int
    total_steps: int
    best_metric: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False  # stop_after ended the run before total_steps


def prepare_data(cfg: Config, quiet: bool = False) -> None:
    """Render the synthetic dataset of ``cfg.data.synthetic`` into ``cfg.data.root`` unless it is there
    (same spec); nothing when the config names a prepared dataset. Call on one process only."""
    if cfg.data.synthetic is None:
        return
    from data_prep.synthetic import generate_dataset

    generate_dataset(cfg.data.root, cfg.data.synthetic, progress=not quiet)


def _eval_due(tc: Any, step: int, total: int, epoch_done: bool) -> bool:
    if step == total:
        return True
    return step % tc.eval_every == 0 if tc.eval_every else epoch_done


def _checkpoint_due(tc: Any, step: int, epoch_done: bool) -> bool:
    return step % tc.checkpoint_every == 0 if tc.checkpoint_every else epoch_done


def train(
    cfg: Config,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str = "auto",
    quiet: bool = False,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir`` (see the module docstring); returns a :class:`TrainResult` on every rank.

    ``resume``: continue from ``out_dir/last.pt`` (the config must match the saved one except for the keys
    in :data:`~detection.engine.checkpoint.RESUME_FREE_KEYS`). ``device``: auto, cpu or cuda (one GPU per
    process under torchrun). ``stop_after``: stop once this many steps are done, after writing ``last.pt``
    (a run cut short on purpose; ``resume`` finishes it). Raises FileNotFoundError (no ``last.pt`` to
    resume, data files missing), FileExistsError (``out_dir`` holds a run and ``resume`` is off), ValueError
    (a checkpoint that does not fit the config), and NonFiniteLossError naming the step of a NaN/inf loss.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    ctx = init_distributed(device)
    try:
        return _train(cfg, out, ctx, resume=resume, quiet=quiet, stop_after=stop_after, start=start)
    finally:
        ctx.close()


def _train(cfg: Config, out: Path, ctx: DistContext, *, resume: bool, quiet: bool, stop_after: int | None,
           start: float) -> TrainResult:
    from detection.models.action_model import build_action_model
    from detection.models.zoo import config_label_map

    tc = cfg.train
    last, best = last_checkpoint_path(out), best_checkpoint_path(out)
    if resume and not last.is_file():
        raise FileNotFoundError(f"{last}: nothing to resume (train without --resume to start a new run)")
    if not resume and last.is_file():
        raise FileExistsError(f"{last}: {out} holds a run already; continue it with --resume or train into "
                              "another --out (nothing was overwritten)")
    if ctx.is_main:
        prepare_data(cfg, quiet=quiet)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    ctx.barrier()

    seed_everything(tc.seed)  # the same initial weights on every rank
    label_map = config_label_map(cfg)
    model = build_action_model(cfg.model, label_map, load_weights=not resume).train()
    seed_everything(tc.seed, ctx.rank)  # each rank its own stream (dropout, drop-path)
    dataset = AvaDataset(cfg.data, "train", model.input_spec, label_map, seed=tc.seed)
    val_dataset = AvaDataset(cfg.data, "val", model.input_spec, label_map, seed=tc.seed)
    sampler = GlobalBatchSampler(len(dataset), tc.batch_size, world_size=ctx.world_size, rank=ctx.rank,
                                 accumulation_steps=tc.accumulation_steps, seed=tc.seed)
    if sampler.steps_per_epoch < 1:
        raise ValueError(f"{cfg.data.root}: the train split has {len(dataset)} keyframes, fewer than one global batch "
                         f"(train.batch_size={tc.batch_size})")
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, sampler.steps_per_epoch)
    total, _ = schedule_steps(tc, sampler.steps_per_epoch)
    bf16 = use_bf16(tc, ctx.device)
    model = ctx.wrap(model)
    core = unwrap_model(model)

    state = TrainState(world_size=ctx.world_size)
    if resume:
        state = load_training_checkpoint(last, model, optimizer, scheduler, config=cfg)
        state.world_size = ctx.world_size
    history: list[dict[str, Any]] = list(state.extra.get("history", [])) if resume else []
    logger = MetricLogger(out, enabled=ctx.is_main, total_steps=total, initial_step=state.step,
                          resume_step=state.step if resume else None, quiet=quiet)
    meter = ThroughputMeter()
    train_seconds = float(state.extra.get("train_seconds", 0.0))
    wall_seconds = float(state.extra.get("wall_seconds", 0.0))
    clock = wall = time.perf_counter()
    loss_sum, loss_count, rate = 0.0, 0, float("nan")
    stopped = False
    acc = tc.accumulation_steps
    try:
        while state.step < total and not stopped:
            dataset.set_epoch(state.epoch)
            loader = epoch_loader(dataset, sampler, state.epoch, state.batch_in_epoch, num_workers=tc.num_workers,
                                  collate_fn=collate, pin_memory=ctx.device.type == "cuda")
            batches = iter(loader)
            while state.step < total:
                passes = [b for _, b in zip(range(acc), batches, strict=False)]
                if len(passes) < acc:
                    break  # the epoch is over (the sampler yields whole steps only)
                loss_value = _step(model, core, passes, ctx, bf16, state.step + 1, last if last.exists() else None)
                if tc.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                state.step += 1
                state.batch_in_epoch += acc
                epoch_done = state.batch_in_epoch >= sampler.batches_per_epoch
                if epoch_done:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
                meter.update(tc.batch_size)
                lr = max(group["lr"] for group in optimizer.param_groups)
                if state.step % tc.log_every == 0 or state.step == total:
                    mean_loss = float(all_reduce_sum(loss_sum)) / max(loss_count * ctx.world_size, 1)
                    rate = meter.rate()
                    logger.log(state.step, {"loss": mean_loss, "lr": lr, "clips_per_s": rate}, epoch=state.epoch)
                    loss_sum, loss_count = 0.0, 0
                logger.progress(state.step, loss=loss_value, lr=lr, clips_per_s=rate)
                stopped = stop_after is not None and state.step >= stop_after
                validated = _eval_due(tc, state.step, total, epoch_done)
                improved = False
                if validated:
                    train_seconds += time.perf_counter() - clock
                    result = evaluate(model, cfg, "val", out / "eval" / f"step_{state.step:07d}", ctx=ctx,
                                      dataset=val_dataset, plots=False)
                    clock = time.perf_counter()
                    improved = state.best_metric is None or result.frame_map > state.best_metric
                    if improved:
                        state.best_metric = result.frame_map
                    wall_seconds += time.perf_counter() - wall
                    wall = time.perf_counter()
                    record = {"step": state.step, "epoch": state.epoch, "minutes": round(train_seconds / 60, 4),
                              "wall_minutes": round(wall_seconds / 60, 4), **result.metrics()}
                    history.append(record)
                    logger.log(state.step, {k: v for k, v in record.items() if k not in ("step", "epoch")},
                               epoch=state.epoch, split="val")
                    logger.write(f"step {state.step}/{total}: {_val_line(result)}"
                                 + (" (best)" if improved else ""))
                    meter.rate()  # the validation's time is not training throughput
                if validated or stopped or state.step == total or _checkpoint_due(tc, state.step, epoch_done):
                    state.extra = {"history": history, "train_seconds": train_seconds + time.perf_counter() - clock,
                                   "wall_seconds": wall_seconds + time.perf_counter() - wall}
                    _save(last, model, optimizer, scheduler, state, cfg, ctx)
                    if improved and ctx.is_main:
                        copy_checkpoint(last, best)
                    ctx.barrier()
                if stopped:
                    break
    finally:
        logger.close()
    train_seconds += time.perf_counter() - clock
    return TrainResult(out_dir=out, step=state.step, total_steps=total, best_metric=state.best_metric,
                       last_checkpoint=last, best_checkpoint=best if best.is_file() else None, history=history,
                       seconds=time.perf_counter() - start, stopped_early=state.step < total)


def _val_line(result: EvalResult) -> str:
    return ", ".join(f"val {k} {100 * v:.2f}" for k, v in result.metrics().items())


def _step(model: nn.Module, core: nn.Module, passes: list[AvaBatch], ctx: DistContext, bf16: bool, step: int,
          last: Path | None) -> float:
    """Forward/backward passes of one optimizer step; returns this process's estimate of the step's mean loss
    (exact in one process; the mean over the processes is exact with several).

    Pass ``p`` contributes ``mean_p * n_p * world / n_total`` (``n``: boxes; ``n_total`` over every pass and
    process): with DDP's gradient average this is the gradient of the mean loss over all boxes of the step.
    """
    counts = [0 if b.labels is None else int(b.labels.shape[0]) for b in passes]
    total_boxes = float(all_reduce_sum(float(sum(counts))))
    device = ctx.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    value = 0.0
    for k, batch in enumerate(passes):
        if batch.labels is None:
            raise ValueError("the train split has no labels (its ground-truth CSV is missing)")
        batch = batch.to(device, non_blocking=True)
        weight = counts[k] * ctx.world_size / total_boxes if total_boxes > 0 else 0.0
        with no_sync(model, sync=k == len(passes) - 1):
            with autocast:
                logits = model(batch.clips, batch.boxes)
            loss = core.loss(logits.float(), batch.labels) * weight
            check_finite(loss, step, last)
            loss.backward()
        value += float(loss.detach())
    return value


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainState,
          cfg: Config, ctx: DistContext) -> None:
    rng = all_gather_object(capture_rng_state())  # every rank's streams, saved by rank 0
    if ctx.is_main:
        save_training_checkpoint(path, model, optimizer, scheduler, None, state, cfg, rng_states=rng)
