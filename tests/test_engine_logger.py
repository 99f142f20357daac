import builtins
import json
import time

import numpy as np
import pytest
import torch

import detection.engine.logger as logger_module
from detection.engine.logger import MetricLogger, ThroughputMeter


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_records_and_tensorboard_events(tmp_path):
    with MetricLogger(tmp_path, total_steps=10) as log:
        log.log(1, {"loss": torch.tensor(0.5), "lr": 1e-3, "clips_per_s": np.float32(12.5)}, epoch=0)
        log.log(2, {"loss": float("nan"), "lr": 2e-3, "clips_per_s": 11.0}, epoch=0)
        log.log(2, {"mAP": 0.31}, epoch=0, split="val")
        log.progress(2, loss=0.5, lr=2e-3)  # no TTY under pytest: no bar, and no error
    lines = records(tmp_path / "metrics.jsonl")
    assert [(r["split"], r["step"]) for r in lines] == [("train", 1), ("train", 2), ("val", 2)]
    assert lines[0]["loss"] == 0.5 and lines[0]["clips_per_s"] == 12.5 and lines[0]["epoch"] == 0
    assert lines[1]["loss"] is None  # NaN is not JSON
    assert abs(lines[0]["time"] - time.time()) < 60
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/lr", "train/clips_per_s", "val/mAP"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/lr")] == [1, 2]
    assert acc.Scalars("val/mAP")[0].value == pytest.approx(0.31)


def test_resume_drops_records_after_the_checkpoint_and_a_new_run_starts_afresh(tmp_path):
    with MetricLogger(tmp_path, tensorboard=False) as log:
        for step in (1, 2, 3, 4):
            log.log(step, {"loss": 1.0 / step})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "st')  # a line cut short by the crash
    with MetricLogger(tmp_path, tensorboard=False, resume_step=2) as log:
        log.log(3, {"loss": 0.0})
    assert [(r["step"], r["loss"]) for r in records(tmp_path / "metrics.jsonl")] == [(1, 1.0), (2, 0.5), (3, 0.0)]
    with MetricLogger(tmp_path, tensorboard=False) as log:
        log.log(1, {"loss": 9.0})
    assert [r["step"] for r in records(tmp_path / "metrics.jsonl")] == [1]


def test_other_ranks_write_nothing(tmp_path):
    with MetricLogger(tmp_path / "rank1", enabled=False, total_steps=5) as log:
        log.log(1, {"loss": 1.0})
        log.progress(1, loss=1.0)
        log.write("hello")
    assert not (tmp_path / "rank1").exists()


def test_without_tensorboard_the_jsonl_log_goes_on_after_one_warning(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr(logger_module, "_warned_no_tensorboard", False)
    with pytest.warns(UserWarning, match="TensorBoard logging off"):
        log = MetricLogger(tmp_path / "a")
    log.log(1, {"loss": 1.0})
    log.close()
    assert records(tmp_path / "a" / "metrics.jsonl")[0]["loss"] == 1.0
    assert not (tmp_path / "a" / "tensorboard").exists()
    with MetricLogger(tmp_path / "b"):  # warned once only
        pass


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    with MetricLogger(tmp_path, total_steps=10, initial_step=3, tensorboard=False) as log:
        assert log._bar is not None and log._bar.n == 3
        log.progress(5, loss=0.123456, lr=1e-4, clips_per_s=7.0)
        assert log._bar.n == 5 and "loss=0.123" in str(log._bar)
    with MetricLogger(tmp_path, total_steps=10, quiet=True, tensorboard=False) as log:
        assert log._bar is None


def test_throughput_meter():
    meter = ThroughputMeter()
    meter.update(8)
    time.sleep(0.05)
    meter.update(8)
    rate = meter.rate()
    assert 16 / 1.0 < rate < 16 / 0.05 + 1
    assert meter.rate() == 0.0


def test_resume_purges_tensorboard_events_after_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with MetricLogger(tmp_path) as log:
        for step in (1, 2, 3, 4):
            log.log(step, {"loss": float(step)})
    with MetricLogger(tmp_path, resume_step=2) as log:
        log.log(3, {"loss": 30.0})
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 1.0), (2, 2.0), (3, 30.0)]
