import numpy as np
import pytest

from detection.structures import (
    KeyframeDetections,
    LabelMap,
    Tube,
    as_boxes,
    box_area,
    box_iou,
    clip_boxes,
    normalize_boxes,
    scale_boxes,
)


# ------------------------------------------------------------------------------------------------ boxes
def test_box_iou_matches_hand_computed_values():
    a = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]], np.float32)
    b = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.6, 0.0, 0.9, 0.2]], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 0.0, 0.0])
    # 0.25 x 0.25 overlap of two 0.5 x 0.5 boxes: 0.0625 / (0.25 + 0.25 - 0.0625)
    np.testing.assert_allclose(iou[1, :2], [0.0625 / 0.4375, 0.0625 / 0.4375])
    assert iou[1, 2] == 0.0


def test_box_iou_handles_empty_and_degenerate_boxes():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    point = np.array([[0.5, 0.5, 0.5, 0.5]])
    assert box_iou(point, point)[0, 0] == 0.0  # zero union: defined as 0, no NaN


def test_scale_normalize_roundtrip_and_clip():
    boxes = np.array([[0.1, 0.2, 0.5, 0.9]], np.float32)
    pixels = scale_boxes(boxes, 640, 360)
    np.testing.assert_allclose(pixels, [[64, 72, 320, 324]], rtol=1e-6)
    np.testing.assert_allclose(normalize_boxes(pixels, 640, 360), boxes, rtol=1e-6)
    np.testing.assert_allclose(clip_boxes(np.array([[-0.1, 0.2, 1.3, 0.9]], np.float32)), [[0, 0.2, 1, 0.9]])
    np.testing.assert_allclose(box_area(boxes), [0.4 * 0.7], rtol=1e-6)


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        (np.zeros((3, 5)), r"expected shape \(N, 4\)"),
        (np.array([[0.1, 0.1, np.nan, 0.4]]), "box 0 is not finite"),
        (np.array([[0.1, 0.1, 0.2, 0.2], [0.5, 0.1, 0.4, 0.3]]), "box 1 has x2 < x1"),
        (np.array([[0.1, 0.5, 0.2, 0.4]]), "box 0 has x2 < x1 or y2 < y1"),
    ],
)
def test_as_boxes_names_the_problem(boxes, message):
    with pytest.raises(ValueError, match=message):
        as_boxes(boxes, "boxes")


# --------------------------------------------------------------------------------------------- labels
def test_official_ava_label_map(ava_label_map_path):
    label_map = LabelMap.from_pbtxt(ava_label_map_path)
    assert len(label_map) == 60
    assert label_map.name(12) == "stand"
    assert label_map.id("walk") == 14
    assert 2 not in label_map and 12 in label_map  # AVA's ids have gaps
    assert label_map.evaluated_ids == label_map.ids
    assert label_map.index(label_map.ids[-1]) == 59
    np.testing.assert_array_equal(label_map.indices(np.array([1, 2, 3, 80, 999, -1])), [0, -1, 1, 59, -1, -1])


def test_pbtxt_roundtrip_keeps_order_and_label_types(tmp_path):
    label_map = LabelMap(ids=(12, 3, 80), names=("stand", "crouch/kneel", "watch (a person)"),
                         label_types={12: "PERSON_MOVEMENT"})
    path = tmp_path / "map.pbtxt"
    label_map.to_pbtxt(path)
    text = path.read_text()
    assert '  name: "stand"\n  id: 12\n  label_type: PERSON_MOVEMENT' in text
    again = LabelMap.from_pbtxt(path)
    assert again == label_map


def test_pbtxt_writes_only_evaluated_ids_by_default(tmp_path):
    label_map = LabelMap(ids=(1, 2, 3), names=("a", "b", "c"), evaluated=frozenset({1, 3}))
    label_map.to_pbtxt(tmp_path / "eval.pbtxt")
    assert LabelMap.from_pbtxt(tmp_path / "eval.pbtxt").ids == (1, 3)
    label_map.to_pbtxt(tmp_path / "all.pbtxt", evaluated_only=False)
    assert LabelMap.from_pbtxt(tmp_path / "all.pbtxt").ids == (1, 2, 3)
    assert label_map.restrict([3, 2]).evaluated_ids == (3,)


def test_pbtxt_accepts_label_id_and_reports_malformed_items(tmp_path):
    ok = tmp_path / "ok.pbtxt"
    ok.write_text('item {\n  name: "x"\n  label_id: 5\n}\n')
    assert LabelMap.from_pbtxt(ok).ids == (5,)
    full = tmp_path / "full.pbtxt"  # the layout of AVA's full 80-class list
    full.write_text('label {\n  name: "crawl"\n  label_id: 2\n  label_type: PERSON_MOVEMENT\n}\n')
    assert LabelMap.from_pbtxt(full).label_types == {2: "PERSON_MOVEMENT"}
    bad = tmp_path / "bad.pbtxt"
    bad.write_text('item {\n  name: "x"\n}\n')
    with pytest.raises(ValueError, match=r"bad.pbtxt:1: item needs both 'name' and 'id'"):
        LabelMap.from_pbtxt(bad)
    garbage = tmp_path / "garbage.pbtxt"
    garbage.write_text('item {\n  name: "x"\n  id: 1\n}\nwhat is this\n')
    with pytest.raises(ValueError, match=r"garbage.pbtxt:5: cannot parse"):
        LabelMap.from_pbtxt(garbage)


def test_plain_text_label_lists(tmp_path):
    names_only = tmp_path / "names.txt"
    names_only.write_text("# comment\nwalk\n\nrun\n")
    assert list(LabelMap.from_text(names_only)) == [(1, "walk"), (2, "run")]
    with_ids = tmp_path / "ids.txt"
    LabelMap.from_pairs([(14, "walk"), (10, "run/jog")]).to_text(with_ids)
    assert list(LabelMap.load(with_ids)) == [(14, "walk"), (10, "run/jog")]
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("1 walk\nrun\n")
    with pytest.raises(ValueError, match=r"mixed.txt:2: expected 'id name'"):
        LabelMap.from_text(mixed)


def test_label_map_rejects_duplicates_and_unknown_lookups():
    with pytest.raises(ValueError, match=r"duplicate label ids \[1\]"):
        LabelMap(ids=(1, 1), names=("a", "b"))
    with pytest.raises(ValueError, match="duplicate label names"):
        LabelMap(ids=(1, 2), names=("a", "a"))
    label_map = LabelMap.from_pairs([(1, "a")])
    with pytest.raises(KeyError, match="label id 7"):
        label_map.name(7)
    with pytest.raises(KeyError, match="'zzz'"):
        label_map.id("zzz")


# ------------------------------------------------------------------------------------------ detections
def _detections(n=3, c=2, **kw):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.5, (n, 2))
    args = dict(
        video_id="v",
        frame_index=30,
        time_s=1.0,
        boxes=np.hstack([xy, xy + 0.3]),
        person_scores=rng.uniform(size=n),
        action_scores=rng.uniform(size=(n, c)),
    )
    args.update(kw)
    return KeyframeDetections(**args)


def test_keyframe_detections_coerce_dtypes_and_select():
    det = _detections(track_ids=[4, 5, 6])
    assert det.boxes.dtype == np.float32 and det.action_scores.dtype == np.float32
    assert det.track_ids.dtype == np.int64
    assert len(det) == 3 and det.num_classes == 2
    picked = det.select(np.array([True, False, True]))
    assert len(picked) == 2 and picked.track_ids.tolist() == [4, 6]
    empty = KeyframeDetections.empty("v", 0, 0.0, num_classes=5)
    assert len(empty) == 0 and empty.action_scores.shape == (0, 5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"person_scores": np.ones(2)}, r"person_scores: expected shape \(3,\)"),
        ({"action_scores": np.ones((2, 2))}, r"action_scores: expected shape \(3, C\)"),
        ({"action_scores": np.full((3, 2), np.nan)}, "action_scores: row 0 is not finite"),
        ({"boxes": np.array([[0.5, 0, 0.4, 1]] * 3)}, "box 0 has x2 < x1"),
        ({"track_ids": [1, 2]}, r"track_ids: expected shape \(3,\)"),
        ({"person_scores": [0.1, np.inf, 0.2]}, "person_scores: value 1 is not finite"),
    ],
)
def test_keyframe_detections_validation(change, message):
    with pytest.raises(ValueError, match=message):
        _detections(**change)


# ----------------------------------------------------------------------------------------------- tubes
def test_tube_contiguity_and_validation():
    boxes = np.tile([[0.1, 0.1, 0.3, 0.6]], (4, 1))
    tube = Tube("v", label=12, track_id=3, frames=[5, 6, 7, 8], boxes=boxes, scores=np.ones(4), score=0.9)
    assert (tube.start_frame, tube.end_frame, len(tube), tube.is_contiguous) == (5, 8, 4, True)
    gappy = Tube("v", 12, 3, [5, 6, 9, 10], boxes, np.ones(4), 0.9)
    assert not gappy.is_contiguous
    with pytest.raises(ValueError, match="frame 6 follows 7"):
        Tube("v", 12, 3, [5, 7, 6, 8], boxes, np.ones(4), 0.9)
    with pytest.raises(ValueError, match="4 frames but 3 boxes"):
        Tube("v", 12, 3, [5, 6, 7, 8], boxes[:3], np.ones(4), 0.9)
    with pytest.raises(ValueError, match="at least one frame"):
        Tube("v", 12, 3, [], np.zeros((0, 4)), np.zeros(0), 0.9)


def test_unchecked_tube_equals_checked():
    frames, boxes = np.arange(5, 9), np.tile(np.float32([[0.1, 0.1, 0.3, 0.6]]), (4, 1))
    checked = Tube("v", 12, 3, frames, boxes, np.ones(4, np.float32), 0.9)
    unchecked = Tube.unchecked("v", 12, 3, frames, boxes, np.ones(4, np.float32), 0.9)
    assert (unchecked.video_id, unchecked.label, unchecked.track_id, unchecked.score) == ("v", 12, 3, 0.9)
    for name in ("frames", "boxes", "scores"):
        a, b = getattr(checked, name), getattr(unchecked, name)
        assert a.dtype == b.dtype and a.flags.c_contiguous and b.flags.c_contiguous
        np.testing.assert_array_equal(a, b)
