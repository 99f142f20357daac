"""Training and testing engine: optimizer and lr schedule (``optim``), training checkpoints (``checkpoint``),
torchrun processes and the train sampler (``distributed``), metric logs and the progress bar (``logger``), the
training loop (``trainer``: ``actdet train``) and evaluation on a split (``evaluator``: ``actdet test`` and the
validations during training).

The modules are building blocks: the train/test loops compose them, and every one of them also works in a
single process on the CPU. ``train`` and ``evaluate`` are imported lazily (``from detection.engine import
train``) so that importing a building block does not import the data and model code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalResult", "TrainResult", "evaluate", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from detection.engine import trainer

        return getattr(trainer, name)
    if name in ("evaluate", "EvalResult"):
        from detection.engine import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module 'detection.engine' has no attribute {name!r}")
