import numpy as np
import pytest
import torch
from torch import nn

import detection.models.weights as weights_module
from data_prep.synthetic import SyntheticScene, SyntheticSpec, synthetic_label_map
from detection.config import load_config
from detection.models.action_model import (
    KINETICS_MEAN,
    KINETICS_STD,
    ActionModel,
    InputSpec,
    build_action_model,
    encode_targets,
    preprocess,
)
from detection.models.roi_head import RoIActionHead
from detection.structures import LabelMap


class StandIn(nn.Module):
    """A one-layer 'backbone' with the backbone's attributes: stride 2 in time, 16 in space."""

    out_channels, feature_stride, temporal_stride, input_size = 8, 16, 2, (4, 64, 80)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, self.out_channels, kernel_size=(2, 16, 16), stride=(2, 16, 16))

    def forward(self, x):
        return self.conv(x)


def standin_model(label_map=None, activation="sigmoid") -> ActionModel:
    label_map = label_map or synthetic_label_map()
    backbone = StandIn()
    head = RoIActionHead(backbone.out_channels, len(label_map), 16, dropout=0.5, activation=activation)
    return ActionModel(backbone, head, label_map, InputSpec(4, 2, 64, (64, 80)))


def tiny_config(*overrides):
    return load_config("synthetic/tiny", list(overrides)).model


BOXES = [torch.tensor([[0.1, 0.2, 0.4, 0.9], [0.5, 0.1, 0.9, 0.8]]), torch.zeros(0, 4),
         torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.6, 0.6], [0.2, 0.5, 0.3, 0.7]])]


def test_shapes_with_several_boxes_and_a_clip_without_boxes():
    torch.manual_seed(0)
    model = standin_model()
    logits = model(torch.randn(3, 3, 4, 64, 80), BOXES)
    assert logits.shape == (5, 6)
    assert model(torch.randn(1, 3, 4, 64, 80), [torch.zeros(0, 4)]).shape == (0, 6)


def test_predict_gives_probabilities_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = standin_model().train()
    clips = torch.randn(3, 3, 4, 64, 80)
    probs = model.predict(clips, BOXES)
    assert probs.dtype == torch.float32 and probs.shape == (5, 6)
    assert ((probs > 0) & (probs < 1)).all()
    torch.testing.assert_close(probs, model.predict(clips, BOXES))  # dropout is off in predict
    assert model.training
    soft = standin_model(activation="softmax").predict(clips, BOXES)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(5))


def test_output_columns_follow_the_label_map():
    label_map = LabelMap.from_pairs([(80, "watch (a person)"), (12, "stand"), (14, "walk")])
    model = standin_model(label_map)
    assert model.num_classes == 3 and model.label_map.ids == (80, 12, 14)
    targets = encode_targets([[12], [80, 14], [999]], label_map)  # unknown ids are ignored
    torch.testing.assert_close(targets, torch.tensor([[0.0, 1, 0], [1, 0, 1], [0, 0, 0]]))
    torch.testing.assert_close(encode_targets([[14], [80]], label_map, "softmax"), torch.tensor([2, 0]))
    with pytest.raises(ValueError, match="exactly one label"):
        encode_targets([[14, 12]], label_map, "softmax")


def test_preprocess_normalises_and_permutes():
    frames = np.zeros((4, 6, 5, 3), np.uint8)
    frames[2, 3, 1] = (255, 0, 115)
    clip = preprocess(frames)
    assert clip.shape == (3, 4, 6, 5) and clip.dtype == torch.float32
    want = [(1.0 - KINETICS_MEAN[0]) / KINETICS_STD[0], -KINETICS_MEAN[1] / KINETICS_STD[1],
            (115 / 255 - KINETICS_MEAN[2]) / KINETICS_STD[2]]
    torch.testing.assert_close(clip[:, 2, 3, 1], torch.tensor(want))
    assert preprocess(np.stack([frames, frames])).shape == (2, 3, 4, 6, 5)
    with pytest.raises(ValueError, match="uint8"):
        preprocess(frames.astype(np.float32))


def test_bad_clips_are_clear_errors():
    model = standin_model()
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        model(torch.randn(3, 4, 64, 80), BOXES)
    with pytest.raises(ValueError, match="one box tensor per clip"):
        model(torch.randn(2, 3, 4, 64, 80), BOXES)


def test_build_from_the_tiny_config():
    cfg = tiny_config()
    model = build_action_model(cfg, synthetic_label_map())
    assert model.input_spec == InputSpec(8, 4, 128, (128, 160))
    assert model.head.feature_stride == model.backbone.feature_stride == 16
    assert model.load_report is None  # weights: null
    out = model(torch.randn(2, 3, 8, 64, 80), BOXES[:2])  # any size runs
    assert out.shape == (2, 6)


@pytest.mark.parametrize("fine", [False, True])
def test_fine_features_reach_the_head_when_configured(fine):
    torch.manual_seed(0)
    model = build_action_model(tiny_config(f"model.head.fine_features={str(fine).lower()}"), synthetic_label_map())
    channels = model.backbone.fine_channels if fine else 0
    assert model.head.fine_channels == channels
    assert model.head.row_bins == 2 and model.backbone.out_channels == 256  # the tiny config
    assert model.head.proj.in_features == (256 + channels) * 2
    clips = torch.randn(2, 3, 8, 64, 80)
    model(clips, BOXES[:2]).sum().backward()
    first_block = next(model.backbone.blocks[0].parameters())
    assert first_block.grad is not None and first_block.grad.abs().sum() > 0
    if fine:
        assert model.head.fine_norm.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="stride-8"):
        build_action_model(tiny_config("model.head.fine_features=true"), synthetic_label_map(), backbone=StandIn())


def test_backbone_weights_are_loaded_when_the_config_names_them(monkeypatch):
    calls = []

    def fake_load(backbone, source):
        calls.append((type(backbone).__name__, source))
        return "report"

    monkeypatch.setattr(weights_module, "load_backbone_weights", fake_load)
    cfg = tiny_config("model.backbone.weights=some/file.pyth")
    assert build_action_model(cfg, synthetic_label_map()).load_report == "report"
    assert calls == [("MViTBackbone", "some/file.pyth")]
    build_action_model(cfg, synthetic_label_map(), load_weights=False)
    assert len(calls) == 1


def synthetic_clips(model: ActionModel, size=(64, 80), videos=2, keyframes=2):
    """Clips around keyframes of synthetic scenes with their ground-truth boxes and action ids."""
    height, width = size
    spec = SyntheticSpec(videos=videos, seconds=6, fps=8, width=width, height=height, max_people=3, seed=1)
    t, rate = model.input_spec.num_frames, model.input_spec.sampling_rate
    clips, boxes, labels = [], [], []
    for v in range(videos):
        scene = SyntheticScene(spec, v)
        for sec in spec.keyframe_seconds()[:keyframes]:
            center = sec * spec.fps
            index = np.clip(center + (np.arange(t) - t // 2) * rate, 0, scene.num_frames - 1)
            clips.append(model.preprocess(np.stack([scene.render(int(f)) for f in index])))
            people = scene.people(center)
            boxes.append(torch.from_numpy(np.array([p.box for p in people], np.float32).reshape(-1, 4)))
            labels += [p.actions for p in people]
    return torch.stack(clips), boxes, encode_targets(labels, model.label_map)


def test_tiny_model_overfits_a_handful_of_synthetic_clips():
    torch.manual_seed(0)
    model = build_action_model(tiny_config("model.backbone.input_size=[8, 64, 80]"), synthetic_label_map())
    clips, boxes, targets = synthetic_clips(model)
    assert len(targets) >= 6 and targets.sum(0).count_nonzero() >= 3  # several people, several actions
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(80):
        loss = model.loss(model(clips, boxes), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 10:
            break
    assert losses[-1] < losses[0] / 10, f"loss went from {losses[0]:.3f} to {losses[-1]:.3f} in {len(losses)} steps"
    probs = model.predict(clips, boxes)
    assert ((probs > 0.5) == (targets > 0.5)).float().mean() > 0.95
