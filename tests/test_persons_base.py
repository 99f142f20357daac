"""The person-detector interface: common filters, frame checks, batching, and building a detector from config."""

import sys
import types

import numpy as np
import pytest

from detection.config import DetectorConfig
from detection.persons.base import DetectorSettings, PersonDetections, PersonDetector, filter_people
from detection.persons.factory import BackendUnavailableError, build_detector


class FixedDetector(PersonDetector):
    """Returns the same pixel boxes on every frame and records the batch sizes it was given."""

    name = "fixed"

    def __init__(self, boxes, scores, keypoints=None, settings=None):
        super().__init__(settings)
        self.boxes, self.scores, self.keypoints = boxes, scores, keypoints
        self.batches = []

    def _detect_pixels(self, frames):
        self.batches.append(len(frames))
        return [(np.array(self.boxes, np.float32), np.array(self.scores, np.float32), self.keypoints)
                for _ in frames]


def test_filter_people_threshold_size_limit_sorting_and_clipping():
    boxes = np.array(
        [
            [0, 0, 50, 100],  # height 1.0, score 0.6
            [10, 10, 20, 20],  # height 0.1: too small at min_box_size 0.2
            [-30, 50, 250, 150],  # clipped to the frame
            [5, 5, 60, 80],  # score exactly at the threshold: kept
            [0, 0, 10, 90],  # below the threshold
        ],
        np.float32,
    )
    scores = np.array([0.6, 0.9, 0.8, 0.5, 0.49], np.float32)
    settings = DetectorSettings(score_threshold=0.5, min_box_size=0.2, max_people=2)
    out = filter_people(boxes, scores, width=200, height=100, settings=settings)
    assert isinstance(out, PersonDetections)
    np.testing.assert_array_equal(out.scores, np.array([0.8, 0.6], np.float32))  # best first, at most 2
    np.testing.assert_allclose(out.boxes, [[0.0, 0.5, 1.0, 1.0], [0.0, 0.0, 0.25, 1.0]])
    assert out.boxes.dtype == np.float32 and out.keypoints is None
    everyone = filter_people(boxes, scores, 200, 100, DetectorSettings(score_threshold=0.5))
    np.testing.assert_array_equal(everyone.scores, np.array([0.9, 0.8, 0.6, 0.5], np.float32))


def test_filter_people_keeps_equal_scores_in_input_order_and_handles_no_boxes():
    boxes = np.array([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]], np.float32)
    out = filter_people(boxes, np.full(3, 0.7), 10, 10, DetectorSettings())
    np.testing.assert_allclose(out.boxes[:, 0], [0.0, 0.1, 0.2])
    empty = filter_people(np.zeros((0, 4)), np.zeros(0), 10, 10, DetectorSettings())
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


def test_keypoints_are_normalized_with_their_boxes():
    boxes = np.array([[0, 0, 100, 50], [10, 0, 40, 50]], np.float32)
    kps = np.array([[[50, 25, 0.9], [100, 50, 0.1]], [[20, 10, 3.0], [40, 40, -1.0]]], np.float32)
    out = filter_people(boxes, np.array([0.6, 0.9]), 100, 50, DetectorSettings(), keypoints_px=kps)
    assert out.keypoints.shape == (2, 2, 3)
    np.testing.assert_allclose(out.keypoints[0], [[0.2, 0.2, 3.0], [0.4, 0.8, -1.0]])  # the 0.9 person first
    np.testing.assert_allclose(out.keypoints[1], [[0.5, 0.5, 0.9], [1.0, 1.0, 0.1]])
    np.testing.assert_array_equal(kps[0, 0], np.array([50, 25, 0.9], np.float32))  # the input is not modified


def test_detect_batches_and_normalizes_per_frame_size():
    detector = FixedDetector([[10, 20, 30, 40]], [0.9], settings=DetectorSettings(batch_size=2))
    frames = [np.zeros((100, 200, 3), np.uint8), np.zeros((40, 50, 3), np.uint8), np.zeros((80, 80, 3), np.uint8)]
    out = detector(frames)
    assert detector.batches == [2, 1]
    np.testing.assert_allclose(out[0].boxes, [[0.05, 0.2, 0.15, 0.4]])
    np.testing.assert_allclose(out[1].boxes, [[0.2, 0.5, 0.6, 1.0]])


@pytest.mark.parametrize(
    "frame",
    [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), [[0, 0, 0]]],
)
def test_bad_frames_are_rejected_with_their_index(frame):
    detector = FixedDetector([[0, 0, 1, 1]], [1.0])
    with pytest.raises(ValueError, match=r"fixed: frame 1 must be an H×W×3 uint8 RGB array"):
        detector.detect([np.zeros((8, 8, 3), np.uint8), frame])
    assert detector.batches == []  # nothing ran


def test_settings_and_detections_are_validated():
    with pytest.raises(ValueError, match="score_threshold"):
        DetectorSettings(score_threshold=1.5)
    with pytest.raises(ValueError, match="min_box_size"):
        DetectorSettings(min_box_size=1.0)
    with pytest.raises(ValueError, match="max_people and batch_size"):
        DetectorSettings(batch_size=0)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        PersonDetections(np.zeros((2, 4)), np.zeros(1))
    with pytest.raises(ValueError, match="keypoints"):
        PersonDetections(np.zeros((1, 4)), np.zeros(1), np.zeros((1, 17)))


# -- building from config --------------------------------------------------------------------------


def test_build_detector_passes_the_filters_on(tmp_path):
    from detection.formats.ava import AvaRows, write_ava_csv
    from detection.persons.precomputed import PrecomputedBoxes

    path = tmp_path / "boxes.csv"
    write_ava_csv(path, AvaRows.build(["v"], [902], np.array([[0.1, 0.1, 0.5, 0.9]]), [-1], scores=[0.7]))
    cfg = DetectorConfig(backend="precomputed", model=str(path), score_threshold=0.3, max_people=7, batch_size=3)
    detector = build_detector(cfg)
    assert isinstance(detector, PrecomputedBoxes)
    assert detector.settings == DetectorSettings(score_threshold=0.3, max_people=7, batch_size=3)
    with pytest.raises(ValueError, match="score_threshold"):
        build_detector(DetectorConfig(backend="precomputed", model=str(path), score_threshold=2.0))


def test_build_detector_torchvision_random_weights(one_torch_thread):
    from detection.persons.torchvision_backend import TorchvisionDetector

    cfg = DetectorConfig(model="fasterrcnn_mobilenet_v3_large_fpn", weights="random", device="cpu", max_people=4)
    detector = build_detector(cfg)
    assert isinstance(detector, TorchvisionDetector) and detector.settings.max_people == 4
    with pytest.raises(ValueError, match="unknown torchvision person detector 'yolo'.*fasterrcnn_resnet50_fpn_v2"):
        build_detector(DetectorConfig(model="yolo", weights="random"))


def test_detectron2_missing_is_one_clear_error(monkeypatch):
    """Whatever the Detectron2 module does without Detectron2, the factory says how to install it."""
    fake = types.ModuleType("detection.persons.detectron2_backend")

    class Detectron2Detector:
        def __init__(self, cfg, **kwargs):
            raise ModuleNotFoundError("No module named 'detectron2'", name="detectron2")

    fake.Detectron2Detector = Detectron2Detector
    monkeypatch.setitem(sys.modules, "detection.persons.detectron2_backend", fake)
    with pytest.raises(BackendUnavailableError, match=r"make detectron2.*scripts/install_detectron2.py") as err:
        build_detector(DetectorConfig(backend="detectron2", model="COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"))
    assert "(detectron2)" in str(err.value)
