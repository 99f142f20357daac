import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic_data import training_overrides

from detection.cli import main
from detection.config import load_config
from detection.engine.checkpoint import NonFiniteLossError
from detection.engine.evaluator import reference_map
from detection.engine.trainer import train
from detection.models.action_model import ActionModel
from detection.models.zoo import load_checkpoint, read_actdet_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# The 4-block MViTv2 on 4 x 64 x 64 clips, no augmentation: a step takes ~0.1 s on one core.
MODEL = ["model.backbone.input_size=[4, 64, 64]", "data.augment.jitter_short_side=[64, 64]",
         "data.augment.crop_size=null", "data.augment.flip_prob=0.0"]
TRAIN = ["train.optimizer=adamw", "train.lr=0.003", "train.weight_decay=0.0", "train.batch_size=4",
         "train.warmup_steps=2", "train.clip_grad_norm=5.0", "train.num_workers=0", "train.log_every=2", "train.seed=5"]


@pytest.fixture(scope="module")
def data_root(training_dataset):
    return training_dataset


def overrides(root, *extra):
    return [*training_overrides(root), *MODEL, *TRAIN, *extra]


def make_config(root, *extra):
    return load_config("synthetic/tiny", overrides(root, *extra))


def weights(path):
    return read_actdet_checkpoint(path)["model"]


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for name in a:
        if atol == 0.0:
            assert torch.equal(a[name], b[name]), name
        else:
            torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0.0, msg=name)


def test_training_learns_clearly_above_chance(data_root, tmp_path, one_torch_thread):
    # The val split is the train split here: 10 keyframes cannot teach motion that generalises, so this checks
    # that the loop learns what it is shown (boxes, labels, loss, optimizer, evaluation agree); learning on
    # held-out videos is benchmarks/train_synthetic.py's figure.
    same = ["data.val_annotations=annotations/train.csv", "data.val_proposals=annotations/train_predicted_boxes.csv",
            "data.val_exclusions=annotations/train_excluded_timestamps.csv",
            "data.val_frame_list=frame_lists/train.csv"]
    cfg = make_config(data_root, *same, "train.max_steps=120", "train.eval_every=60")
    chance = max(reference_map(cfg, "val", tmp_path / "random", "random", seed=s).frame_map for s in range(3))
    prior = reference_map(cfg, "val", tmp_path / "prior", "prior").frame_map
    oracle = reference_map(cfg, "val", tmp_path / "oracle", "oracle").frame_map
    result = train(cfg, tmp_path / "run", quiet=True)
    final = result.history[-1]["mAP"]
    print(f"chance {chance:.3f} prior {prior:.3f} oracle {oracle:.3f} trained {[h['mAP'] for h in result.history]}")
    assert [h["step"] for h in result.history] == [60, 120]
    assert final >= max(chance, prior) + 0.5 * (oracle - max(chance, prior))
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_loss = [r["loss"] for r in log if r["split"] == "train"]
    assert train_loss[-1] < 0.5 * train_loss[0]
    assert {"clips_per_s", "lr"} <= set(log[0]) and any(r["split"] == "val" for r in log)
    assert result.best_checkpoint is not None and isinstance(load_checkpoint(result.best_checkpoint), ActionModel)
    assert read_actdet_checkpoint(result.best_checkpoint)["train_state"]["best_metric"] == max(
        h["mAP"] for h in result.history)


def test_stop_and_resume_gives_the_same_weights_and_test_writes_detections(data_root, tmp_path, one_torch_thread,
                                                                           capsys):
    extra = ["train.max_steps=8", "train.eval_every=4", "train.accumulation_steps=2",
             "model.backbone.stochastic_depth=0.2", "model.head.dropout=0.3"]  # random: resuming restores the RNGs
    args = overrides(data_root, *extra)
    assert main(["train", "--config", "synthetic/tiny", "--out", str(tmp_path / "whole"), "--quiet", *args]) == 0
    assert "trained 8/8 steps" in capsys.readouterr().out
    before = (tmp_path / "whole" / "last.pt").read_bytes()
    assert main(["train", "--config", "synthetic/tiny", "--out", str(tmp_path / "whole"), "--quiet", *args]) == 1
    assert "holds a run already" in capsys.readouterr().err  # a second run never overwrites the first
    assert (tmp_path / "whole" / "last.pt").read_bytes() == before
    cfg = make_config(data_root, *extra)
    cut = train(cfg, tmp_path / "cut", quiet=True, stop_after=3)  # mid-epoch (2 steps per epoch), between evals
    assert cut.stopped_early and cut.step == 3
    torch.manual_seed(123)  # the resumed run starts from other RNG states: the checkpoint restores them
    assert main(["train", "--config", "synthetic/tiny", "--out", str(tmp_path / "cut"), "--quiet", "--resume",
                 *args]) == 0
    assert_same_weights(weights(tmp_path / "whole" / "last.pt"), weights(tmp_path / "cut" / "last.pt"))
    log = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["split"] == "val"] == [4, 8]  # one log, as if never stopped

    capsys.readouterr()
    out = tmp_path / "test"
    assert main(["test", "--weights", str(tmp_path / "whole" / "best.pt"), "--out", str(out), "--split", "val",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "frame-mAP" in text and "video-mAP" in text
    assert (out / "detections.csv").is_file() and (out / "tubes.json").is_file() and (out / "metrics.json").is_file()


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(data_root, tmp_path, monkeypatch, capsys,
                                                                     one_torch_thread):
    cfg = make_config(data_root, "train.max_steps=8", "train.checkpoint_every=2", "train.eval_every=100")
    calls = {"n": 0}
    original = ActionModel.loss

    def poisoned(self, logits, targets):
        calls["n"] += 1
        loss = original(self, logits, targets)
        return loss * float("nan") if calls["n"] == 5 else loss  # the 5th pass: step 5

    monkeypatch.setattr(ActionModel, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5: .*last\.pt is kept") as info:
        train(cfg, tmp_path / "run", quiet=True)
    assert info.value.step == 5
    state = read_actdet_checkpoint(tmp_path / "run" / "last.pt")["train_state"]
    assert state["step"] == 4
    model = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    calls["n"] = 0
    assert main(["train", "--config", "synthetic/tiny", "--out", str(tmp_path / "cli"), "--quiet",
                 *overrides(data_root, "train.max_steps=8", "train.checkpoint_every=2", "train.eval_every=100")]) == 1
    assert "loss is nan at step 5" in capsys.readouterr().err


def _run(cmd, env):
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_two_processes_match_one_and_a_killed_run_resumes(data_root, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # SGD: 2 processes sum gradients in another order (float rounding); AdamW would blow that up to lr-sized
    # steps on parameters whose gradient is ~0 (it divides by sqrt(v)), SGD keeps it at rounding size.
    args = overrides(data_root, "train.max_steps=6", "train.eval_every=3", "train.batch_size=4", "train.optimizer=sgd",
                     "train.lr=0.05")
    python = sys.executable
    torchrun = str(Path(python).parent / "torchrun")
    one = _run([python, "-m", "detection.cli", "train", "--config", "synthetic/tiny", "--out", str(tmp_path / "one"),
                "--quiet", "--device", "cpu", *args], env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "detection.cli", "train",
                "--config", "synthetic/tiny", "--out", str(tmp_path / "two"), "--quiet", "--device", "cpu", *args], env)
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_weights(weights(tmp_path / "one" / "last.pt"), weights(tmp_path / "two" / "last.pt"), atol=1e-5)
    state = read_actdet_checkpoint(tmp_path / "two" / "last.pt")["train_state"]
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    one_val = (tmp_path / "one" / "eval" / "step_0000006" / "detections.csv").read_text().splitlines()
    two_val = (tmp_path / "two" / "eval" / "step_0000006" / "detections.csv").read_text().splitlines()
    assert len(one_val) == len(two_val)  # the same keyframes and boxes, gathered in dataset order

    # SIGKILL once a checkpoint past step 2 exists, then --resume: the same final weights as `one`.
    cmd = [python, "-m", "detection.cli", "train", "--config", "synthetic/tiny", "--out", str(tmp_path / "killed"),
           "--quiet", "--device", "cpu", *args, "train.checkpoint_every=1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and read_actdet_checkpoint(last)["train_state"]["step"] >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_actdet_checkpoint(last)["train_state"]["step"]
    assert 2 <= killed_at < 6
    resumed = _run(cmd + ["--resume"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(weights(tmp_path / "one" / "last.pt"), weights(last))
