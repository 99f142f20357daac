"""The torchvision person detectors: random-init builds on real frames, person-only logic, weights files, offline."""

import socket
import time
import urllib.error

import numpy as np
import pytest
import torch

from data_prep.synthetic import SyntheticScene, SyntheticSpec
from detection.models.weights import DOWNLOAD_TIMEOUT_S, WeightsLoadError, WeightsUnavailableError
from detection.persons.base import DetectorSettings, PersonDetections
from detection.persons.torchvision_backend import MODELS, PERSON_LABEL, TorchvisionDetector, _person_postprocess

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"min_size": 240, "max_size": 320, "model_kwargs": {"rpn_pre_nms_top_n_test": 200,
                                                            "rpn_post_nms_top_n_test": 30}}


@pytest.fixture(scope="module")
def frames():
    """Two 320x240 frames of a synthetic scene, and one of another size."""
    scene = SyntheticScene(SyntheticSpec(videos=1, seconds=2, fps=10, width=320, height=240, seed=4), 0)
    return [scene.render(3), scene.render(12), np.ascontiguousarray(scene.render(5)[:200, :300])]


def small_detector(model, weights="random", **settings):
    torch.manual_seed(0)
    defaults = {"score_threshold": 0.0, "max_people": 3, "batch_size": 2, "device": "cpu"}
    return TorchvisionDetector(model, weights, DetectorSettings(**{**defaults, **settings}), **SMALL)


@pytest.mark.parametrize("model", list(MODELS))
def test_each_model_returns_valid_people_on_real_frames(model, frames):
    detector = small_detector(model)
    assert not detector.model.training and detector.device == torch.device("cpu")
    out = detector.detect(frames)
    assert len(out) == 3
    for people in out:
        assert isinstance(people, PersonDetections)
        assert 1 <= len(people) <= 3  # score threshold 0: random weights still find "people"
        assert people.boxes.dtype == np.float32 and (people.boxes >= 0).all() and (people.boxes <= 1).all()
        assert (people.boxes[:, 2:] >= people.boxes[:, :2]).all()
        assert (np.diff(people.scores) <= 0).all() and (people.scores >= 0).all() and (people.scores <= 1).all()
        if MODELS[model].keypoints:
            assert people.keypoints.shape == (len(people), 17, 3)
            assert (people.keypoints[..., :2] >= -1e-6).all() and (people.keypoints[..., :2] <= 1 + 1e-6).all()
        else:
            assert people.keypoints is None


def test_model_settings_follow_our_filters():
    detector = small_detector("fasterrcnn_mobilenet_v3_large_fpn", score_threshold=0.35, max_people=7,
                              min_box_size=0.1)
    heads = detector.model.roi_heads
    assert heads.score_thresh == 0.35 and heads.detections_per_img == 7 and heads.min_height_frac == 0.1
    assert detector.model.transform.min_size == (240,) and detector.model.transform.max_size == 320
    assert not any(p.requires_grad for p in detector.model.parameters())


class StubModel:
    """Stands in for a torchvision model: records its input, returns fixed pixel detections per image."""

    def __init__(self, outputs):
        self.outputs, self.inputs = outputs, None

    def __call__(self, images):
        self.inputs = images
        return self.outputs[: len(images)]


def test_only_people_are_kept_and_boxes_scaled_exactly():
    detector = small_detector("fasterrcnn_mobilenet_v3_large_fpn", score_threshold=0.5, max_people=10)
    out0 = {
        "boxes": torch.tensor([[20.0, 10.0, 100.0, 50.0], [0.0, 0.0, 200.0, 100.0], [50.0, 25.0, 150.0, 75.0],
                               [10.0, 10.0, 20.0, 20.0]]),
        "labels": torch.tensor([PERSON_LABEL, 3, PERSON_LABEL, PERSON_LABEL]),
        "scores": torch.tensor([0.6, 0.99, 0.9, 0.4]),
    }
    out1 = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    stub = StubModel([out0, out1])
    detector.model = stub
    frames = [np.full((100, 200, 3), 255, np.uint8), np.zeros((30, 40, 3), np.uint8)]
    people, nobody = detector.detect(frames)
    np.testing.assert_array_equal(people.scores, np.array([0.9, 0.6], np.float32))
    np.testing.assert_array_equal(people.boxes, np.array([[0.25, 0.25, 0.75, 0.75], [0.1, 0.1, 0.5, 0.5]], np.float32))
    assert len(nobody) == 0
    # The model got CHW float images in [0, 1], each at its own size.
    assert [tuple(i.shape) for i in stub.inputs] == [(3, 100, 200), (3, 30, 40)]
    assert stub.inputs[0].dtype == torch.float32 and float(stub.inputs[0].max()) == 1.0


def test_keypoints_from_the_model_are_normalized():
    detector = small_detector("fasterrcnn_mobilenet_v3_large_fpn", score_threshold=0.0)
    detector.model = StubModel([{
        "boxes": torch.tensor([[0.0, 0.0, 40.0, 20.0], [0.0, 0.0, 10.0, 10.0]]),
        "labels": torch.tensor([PERSON_LABEL, 2]),
        "scores": torch.tensor([0.8, 0.9]),
        "keypoints": torch.tensor([[[20.0, 10.0, 1.0], [40.0, 0.0, 1.0]], [[1.0, 1.0, 1.0], [2.0, 2.0, 1.0]]]),
        "keypoints_scores": torch.tensor([[5.0, -2.0], [1.0, 1.0]]),
    }])
    (people,) = detector.detect([np.zeros((20, 40, 3), np.uint8)])
    np.testing.assert_allclose(people.keypoints, [[[0.5, 0.5, 5.0], [1.0, 0.0, -2.0]]])


def test_person_postprocess_keeps_only_the_person_class():
    """Person probability over all classes, the person box regression, threshold, height, NMS and limit."""
    detector = small_detector("fasterrcnn_mobilenet_v3_large_fpn", score_threshold=0.5, max_people=5)
    heads = detector.model.roi_heads
    num_classes = heads.box_predictor.cls_score.out_features
    proposals = [torch.tensor([[10.0, 10.0, 50.0, 90.0],  # a person
                               [60.0, 10.0, 90.0, 90.0],  # a car (class 3)
                               [11.0, 11.0, 51.0, 91.0],  # the same person again: suppressed by NMS
                               [100.0, 10.0, 140.0, 15.0]])]  # a flat person: below a min height of 0.1
    logits = torch.zeros(4, num_classes)
    logits[[0, 2, 3], PERSON_LABEL] = torch.tensor([6.0, 5.0, 7.0])
    logits[1, 3] = 8.0
    regression = torch.zeros(4, num_classes * 4)
    regression[0, 4 * 3: 4 * 3 + 4] = torch.tensor([5.0, 5.0, 5.0, 5.0])  # another class's box: ignored
    boxes, scores, labels = _person_postprocess(heads, logits, regression, proposals, [(100, 200)])
    person = torch.softmax(logits, -1)[:, PERSON_LABEL]
    torch.testing.assert_close(boxes[0], proposals[0][[3, 0]])
    torch.testing.assert_close(scores[0], person[[3, 0]])
    assert labels[0].tolist() == [PERSON_LABEL, PERSON_LABEL]
    heads.min_height_frac = 0.1
    boxes, _, _ = _person_postprocess(heads, logits, regression, proposals, [(100, 200)])
    torch.testing.assert_close(boxes[0], proposals[0][[0]])
    heads.min_height_frac, heads.detections_per_img = 0.0, 1
    boxes, _, _ = _person_postprocess(heads, logits, regression, proposals, [(100, 200)])
    torch.testing.assert_close(boxes[0], proposals[0][[3]])


def test_local_weights_file_roundtrip_and_bad_files(tmp_path, frames):
    source = small_detector("fasterrcnn_mobilenet_v3_large_fpn")
    path = tmp_path / "detector.pth"
    torch.save({"model": source.model.state_dict()}, path)
    loaded = small_detector("fasterrcnn_mobilenet_v3_large_fpn", weights=path)
    torch.manual_seed(1)  # a different init would differ; the file must decide
    a, b = source.detect(frames[:1])[0], loaded.detect(frames[:1])[0]
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)

    with pytest.raises(FileNotFoundError, match="missing.pth not found"):
        small_detector("fasterrcnn_mobilenet_v3_large_fpn", weights=tmp_path / "missing.pth")
    other = tmp_path / "other.pth"
    torch.save({"backbone.body.conv.weight": torch.zeros(1)}, other)
    with pytest.raises(WeightsLoadError, match="does not fit fasterrcnn_mobilenet_v3_large_fpn: .* missing keys"):
        small_detector("fasterrcnn_mobilenet_v3_large_fpn", weights=other)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": source.model.state_dict(), "extra": object.__new__(StubModel)}, unsafe)
    with pytest.raises(WeightsLoadError, match="weights_only"):
        small_detector("fasterrcnn_mobilenet_v3_large_fpn", weights=unsafe)


def test_offline_download_fails_fast_with_the_url_and_the_manual_way(tmp_path, monkeypatch):
    timeouts = []

    def no_network(*args, **kwargs):
        timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache
    url = MODELS["fasterrcnn_mobilenet_v3_large_fpn"].url
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        TorchvisionDetector("fasterrcnn_mobilenet_v3_large_fpn", None, DetectorSettings(device="cpu"), progress=False)
    assert time.perf_counter() - start < 10
    message = str(err.value)
    assert url in message and "curl -LO" in message and "--weights" in message
    assert str(tmp_path / "checkpoints" / url.rsplit("/", 1)[1]) in message
    assert timeouts == [DOWNLOAD_TIMEOUT_S]
    assert socket.getdefaulttimeout() is None  # restored


def test_unknown_model_and_device():
    with pytest.raises(ValueError, match="unknown torchvision person detector"):
        TorchvisionDetector("retinanet", "random")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            TorchvisionDetector("fasterrcnn_mobilenet_v3_large_fpn", "random", DetectorSettings(device="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["fasterrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn"])
def test_cuda_bf16_returns_valid_float32_people(model, frames):
    """On CUDA (bf16 autocast, heads back in float32) the output keeps its shapes, types and ranges."""
    detector = small_detector(model, device="auto")
    assert detector.device.type == "cuda"
    for people in detector.detect(frames):
        assert people.boxes.dtype == np.float32 and 1 <= len(people) <= 3
        assert (people.boxes >= 0).all() and (people.boxes <= 1).all()
        assert np.isfinite(people.scores).all() and (np.diff(people.scores) <= 0).all()
        if MODELS[model].keypoints:
            assert people.keypoints.shape == (len(people), 17, 3) and np.isfinite(people.keypoints).all()
