"""Training metrics: a JSONL log, TensorBoard scalars and a tqdm progress bar, written by rank 0 only.

``OUT/metrics.jsonl`` holds one JSON object per record, e.g.
``{"split": "train", "step": 40, "epoch": 1, "time": 1718000000.1, "loss": 0.41, "lr": 0.0001, "clips_per_s": 12.5}``
(``time`` in Unix seconds; NaN/inf become null). TensorBoard events go to ``OUT/tensorboard/`` with tags
``split/key``. When a run resumes at step ``s``, records after ``s`` (written after the last checkpoint of the
interrupted run) are dropped from both, so the log reads as one run. Without the ``tensorboard`` package the
JSONL log is written alone, after one warning.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

__all__ = ["MetricLogger", "ThroughputMeter"]

_warned_no_tensorboard = False


def _number(value: Any) -> Any:
    """A JSON-ready scalar: tensors and numpy scalars become floats/ints, NaN/inf None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Keep the records of ``path`` with ``step <= last_step`` (atomically); unreadable lines are dropped."""
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the crash
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= last_step:
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


class ThroughputMeter:
    """Items per second since the last :meth:`rate` call (clips/s over a log window)."""

    def __init__(self) -> None:
        self._count, self._start = 0.0, time.perf_counter()

    def update(self, count: float) -> None:
        self._count += count

    def rate(self) -> float:
        """Items per second since the previous call (or construction), and start a new window."""
        now = time.perf_counter()
        rate = self._count / max(now - self._start, 1e-9)
        self._count, self._start = 0.0, now
        return rate


class MetricLogger:
    """JSONL + TensorBoard records and a progress bar for a training or test run.

    ``out_dir``: where ``metrics.jsonl`` and ``tensorboard/`` go. ``enabled``: False on every rank but 0
    (then every method does nothing). ``total_steps``/``initial_step``: the progress bar's length and start
    (None: no bar). ``resume_step``: drop records after this step, for a resumed run (None: a new run, the
    JSONL file is started afresh). ``quiet``, or a stderr that is not a terminal, turns the bar off.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        *,
        enabled: bool = True,
        total_steps: int | None = None,
        initial_step: int = 0,
        resume_step: int | None = None,
        quiet: bool = False,
        tensorboard: bool = True,
        jsonl_name: str = "metrics.jsonl",
    ) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.jsonl_path = self.out_dir / jsonl_name
        self.tensorboard_dir = self.out_dir / "tensorboard"
        self._file = None
        self._writer = None
        self._bar = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.jsonl_path.is_file():
            _truncate_jsonl(self.jsonl_path, resume_step)
            self._file = self.jsonl_path.open("a", encoding="utf-8")
        else:
            self._file = self.jsonl_path.open("w", encoding="utf-8")
        if tensorboard:
            self._writer = self._open_tensorboard(resume_step)
        if total_steps is not None and not quiet and sys.stderr.isatty():
            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)

    def _open_tensorboard(self, resume_step: int | None) -> Any:
        global _warned_no_tensorboard
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            if not _warned_no_tensorboard:
                warnings.warn(f"TensorBoard logging off ({err}); metrics go to the JSONL log only. "
                              "Install it with `pip install tensorboard`", stacklevel=3)
                _warned_no_tensorboard = True
            return None
        # purge_step drops the events a crashed run wrote after its last checkpoint.
        purge = None if resume_step is None else resume_step + 1
        return SummaryWriter(log_dir=str(self.tensorboard_dir), purge_step=purge)

    def log(self, step: int, scalars: Mapping[str, Any], *, epoch: int | None = None, split: str = "train") -> None:
        """Write one record: ``{"split", "step", "epoch", "time", **scalars}`` to the JSONL and TensorBoard."""
        if not self.enabled:
            return
        values = {str(k): _number(v) for k, v in scalars.items()}
        record = {"split": split, "step": int(step), "epoch": epoch, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{split}/{key}", value, int(step))
            self._writer.flush()

    def progress(self, step: int, **postfix: Any) -> None:
        """Move the bar to ``step`` and show ``postfix`` (e.g. loss=, lr=, clips_per_s=), compactly formatted."""
        if self._bar is None:
            return
        self._bar.update(max(int(step) - self._bar.n, 0))
        if postfix:
            shown = {k: f"{v:.3g}" if isinstance(v, float) else v for k, v in
                     ((k, _number(v)) for k, v in postfix.items())}
            self._bar.set_postfix(shown, refresh=False)

    def write(self, message: str) -> None:
        """Print a line without breaking the bar (rank 0 only)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
