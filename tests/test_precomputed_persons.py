"""Precomputed person boxes: AVA box CSVs and mmaction2 proposal pickles, looked up by keyframe."""

import datetime
import pickle

import numpy as np
import pytest

from detection.formats.ava import AvaRows, write_ava_csv
from detection.persons.base import DetectorSettings
from detection.persons.precomputed import PrecomputedBoxes, read_proposal_pickle


def write_rows(path, rows, kind="detections"):
    """rows: (video, sec, box, action, last)."""
    video, sec, boxes, actions, last = zip(*rows, strict=True)
    if kind == "groundtruth":
        data = AvaRows.build(video, sec, np.array(boxes, np.float32), actions, person_ids=last)
    else:
        data = AvaRows.build(video, sec, np.array(boxes, np.float32), actions, scores=last)
    write_ava_csv(path, data, kind=kind)


A = [0.1, 0.2, 0.4, 0.9]
B = [0.5, 0.1, 0.7, 0.8]
C = [0.6, 0.6, 0.65, 0.65]


def test_csv_rows_of_one_box_are_one_person(tmp_path):
    """PySlowFast's detection CSV repeats a box once per action; scores come from the 8th column."""
    path = tmp_path / "ava_detection_val_boxes_and_labels.csv"
    write_rows(path, [
        ("vid-1", 902, A, 12, 0.8),
        ("vid-1", 902, A, 17, 0.8),
        ("vid-1", 902, B, 12, 0.95),
        ("vid-1", 902, C, 80, 0.3),
        ("vid-1", 903, B, 12, 0.6),
        ("_other", 902, A, 1, 0.5),
        ("vid-1", 902, A, 79, 0.85),  # the same box further down, with a higher score
    ])
    boxes = PrecomputedBoxes(path, DetectorSettings(score_threshold=0.5))
    assert len(boxes) == 3 and boxes.video_ids == ["_other", "vid-1"] and boxes.keyframes("vid-1") == [902, 903]
    people = boxes.detect_keyframe("vid-1", 902)
    np.testing.assert_allclose(people.boxes, [B, A])
    np.testing.assert_allclose(people.scores, [0.95, 0.85])
    np.testing.assert_allclose(boxes.detect_keyframe("vid-1", 903.0).boxes, [B])
    np.testing.assert_allclose(boxes.detect_keyframe("_other", 902).scores, [0.5])
    assert boxes.missing == 0 and boxes.lookups == 3


def test_filters_and_unknown_keyframes(tmp_path):
    path = tmp_path / "predicted_boxes.csv"
    write_rows(path, [("v", 10, A, -1, 0.9), ("v", 10, B, -1, 0.7), ("v", 10, C, -1, 0.6)])
    one = PrecomputedBoxes(path, DetectorSettings(score_threshold=0.0, max_people=1))
    np.testing.assert_allclose(one.detect_keyframe("v", 10).boxes, [A])
    tall = PrecomputedBoxes(path, DetectorSettings(score_threshold=0.0, min_box_size=0.5))
    np.testing.assert_allclose(tall.detect_keyframe("v", 10).scores, [0.9, 0.7])  # C is 0.05 high
    empty = tall.detect_keyframe("v", 11)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    assert len(tall.detect_keyframe("w", 10)) == 0
    assert tall.missing == 2 and tall.lookups == 3


def test_csv_without_scores_and_groundtruth_csv(tmp_path):
    seven = tmp_path / "seven.csv"
    seven.write_text("v,0902,0.100,0.200,0.400,0.900,\nv,0902,0.500,0.100,0.700,0.800,\n")
    np.testing.assert_array_equal(PrecomputedBoxes(seven).detect_keyframe("v", 902).scores, [1.0, 1.0])
    gt = tmp_path / "gt.csv"
    write_rows(gt, [("v", 902, A, 12, 0), ("v", 902, A, 14, 0), ("v", 902, B, 12, 1)], kind="groundtruth")
    people = PrecomputedBoxes(gt, groundtruth=True).detect_keyframe("v", 902)
    np.testing.assert_allclose(people.boxes, [A, B])
    np.testing.assert_array_equal(people.scores, [1.0, 1.0])


def test_fractional_timestamps_match_to_the_millisecond(tmp_path):
    path = tmp_path / "every.csv"
    write_rows(path, [("v", 0.2667, A, -1, 0.9), ("v", 1.5, B, -1, 0.8)])
    boxes = PrecomputedBoxes(path, DetectorSettings(score_threshold=0.0))
    assert len(boxes.detect_keyframe("v", 8 / 30)) == 1
    assert len(boxes.detect_keyframe("v", 1.5)) == 1
    assert len(boxes.detect_keyframe("v", 0.3)) == 0


def test_mmaction2_pickle_roundtrip(tmp_path):
    """mmaction2's layout: {"<video_id>,<timestamp:04d>": (N, 5) x1,y1,x2,y2,score normalized}."""
    proposals = {
        "0f39OWEqJ24,0902": np.array([[0.011, 0.157, 0.655, 0.983, 0.998163]]),
        "0f39OWEqJ24,0912": np.array([[0.054, 0.088, 0.91, 0.998, 0.068273], [0.016, 0.161, 0.519, 0.974, 0.984025],
                                      [0.493, 0.283, 0.981, 0.984, 0.983621]]),
        "-5KQ66BBWC4,0905": np.array([[0.1, 0.1, 0.3, 0.6]], np.float32),  # no score column
        "-5KQ66BBWC4,0906": np.zeros((0, 5)),
    }
    path = tmp_path / "ava_dense_proposals_val.FAIR.recall_93.9.pkl"
    with open(path, "wb") as f:
        pickle.dump(proposals, f)
    table = read_proposal_pickle(path)
    assert sorted(table) == [("-5KQ66BBWC4", 905000), ("-5KQ66BBWC4", 906000), ("0f39OWEqJ24", 902000),
                             ("0f39OWEqJ24", 912000)]
    boxes = PrecomputedBoxes(path, DetectorSettings(score_threshold=0.9))
    people = boxes.detect_keyframe("0f39OWEqJ24", 912)
    np.testing.assert_allclose(people.boxes, [[0.016, 0.161, 0.519, 0.974], [0.493, 0.283, 0.981, 0.984]], rtol=1e-6)
    np.testing.assert_allclose(people.scores, [0.984025, 0.983621], rtol=1e-6)
    np.testing.assert_array_equal(boxes.detect_keyframe("-5KQ66BBWC4", 905).scores, [1.0])
    assert len(boxes.detect_keyframe("-5KQ66BBWC4", 906)) == 0 and boxes.missing == 0
    assert boxes.keyframes("0f39OWEqJ24") == [902, 912]
    # Python 2 tools wrote protocol-2 pickles; they read the same.
    with open(path, "wb") as f:
        pickle.dump(proposals, f, protocol=2)
    assert sorted(read_proposal_pickle(path)) == sorted(table)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"no_timestamp": np.zeros((1, 5))}, "is not 'video_id,timestamp'"),
        ({"v,0902": np.zeros((1, 3))}, r"expected an \(N, 5\) array"),
        ({"v,0902": np.array([[10.0, 20.0, 300.0, 400.0, 0.9]])}, "outside \\[0, 1\\].*normalized"),
        ({"v,0902": np.array([[0.5, 0.5, 0.2, 0.9, 0.9]])}, "x2 < x1"),
        ([np.zeros((1, 5))], "expected a dict"),
        ({"v,0902": datetime.date(2020, 1, 1)}, "refusing to load datetime.date"),
    ],
)
def test_bad_pickles_are_one_clear_error(tmp_path, content, message):
    path = tmp_path / "proposals.pkl"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(ValueError, match=message) as err:
        PrecomputedBoxes(path)
    assert "proposals.pkl" in str(err.value)


def test_missing_file_bad_csv_and_no_pixels(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv not found"):
        PrecomputedBoxes(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("v,0902,0.1,0.2,0.4,0.9,,0.5\nv,0903,0.1,oops,0.4,0.9,,0.5\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        PrecomputedBoxes(bad)
    good = tmp_path / "good.csv"
    good.write_text("v,0902,0.1,0.2,0.4,0.9,,0.5\n")
    with pytest.raises(TypeError, match="looked up by keyframe"):
        PrecomputedBoxes(good).detect([np.zeros((4, 4, 3), np.uint8)])
