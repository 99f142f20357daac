"""The Detectron2 person detector (detection/persons/detectron2_backend.py).

Tests that need Detectron2 skip when ``import detectron2`` fails (``make detectron2`` installs it); the
message given without it is tested with the package hidden.
"""

import importlib
import os
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from detection.config import DetectorConfig
from detection.models.weights import WeightsLoadError, WeightsUnavailableError
from detection.persons.base import PersonDetections
from detection.persons.detectron2_backend import (
    DEFAULT_MODEL,
    Detectron2Detector,
    detectron2_available,
)

SMALL = ["INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 224]  # small inputs: fast on CPU
# The file of DEFAULT_MODEL's weights under the zoo's download prefix.
ZOO_FILE = "COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl"


@pytest.fixture
def d2():
    module = pytest.importorskip("detectron2")
    detectron2_available()  # imports the submodules used here, without torch's jit deprecation warnings
    return module


def hide_detectron2(monkeypatch):
    for name in [m for m in sys.modules if m == "detectron2" or m.startswith("detectron2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "detectron2", None)  # `import detectron2` now raises ImportError


def test_without_detectron2_the_module_imports_and_construction_explains(monkeypatch):
    hide_detectron2(monkeypatch)
    monkeypatch.delitem(sys.modules, "detection.persons.detectron2_backend")
    backend = importlib.import_module("detection.persons.detectron2_backend")
    assert not backend.detectron2_available()
    with pytest.raises(backend.Detectron2NotInstalledError) as err:
        backend.Detectron2Detector(weights="random", device="cpu")
    message = str(err.value)
    assert "make detectron2" in message and "scripts/install_detectron2.py" in message
    assert "not on PyPI" in message and sys.prefix in message
    assert isinstance(err.value, ImportError)


def test_zoo_config_and_weights_url_resolve(d2):
    from detectron2 import model_zoo

    path = Path(model_zoo.get_config_file(DEFAULT_MODEL))
    assert path.is_file() and path.name == "faster_rcnn_R_50_FPN_3x.yaml"
    assert Path(model_zoo.get_config_file("COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml")).is_file()
    assert model_zoo.get_checkpoint_url(DEFAULT_MODEL).endswith(ZOO_FILE)
    assert detectron2_available()


def real_frames():
    """A photograph with a person (matplotlib's sample image) and crops of it, RGB uint8, various sizes."""
    import matplotlib
    from PIL import Image

    photo = Path(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    image = np.asarray(Image.open(photo).convert("RGB"))
    return [image, np.ascontiguousarray(image[100:340, 50:370]), np.ascontiguousarray(image[::3, ::2])]


def random_detector(**fields):
    """Faster R-CNN R50-FPN, random init, CPU, small inputs."""
    import torch

    torch.manual_seed(0)
    return Detectron2Detector(weights="random", device="cpu", opts=SMALL, **fields)


@pytest.fixture(scope="module")
def always_person(one_torch_thread):
    """A random-init detector whose box head calls every proposal a person (score e^5 / (e^5 + 80) ≈ 0.65)
    at the proposal's own box: random weights otherwise find nothing to filter."""
    pytest.importorskip("detectron2")
    return make_always_person(random_detector(score_threshold=0.0, batch_size=2))


def check_valid(people, max_people):
    assert isinstance(people, PersonDetections)
    assert people.boxes.dtype == np.float32 and people.scores.dtype == np.float32
    assert len(people) <= max_people
    assert ((people.boxes >= 0) & (people.boxes <= 1)).all()
    assert (people.boxes[:, 2] >= people.boxes[:, 0]).all() and (people.boxes[:, 3] >= people.boxes[:, 1]).all()
    assert (np.diff(people.scores) <= 0).all()


def test_random_init_model_on_real_frames(always_person):
    frames = real_frames()
    out = always_person.detect(frames)
    assert len(out) == len(frames)
    for people in out:
        check_valid(people, 100)
        assert len(people) > 0 and people.keypoints is None
        np.testing.assert_allclose(people.scores, np.exp(5) / (np.exp(5) + 80), rtol=1e-5)


def test_threshold_and_max_people_hold_on_model_output(always_person):
    frames = real_frames()[:2]
    settings = always_person.settings
    try:
        always_person.settings = replace(settings, max_people=3)
        assert all(0 < len(p) <= 3 for p in always_person.detect(frames))
        always_person.settings = replace(settings, score_threshold=0.7)  # above every score
        assert all(len(p) == 0 for p in always_person.detect(frames))
        always_person.settings = replace(settings, min_box_size=0.5)
        for people in always_person.detect(frames):
            assert ((people.boxes[:, 3] - people.boxes[:, 1]) >= 0.5).all()
    finally:
        always_person.settings = settings


class StubModel:
    """Stands in for the Detectron2 model: records its inputs, returns fixed pixel-space instances."""

    def __init__(self, boxes, scores, classes, keypoints=None):
        self.boxes, self.scores, self.classes, self.keypoints = boxes, scores, classes, keypoints
        self.calls = []

    def __call__(self, inputs):
        import torch
        from detectron2.structures import Boxes, Instances

        self.calls.append(inputs)
        outputs = []
        for item in inputs:
            instances = Instances((item["height"], item["width"]))
            instances.pred_boxes = Boxes(torch.tensor(self.boxes, dtype=torch.float32))
            instances.scores = torch.tensor(self.scores, dtype=torch.float32)
            instances.pred_classes = torch.tensor(self.classes, dtype=torch.int64)
            if self.keypoints is not None:
                instances.pred_keypoints = torch.tensor(self.keypoints, dtype=torch.float32)
            outputs.append({"instances": instances})
        return outputs


def test_person_class_filter_scaling_and_inputs_with_a_stubbed_model(d2, one_torch_thread):
    detector = random_detector(score_threshold=0.3, max_people=2, batch_size=2)
    boxes = [[32, 24, 96, 120], [0, 0, 320, 240], [10, 20, 30, 40], [160, 60, 320, 180], [1, 2, 3, 4]]
    scores = [0.6, 0.99, 0.8, 0.9, 0.2]
    classes = [0, 2, 0, 0, 0]  # the 0.99 box is a car; the 0.2 person is under the threshold
    keypoints = np.tile(np.array([[[16.0, 48.0, 0.7]]], np.float32), (5, 17, 1))
    stub = StubModel(boxes, scores, classes, keypoints)
    detector.model = stub
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30  # R, G, B
    out = detector.detect([frame, frame, frame])
    # Persons only, above the threshold, best first, at most max_people, pixels / (W, H, W, H) exactly.
    expected = np.array([[160, 60, 320, 180], [10, 20, 30, 40]], np.float32) / np.float32([320, 240, 320, 240])
    for people in out:
        np.testing.assert_array_equal(people.boxes, expected)
        np.testing.assert_array_equal(people.scores, np.float32([0.9, 0.8]))
        np.testing.assert_allclose(people.keypoints[:, 0], [[0.05, 0.2, 0.7]] * 2, rtol=1e-6)
    # Two batches (batch_size 2); each input BGR, resized to the config's short edge, original size given.
    assert [len(call) for call in stub.calls] == [2, 1]
    item = stub.calls[0][0]
    assert (item["height"], item["width"]) == (240, 320)
    assert tuple(item["image"].shape) == (3, 128, 171)  # short edge 240 -> 128, long edge 320 * 128 / 240
    assert [float(item["image"][c].mean()) for c in range(3)] == [30.0, 20.0, 10.0]  # B, G, R


def test_config_keyword_construction_and_bad_names(d2, tmp_path):
    cfg = DetectorConfig(backend="detectron2", model=DEFAULT_MODEL, weights="random", device="cpu", max_people=7)
    detector = Detectron2Detector(cfg, opts=SMALL, score_threshold=0.25)
    assert detector.settings.max_people == 7 and detector.settings.score_threshold == 0.25
    assert detector.d2cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST == 0.25 and detector.d2cfg.INPUT.MIN_SIZE_TEST == 128
    assert detector.input_format == "BGR" and str(detector.device) == "cpu"
    with pytest.raises(ValueError, match="model-zoo config name"):
        Detectron2Detector(model="fasterrcnn_resnet50_fpn_v2", weights="random", device="cpu")
    with pytest.raises(FileNotFoundError, match="no-such.pkl"):
        Detectron2Detector(weights=str(tmp_path / "no-such.pkl"), device="cpu")
    # A config file of one's own: its MODEL.WEIGHTS is used when no weights are given.
    from detectron2 import model_zoo

    base = Path(model_zoo.get_config_file(DEFAULT_MODEL)).parent.parent / "Base-RCNN-FPN.yaml"
    own = tmp_path / "own.yaml"
    own.write_text(f'_BASE_: "{base}"\nMODEL:\n  WEIGHTS: ""\n  RESNETS:\n    DEPTH: 50\n')
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty"):
        Detectron2Detector(model=str(own), device="cpu")
    assert Detectron2Detector(model=str(own), weights="random", device="cpu", opts=SMALL).model.training is False


def zoo_format_pickle(state_dict, path):
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state_dict.items()}, "__author__": "test"}, f)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)


def test_weights_from_local_files_and_the_cache(d2, tmp_path, monkeypatch, one_torch_thread):
    import torch
    from detectron2 import model_zoo

    source = random_detector()
    pth, pkl = tmp_path / "model.pth", tmp_path / "model.pkl"
    torch.save({"model": source.model.state_dict()}, pth)
    zoo_format_pickle(source.model.state_dict(), pkl)
    torch.manual_seed(1)  # the loaded detectors start from other random weights
    assert_same_weights(Detectron2Detector(weights=str(pth), device="cpu", opts=SMALL).model, source.model)
    assert_same_weights(Detectron2Detector(weights=str(pkl), device="cpu", opts=SMALL).model, source.model)
    # Zoo weights already in torch.hub's cache are used without any download.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(model_zoo.model_zoo._ModelZooUrls, "S3_PREFIX", "http://127.0.0.1:9/detectron2/")
    cached = Path(torch.hub.get_dir(), "checkpoints", "detectron2", ZOO_FILE)
    cached.parent.mkdir(parents=True)
    os.link(pkl, cached)
    assert_same_weights(Detectron2Detector(device="cpu", opts=SMALL).model, source.model)


def test_unsafe_or_unfitting_weights_are_refused(d2, tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {}, "__author__": os.getcwd, "x": os.system}))
    with pytest.raises(WeightsLoadError, match="refusing to unpickle"):
        Detectron2Detector(weights=str(evil), device="cpu")
    partial = tmp_path / "partial.pkl"
    zoo_format_pickle(random_detector().model.backbone.state_dict(), partial)  # backbone keys, no "backbone." prefix
    with pytest.raises(WeightsLoadError, match="do not fit the model"):
        Detectron2Detector(weights=str(partial), device="cpu")


def test_offline_weights_error_names_the_url_and_the_way_out(d2, tmp_path, monkeypatch):
    from detectron2 import model_zoo

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # Nothing listens on the loopback discard port: the download fails at once, as offline.
    monkeypatch.setattr(model_zoo.model_zoo._ModelZooUrls, "S3_PREFIX", "http://127.0.0.1:9/detectron2/")
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        Detectron2Detector(device="cpu", opts=SMALL, progress=False)
    assert time.perf_counter() - start < 20
    message = str(err.value)
    assert f"http://127.0.0.1:9/detectron2/{ZOO_FILE}" in message
    assert "detector.weights=/path/to/model_final_280758.pkl" in message
    assert str(tmp_path / "torch") in message  # where a copied file would be found


def make_always_person(detector):
    """Every proposal a person at its own box (see the ``always_person`` fixture)."""
    import torch

    predictor = detector.model.roi_heads.box_predictor
    with torch.no_grad():
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.zero_()
        predictor.cls_score.bias[0] = 5.0
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
    return detector


def test_cuda_requested_without_cuda_is_a_clear_error(d2):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Detectron2Detector(weights="random", device="cuda")


@pytest.mark.gpu
def test_on_cuda_with_weights_loaded_from_a_file(d2, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    source = make_always_person(random_detector())
    weights = tmp_path / "model.pth"
    torch.save(source.model.state_dict(), weights)
    detector = Detectron2Detector(weights=str(weights), device="auto", opts=SMALL, score_threshold=0.0, batch_size=2)
    assert str(detector.device).startswith("cuda")
    assert all(p.is_cuda for p in detector.model.parameters())
    # (The boxes are not compared with the CPU's: a random backbone's proposals are degenerate boxes whose
    # ranking changes with float rounding, TF32 convolutions on CUDA.)
    for people in detector.detect(real_frames()):
        check_valid(people, 100)
        assert len(people) > 0
        np.testing.assert_allclose(people.scores, np.exp(5) / (np.exp(5) + 80), rtol=1e-4)


def test_ops_without_their_cpp_extension_raise_a_clear_error(d2):
    import torch
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    boxes = torch.tensor([[10.0, 10.0, 4.0, 4.0, 0.0]])
    try:
        import detectron2._C  # noqa: F401  (a Detectron2 built with its extension)
    except ImportError:
        with pytest.raises(RuntimeError, match="without its C\\+\\+/CUDA ops"):
            pairwise_iou_rotated(boxes, boxes)
    else:
        assert float(pairwise_iou_rotated(boxes, boxes)) == pytest.approx(1.0)
