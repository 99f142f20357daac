import time
import urllib.error

import pytest
import torch
from torch import nn

import detection.models.pytorchvideo_ava as pva
from detection.models.weights import WeightsUnavailableError
from detection.structures import LabelMap

BOXES = [torch.tensor([[0.1, 0.1, 0.5, 0.9], [0.4, 0.2, 0.9, 0.9]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]])]


@pytest.fixture(scope="module")
def slowfast():
    return pva.build_pytorchvideo_ava("slowfast_r50_detection")


@pytest.fixture(scope="module")
def slow():
    return pva.build_pytorchvideo_ava("slow_r50_detection")


def test_ava_label_map_has_80_classes_60_evaluated_and_agrees_with_the_benchmark_list(ava_label_map_path):
    full = pva.ava_label_map()
    assert full.ids == tuple(range(1, 81)) and len(full.evaluated) == 60
    assert full.name(1) == "bend/bow (at the waist)" and full.name(80) == "watch (a person)"
    assert full.label_types[2] == "PERSON_MOVEMENT" and full.label_types[17] == "OBJECT_MANIPULATION"
    assert full.label_types[64] == "PERSON_INTERACTION"
    benchmark = LabelMap.from_pbtxt(ava_label_map_path)
    assert full.evaluated == frozenset(benchmark.ids)
    assert all(full.name(i) == name for i, name in benchmark)


@pytest.mark.parametrize("which, frames", [("slowfast", 32), ("slow", 4)])
def test_random_init_runs_through_the_wrapper(request, which, frames):
    model = request.getfixturevalue(which)
    assert model.input_spec.num_frames == frames and model.num_classes == 80
    assert model.label_map.ids == tuple(range(1, 81))
    clips = torch.randn(2, 3, frames, 64, 96)
    logits = model.eval()(clips, BOXES)
    assert logits.shape == (3, 80)
    probs = model.predict(clips, BOXES)
    torch.testing.assert_close(probs, torch.sigmoid(logits))  # forward gives logits: their sigmoid is removed
    assert model(clips, [torch.zeros(0, 4), torch.zeros(0, 4)]).shape == (0, 80)
    with pytest.raises(ValueError, match=f"expected clips of {frames} frames"):
        model(torch.randn(1, 3, frames + 4, 64, 96), BOXES[:1])


class Recorder(nn.Module):
    """Stands in for pytorchvideo's network and records what the wrapper feeds it."""

    def forward(self, x, rois):
        self.x, self.rois = x, rois
        return torch.zeros(len(rois), 80)


def test_pathways_and_boxes_are_packed_the_pytorchvideo_way(slowfast, slow):
    clips = torch.arange(32, dtype=torch.float32).view(1, 1, 32, 1, 1).expand(2, 3, 32, 48, 80).contiguous()
    recorder = Recorder()
    original, slowfast.net = slowfast.net, recorder
    try:
        slowfast(clips, BOXES)
    finally:
        slowfast.net = original
    slow_path, fast_path = recorder.x
    assert fast_path.shape[2] == 32 and slow_path.shape[2] == 8
    # linspace(0, 31, 8) -> 0, 4.43, 8.86, ... truncated: the frames PySlowFast's pack_pathway_output picks
    assert slow_path[0, 0, :, 0, 0].tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    torch.testing.assert_close(recorder.rois, torch.tensor([
        [0.0, 8.0, 4.8, 40.0, 43.2],  # batch index, then pixels of the 80 x 48 clip
        [0.0, 32.0, 9.6, 72.0, 43.2],
        [1.0, 0.0, 0.0, 80.0, 48.0],
    ]))
    original, slow.net = slow.net, recorder
    try:
        slow(clips[:, :, :4], BOXES)
    finally:
        slow.net = original
    assert isinstance(recorder.x, torch.Tensor) and recorder.x.shape[2] == 4


def test_offline_pretrained_is_a_quick_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        pva.build_pytorchvideo_ava("slowfast_r50_detection", pretrained=True)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert pva.PYTORCHVIDEO_AVA["slowfast_r50_detection"].url in message
    assert "checkpoint='/path/to/SLOWFAST_8x8_R50_DETECTION.pyth'" in message
    assert str(tmp_path / "checkpoints" / "SLOWFAST_8x8_R50_DETECTION.pyth") in message


def test_pretrained_weights_load_from_a_local_file(slow, tmp_path):
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in slow.net.state_dict().items()}
    path = tmp_path / "SLOW_4x16_R50_DETECTION.pyth"
    torch.save({"model_state": state, "epoch": 20}, path)
    loaded = pva.build_pytorchvideo_ava("pytorchvideo/slow_r50_detection", checkpoint=path)
    torch.testing.assert_close(loaded.net.detection_head.proj.weight, state["detection_head.proj.weight"])
    wrong = tmp_path / "wrong.pyth"
    torch.save({"model_state": {"x": torch.zeros(1)}}, wrong)
    with pytest.raises(ValueError, match="not weights of slow_r50_detection"):
        pva.build_pytorchvideo_ava("slow_r50_detection", checkpoint=wrong)


def test_unknown_name():
    with pytest.raises(KeyError, match="slowfast_r50_detection"):
        pva.build_pytorchvideo_ava("x3d_detection")
