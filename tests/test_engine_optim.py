import math

import pytest
import torch
from torch import nn

from data_prep.synthetic import synthetic_label_map
from detection.config import ConfigError, TrainConfig, load_config
from detection.engine.optim import (
    build_optimizer,
    build_scheduler,
    layer_id,
    lr_factor,
    no_weight_decay,
    param_groups,
    schedule_steps,
    use_bf16,
)
from detection.models.action_model import build_action_model


def tiny_model():
    torch.manual_seed(0)
    cfg = load_config("synthetic/tiny", ["model.backbone.input_size=[4, 64, 64]"])
    return build_action_model(cfg.model, synthetic_label_map(), load_weights=False)


def group_of(optimizer, model, name):
    param = dict(model.named_parameters())[name]
    return next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_no_decay_for_norms_biases_positions_and_class_token(model):
    groups = param_groups(model, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.05 for p in g["params"]}
    assert no_decay.isdisjoint(decay) and len(no_decay) + len(decay) == len(names)
    assert "backbone.pos_encoding.class_token" in no_decay
    assert "backbone.blocks.0.attn.rel_pos_h" in no_decay and "backbone.blocks.2.attn.rel_pos_t" in no_decay
    assert "backbone.blocks.1.norm1.weight" in no_decay and "head.proj.bias" in no_decay
    assert "backbone.norm.weight" in no_decay and "backbone.conv_proj.bias" in no_decay
    assert {"backbone.conv_proj.weight", "backbone.blocks.3.attn.qkv.weight", "head.proj.weight",
            "backbone.blocks.0.attn.pool_q.pool.weight"} <= decay
    assert all(p.ndim >= 2 for n, p in model.named_parameters() if n in decay)
    # MViTv1's absolute embeddings are 2-D but exempt by name
    assert no_weight_decay("backbone.pos_encoding.spatial_pos", torch.zeros(4, 4))


def test_layer_wise_decay_scales(model):
    cfg = TrainConfig(lr=1e-3, layer_decay=0.5)
    optimizer = build_optimizer(model, cfg)
    depth = len(model.backbone.blocks)  # 4
    assert group_of(optimizer, model, "backbone.conv_proj.weight")["lr"] == pytest.approx(1e-3 * 0.5 ** (depth + 1))
    assert group_of(optimizer, model, "backbone.pos_encoding.class_token")["layer_id"] == 0
    assert group_of(optimizer, model, "backbone.blocks.0.mlp.0.weight")["lr"] == pytest.approx(1e-3 * 0.5**depth)
    assert group_of(optimizer, model, "backbone.blocks.3.mlp.0.weight")["lr"] == pytest.approx(1e-3 * 0.5)
    assert group_of(optimizer, model, "backbone.norm.weight")["lr"] == pytest.approx(1e-3)
    head = group_of(optimizer, model, "head.proj.weight")
    assert head["lr"] == pytest.approx(1e-3) and head["layer_id"] == depth + 1 and head["weight_decay"] == 0.05
    assert layer_id("module.backbone.blocks.1.x", depth) == depth + 1  # names are taken from the unwrapped model
    assert layer_id("backbone.blocks.11.attn.qkv.weight", 16) == 12


def test_without_layer_decay_there_are_two_groups_with_the_base_lr(model):
    optimizer = build_optimizer(model, TrainConfig(lr=0.02, optimizer="sgd", momentum=0.8, nesterov=True))
    assert isinstance(optimizer, torch.optim.SGD)
    assert len(optimizer.param_groups) == 2
    assert all(g["lr"] == 0.02 and g["momentum"] == 0.8 and g["nesterov"] for g in optimizer.param_groups)
    adamw = build_optimizer(model, TrainConfig(lr=0.02, betas=(0.8, 0.95)))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["betas"] == (0.8, 0.95)


def test_frozen_parameters_are_left_out_and_layer_decay_needs_blocks():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    net[0].weight.requires_grad_(False)
    groups = param_groups(net, 0.1)
    assert sum(len(g["params"]) for g in groups) == 3
    with pytest.raises(ValueError, match="backbone.blocks"):
        param_groups(net, 0.1, layer_decay=0.9)
    # a DDP-like wrapper is unwrapped
    wrapper = nn.Module()
    wrapper.module = net
    assert sum(len(g["params"]) for g in param_groups(wrapper, 0.1)) == 3


def test_lr_curve_values():
    # warmup 10 steps from 0.1, cosine over the next 90 to 0.0
    assert lr_factor(0, 100, 10, 0.1, 0.0) == pytest.approx(0.1)
    assert lr_factor(5, 100, 10, 0.1, 0.0) == pytest.approx(0.55)
    assert lr_factor(10, 100, 10, 0.1, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, 0.1, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(150, 100, 10, 0.1, 0.2) == pytest.approx(0.2)
    assert lr_factor(32.5, 100, 10, 0.1, 0.2) == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(0, 10, 0) == 1.0  # no warmup
    assert lr_factor(2, 3, 3, 0.1) == pytest.approx(0.7) and lr_factor(3, 3, 3, 0.1, 0.2) == 0.2  # all warmup


def test_scheduler_follows_the_curve_per_step_and_keeps_group_scales(model):
    cfg = TrainConfig(lr=1e-3, layer_decay=0.5, max_steps=20, warmup_steps=4, warmup_start_factor=0.25,
                      min_lr_factor=0.1)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=7)
    head = group_of(optimizer, model, "head.proj.weight")
    first = group_of(optimizer, model, "backbone.conv_proj.weight")
    seen = []
    for _ in range(22):
        seen.append(head["lr"])
        assert first["lr"] == pytest.approx(head["lr"] * 0.5**5)
        optimizer.step()
        scheduler.step()
    expected = [1e-3 * lr_factor(s, 20, 4, 0.25, 0.1) for s in range(22)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(2.5e-4) and seen[4] == pytest.approx(1e-3) and seen[20] == pytest.approx(1e-4)
    assert scheduler.last_epoch == 22


def test_schedule_steps_from_epochs_or_steps():
    assert schedule_steps(TrainConfig(epochs=3, warmup_epochs=0.5), 10) == (30, 5)
    assert schedule_steps(TrainConfig(epochs=3, max_steps=7, warmup_steps=2), 10) == (7, 2)
    assert schedule_steps(TrainConfig(max_steps=7, warmup_steps=20), 0) == (7, 7)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        schedule_steps(TrainConfig(epochs=3), 0)


def test_train_config_validation_and_bf16():
    with pytest.raises(ConfigError, match="accumulation_steps"):
        load_config(None, ["train.batch_size=6", "train.accumulation_steps=4"])
    with pytest.raises(ConfigError, match="layer_decay"):
        load_config(None, ["train.layer_decay=1.5"])
    with pytest.raises(ConfigError, match="epochs and max_steps"):
        load_config(None, ["train.epochs=null"])
    cfg = load_config(None, ["train.optimizer=sgd", "train.max_steps=5", "train.clip_grad_norm=1"])
    assert cfg.train.optimizer == "sgd" and cfg.train.max_steps == 5 and cfg.train.clip_grad_norm == 1.0
    assert use_bf16(TrainConfig(), "cuda:0") and not use_bf16(TrainConfig(), "cpu")
    assert use_bf16(TrainConfig(bf16=True), "cpu") and not use_bf16(TrainConfig(bf16=False), "cuda")
