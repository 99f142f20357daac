import datetime
import os
import random

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from data_prep.synthetic import synthetic_label_map
from detection.config import load_config
from detection.engine.checkpoint import (
    NonFiniteLossError,
    TrainState,
    best_checkpoint_path,
    capture_rng_state,
    check_finite,
    config_differences,
    copy_checkpoint,
    last_checkpoint_path,
    load_training_checkpoint,
    restore_rng_state,
    save_training_checkpoint,
)
from detection.engine.distributed import GlobalBatchSampler, all_gather_object, epoch_loader, seed_everything
from detection.engine.optim import build_optimizer, build_scheduler
from detection.models.action_model import build_action_model
from detection.models.zoo import load_checkpoint, read_actdet_checkpoint, save_checkpoint

OVERRIDES = [
    "model.backbone.input_size=[4, 32, 32]",
    "model.backbone.stochastic_depth=0.2",  # random drop-path and dropout: resuming must restore the RNG
    "model.head.dropout=0.3",
    "train.optimizer=adamw",
    "train.lr=0.01",
    "train.batch_size=4",
    "train.accumulation_steps=2",
    "train.max_steps=5",
    "train.warmup_steps=2",
    "train.clip_grad_norm=1.0",
    "train.seed=3",
]


def tiny_config(*extra):
    return load_config("synthetic/tiny", [*OVERRIDES, *extra])


class RandomClips(Dataset):
    """12 clips with 1-2 boxes; clip content drawn from torch's, the targets from numpy's and python's RNGs
    (standing in for augmentations), so each RNG must be restored on resume."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        clip = torch.rand(3, 4, 32, 32) + index
        n = 1 + index % 2
        boxes = torch.tensor([[0.1, 0.1, 0.6, 0.9], [0.3, 0.2, 0.9, 0.7]][:n])
        targets = torch.from_numpy((np.random.rand(n, 6) > 0.5).astype(np.float32))  # noqa: NPY002
        targets[:, random.randrange(6)] = 1.0
        return clip, boxes, targets


def collate(items):
    return torch.stack([c for c, _, _ in items]), [b for _, b, _ in items], torch.cat([t for _, _, t in items])


def train(cfg, out, stop_after=None, resume=False):
    """A short training loop built from the engine's blocks (what `actdet train` does, on one process)."""
    tc = cfg.train
    seed_everything(tc.seed)
    model = build_action_model(cfg.model, synthetic_label_map(), load_weights=False).train()
    dataset = RandomClips()
    sampler = GlobalBatchSampler(len(dataset), tc.batch_size, accumulation_steps=tc.accumulation_steps, seed=tc.seed)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, sampler.steps_per_epoch)
    state = TrainState()
    last = last_checkpoint_path(out)
    if resume:
        state = load_training_checkpoint(last, model, optimizer, scheduler, config=cfg)
    while state.step < tc.max_steps:
        loader = epoch_loader(dataset, sampler, state.epoch, state.batch_in_epoch, collate_fn=collate)
        for clips, boxes, targets in loader:
            loss = model.loss(model(clips, boxes), targets) / tc.accumulation_steps
            check_finite(loss, state.step + 1, last if last.exists() else None)
            loss.backward()
            state.batch_in_epoch += 1
            if state.batch_in_epoch % tc.accumulation_steps:
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            state.step += 1
            if state.step == stop_after:
                rng = all_gather_object(capture_rng_state())
                save_training_checkpoint(last, model, optimizer, scheduler, None, state, cfg, rng_states=rng)
                return model, optimizer
            if state.step == tc.max_steps:
                break
        else:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    return model, optimizer


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, one_torch_thread):
    cfg = tiny_config()
    whole, whole_opt = train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b", stop_after=2)  # mid-epoch: 3 steps per epoch
    state = read_actdet_checkpoint(tmp_path / "b" / "last.pt")["train_state"]
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (2, 0, 4)
    torch.manual_seed(123)  # the resumed process starts elsewhere; the checkpoint sets the RNGs
    np.random.seed(5)  # noqa: NPY002
    resumed, resumed_opt = train(cfg, tmp_path / "b", resume=True)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [g["lr"] for g in whole_opt.param_groups] == [g["lr"] for g in resumed_opt.param_groups]
    untrained = build_action_model(cfg.model, synthetic_label_map(), load_weights=False)
    assert not torch.equal(untrained.head.proj.weight, whole.head.proj.weight)


def test_training_checkpoint_is_an_inference_checkpoint(tmp_path):
    cfg = tiny_config()
    model = build_action_model(cfg.model, synthetic_label_map(), load_weights=False)
    optimizer = build_optimizer(model, cfg.train)
    state = TrainState(step=7, epoch=1, batch_in_epoch=2, best_metric=0.25, extra={"history": [0.1, 0.25]})
    path = save_training_checkpoint(tmp_path / "last.pt", model, optimizer, None, None, state, cfg)
    data = torch.load(path, map_location="cpu", weights_only=True)  # everything loads without pickle
    assert data["format"] == "actdet-1" and data["train_state"]["best_metric"] == 0.25
    loaded = load_checkpoint(path)
    assert loaded.label_map.ids == model.label_map.ids
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    again = load_training_checkpoint(path, model, build_optimizer(model, cfg.train), config=cfg)
    assert again == state
    best = copy_checkpoint(path, best_checkpoint_path(tmp_path))
    assert best.read_bytes() == path.read_bytes() and best.name == "best.pt"


def test_a_failing_save_leaves_the_previous_file(tmp_path, monkeypatch):
    cfg = tiny_config()
    model = build_action_model(cfg.model, synthetic_label_map(), load_weights=False)
    optimizer = build_optimizer(model, cfg.train)
    path = save_training_checkpoint(tmp_path / "last.pt", model, optimizer, None, None, TrainState(step=1), cfg)
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_training_checkpoint(path, model, optimizer, None, None, TrainState(step=2), cfg)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_a_different_config_is_refused_naming_the_file_and_keys(tmp_path):
    cfg = tiny_config()
    model = build_action_model(cfg.model, synthetic_label_map(), load_weights=False)
    optimizer = build_optimizer(model, cfg.train)
    path = save_training_checkpoint(tmp_path / "last.pt", model, optimizer, None, None, TrainState(), cfg)
    changed = tiny_config("train.lr=0.5", "model.head.dropout=0.1")
    with pytest.raises(ValueError, match=r"last\.pt: saved with a different config.*model\.head\.dropout: 0\.3 -> 0\.1"
                       r".*train\.lr: 0\.01 -> 0\.5"):
        load_training_checkpoint(path, model, optimizer, config=changed)
    harmless = tiny_config("train.num_workers=0", "output_dir=elsewhere", "train.log_every=1")
    load_training_checkpoint(path, model, optimizer, config=harmless)
    load_training_checkpoint(path, model, optimizer, config=tiny_config("train.lr=0.5"), allow_changes=["train.lr"])
    assert config_differences({"a": {"b": [1, 2]}}, {"a": {"b": (1, 2)}}) == []


def test_bad_inputs_get_clear_errors(tmp_path):
    cfg = tiny_config()
    model = build_action_model(cfg.model, synthetic_label_map(), load_weights=False)
    optimizer = build_optimizer(model, cfg.train)
    with pytest.raises(TypeError, match=r"extra\.when: date cannot be stored"):
        save_training_checkpoint(tmp_path / "x.pt", model, optimizer, None, None,
                                 TrainState(extra={"when": datetime.date.today()}), cfg)
    weights_only = save_checkpoint(tmp_path / "weights.pt", model, cfg)
    with pytest.raises(ValueError, match="weights.pt: a weights-only actdet-1 checkpoint"):
        load_training_checkpoint(weights_only, model, optimizer)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_training_checkpoint(tmp_path / "missing.pt", model, optimizer)
    path = save_training_checkpoint(tmp_path / "last.pt", model, optimizer, None, None, TrainState(), cfg)
    sgd = build_optimizer(model, tiny_config("train.layer_decay=0.5").train)  # other groups
    with pytest.raises(ValueError, match="last.pt: does not fit"):
        load_training_checkpoint(path, model, sgd)


def test_rng_state_round_trip():
    random.seed(1)
    np.random.seed(1)  # noqa: NPY002
    torch.manual_seed(1)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    state = capture_rng_state()
    expected = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist())  # noqa: NPY002
    restore_rng_state(state)
    assert (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected  # noqa: NPY002


def test_check_finite_names_the_step_and_the_kept_checkpoint(tmp_path):
    check_finite(torch.tensor(0.5), 3)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 12: .*last good checkpoint .*last\.pt is kept"):
        check_finite(torch.tensor(float("nan")), 12, tmp_path / "last.pt")
    with pytest.raises(NonFiniteLossError, match="inf at step 1: .*no checkpoint had been written") as info:
        check_finite(float("inf"), 1)
    assert info.value.step == 1
