import json
import math
import pickle

import numpy as np
import pytest

from detection.formats.act import ActGroundTruth, write_act_groundtruth
from detection.formats.tubes import VideoTubes, write_tubes_json
from detection.structures import Tube
from eval.video_map import (
    VIDEO_AP_KEYS,
    evaluate_video_map,
    evaluate_video_map_files,
    tube_iou,
    tube_nms,
)

BOX = [0.0, 0.0, 9.0, 9.0]


def tube(first: int, last: int, box=BOX, frames=None) -> np.ndarray:
    """(L, 6) tube: 1-based frames, pixel box, frame score 0.5."""
    frames = np.arange(first, last + 1) if frames is None else np.asarray(frames)
    out = np.zeros((len(frames), 6))
    out[:, 0] = frames
    out[:, 1:5] = box
    out[:, 5] = 0.5
    return out


def gt_record(gttubes, labels=("run", "walk"), test=("v1",), train=()) -> ActGroundTruth:
    videos = set(test) | set(train) | set(gttubes)
    return ActGroundTruth(
        labels=list(labels),
        gttubes={v: {c: [np.asarray(t)[:, :5] for t in ts] for c, ts in gttubes.get(v, {}).items()} for v in videos},
        nframes={v: 100 for v in videos},
        resolution={v: (240, 320) for v in videos},
        train_videos=[list(train)],
        test_videos=[list(test)],
    )


# -- tube IoU ------------------------------------------------------------------------------------------


def test_tube_iou_act_uses_pixel_areas_and_inclusive_frame_counts():
    gt, det = tube(1, 4), tube(3, 6, box=[0, 0, 4, 9])
    # per frame: 5*10 / (10*10 + 5*10 - 5*10) = 0.5; temporal: frames 3-4 of 1-6 -> 2/6
    assert tube_iou(gt, det, "act") == pytest.approx(0.5 * 2 / 6)


def test_tube_iou_multisports_uses_continuous_areas_and_frame_differences():
    gt, det = tube(1, 4), tube(3, 6, box=[0, 0, 4, 9])
    # per frame: 4*9 / (9*9) = 4/9; temporal: (4 - 3) / (6 - 1)
    assert tube_iou(gt, det, "multisports") == pytest.approx(4 / 9 * 1 / 5)


def test_one_frame_temporal_overlap():
    a, b = tube(1, 3), tube(3, 5)
    assert tube_iou(a, b, "act") == pytest.approx(1 / 5)
    assert tube_iou(a, b, "multisports") == 0.0
    one, same = tube(7, 7), tube(7, 7)
    assert tube_iou(one, same, "act") == 1.0
    assert math.isnan(tube_iou(one, same, "multisports"))  # 0 / 0 in the reference: never a match
    assert tube_iou(tube(1, 3), tube(5, 9), "act") == 0.0


def test_frame_gap_counts_as_zero_overlap():
    gapped = tube(1, 4, frames=[1, 2, 4])
    assert tube_iou(tube(1, 4), gapped, "act") == pytest.approx(3 / 4)


def test_tube_nms_drops_only_ious_above_the_overlap():
    tubes = [
        (tube(1, 10), 0.9),
        (tube(1, 10), 0.8),  # same as the first: IoU 1, dropped
        (tube(1, 10, box=[50, 50, 59, 59]), 0.7),  # elsewhere: kept
        (tube(8, 20), 0.6),  # temporal IoU 3/20: kept
        (tube(1, 3), 0.5),  # IoU exactly 3/10 = 0.3 with the first: kept (only > 0.3 drops)
        (tube(1, 4), 0.4),  # IoU 0.4 with the first: dropped
    ]
    assert tube_nms(tubes, 0.3).tolist() == [0, 2, 3, 4]
    assert tube_nms([]).tolist() == []


# -- matching and AP -----------------------------------------------------------------------------------


def video_ap(gt, dets, protocol, key="0.5"):
    return evaluate_video_map(gt, dets, protocol=protocol).to_metrics()["per_class"]["0"]["video_ap"][key]


def test_trapezoid_and_voc_ap_on_a_ranking_false_then_true():
    gt = gt_record({"v1": {0: [tube(1, 10)]}})
    dets = {0: [("v1", 0.9, tube(1, 10, box=[100, 100, 120, 120])), ("v1", 0.8, tube(1, 10))]}
    # ranking F, T with one GT: ACT 0.5 * (0 + 0.5) from (R=0, P=1) then (0, 0), (1, 0.5) ...
    assert video_ap(gt, dets, "act") == pytest.approx(0.25)
    # ... VOC takes the envelope: precision 0.5 over the whole recall range
    assert video_ap(gt, dets, "multisports") == pytest.approx(0.5)


def test_matched_ground_truth_is_removed_and_a_duplicate_is_a_false_positive():
    gt = gt_record({"v1": {0: [tube(1, 10), tube(1, 10, box=[100, 100, 109, 109])]}})
    dets = {
        0: [
            ("v1", 0.9, tube(1, 10)),
            ("v1", 0.8, tube(1, 3)),  # the first GT again (IoU 0.3 / 0.22), which is taken: FP
            ("v1", 0.7, tube(1, 10, box=[100, 100, 109, 109])),
        ]
    }
    # T, F, T over 2 GT: ACT trapezoids 0.5 + 0 + 0.5 * (1/2 + 2/3) / 2; VOC 0.5 * 1 + 0.5 * 2/3
    assert video_ap(gt, dets, "act", "0.2") == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert video_ap(gt, dets, "multisports", "0.2") == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_act_takes_the_best_remaining_ground_truth_multisports_the_best_one():
    gt = gt_record({"v1": {0: [tube(1, 10), tube(1, 10)]}})  # two identical ground truths
    dets = {0: [("v1", 0.9, tube(1, 3)), ("v1", 0.8, tube(8, 10))]}  # each overlaps both, not each other
    assert video_ap(gt, dets, "act", "0.2") == pytest.approx(1.0)  # the second takes the second GT
    assert video_ap(gt, dets, "multisports", "0.2") == pytest.approx(0.5)  # its best GT is taken: FP


def test_classes_without_ground_truth_are_null_and_without_detections_zero():
    gt = gt_record({"v1": {0: [tube(1, 10)]}}, labels=("run", "walk", "jump"))
    dets = {0: [], 1: [("v1", 0.5, tube(1, 10))]}
    for protocol in ("act", "multisports"):
        metrics = evaluate_video_map(gt, dets, protocol=protocol).to_metrics()
        assert metrics["per_class"]["0"]["video_ap"] == dict.fromkeys(VIDEO_AP_KEYS, 0.0)
        assert metrics["per_class"]["0"]["frame_ap"] == 0.0
        for label in ("1", "2"):
            assert metrics["per_class"][label]["video_ap"] == dict.fromkeys(VIDEO_AP_KEYS)
            assert metrics["per_class"][label]["frame_ap"] is None
        assert metrics["video_map"]["0.5"] == 0.0 and metrics["frame_ap"] == 0.0


def test_multisports_skips_its_six_unevaluated_classes():
    gt = gt_record({"v1": {0: [tube(1, 10)], 1: [tube(1, 10)]}}, labels=("basketball save", "run"))
    dets = {0: [("v1", 0.9, tube(1, 10))], 1: [("v1", 0.9, tube(1, 10, box=[50, 50, 60, 60]))]}
    ms = evaluate_video_map(gt, dets, protocol="multisports").to_metrics()
    assert ms["per_class"]["0"]["evaluated"] is False and ms["per_class"]["0"]["video_ap"]["0.5"] is None
    assert ms["per_class"]["0"]["frame_ap"] is None
    assert ms["video_map"]["0.5"] == 0.0  # only "run", whose detection is elsewhere
    act = evaluate_video_map(gt, dets, protocol="act").to_metrics()
    assert act["per_class"]["0"]["video_ap"]["0.5"] == 1.0 and act["video_map"]["0.5"] == 0.5


def test_frame_ap_over_every_annotated_frame():
    gt = gt_record({"v1": {0: [tube(1, 4)]}})
    # frames 1-2 found, 3 with a wrong box, 4 missed; a duplicate on frame 1 ranks last
    frame_dets = np.array(
        [
            [0, 1, 0, 0.9, *BOX],
            [0, 2, 0, 0.8, *BOX],
            [0, 3, 0, 0.7, 50, 50, 60, 60],
            [0, 1, 0, 0.6, *BOX],
        ]
    )
    # T, T, F, F over 4 boxes: ACT 0.25 + 0.25 + 0 + 0; VOC 0.5
    act = evaluate_video_map(gt, {}, frame_dets, protocol="act")
    assert act.frame_map == pytest.approx(0.5) and act.frame_detections_source == "frame-dets"
    assert act.classes[0].num_gt_frames == 4
    assert evaluate_video_map(gt, {}, frame_dets, protocol="multisports").frame_map == pytest.approx(0.5)
    # without frame detections, one detection per tube frame with that frame's score
    derived = evaluate_video_map(gt, {0: [("v1", 0.9, tube(1, 2))]}, protocol="act")
    assert derived.frame_map == pytest.approx(0.5) and derived.frame_detections_source == "tubes"


# -- inputs --------------------------------------------------------------------------------------------


def _dataset():
    """Ground truth of three test videos and a train video, and matching detections as tubes JSON + pickle."""
    rng = np.random.default_rng(3)
    labels = ["run", "walk", "jump"]
    gttubes, videos_json, pickled = {}, [], {}
    for v in ["v1", "v2", "v3", "train1"]:
        gttubes[v] = {0: [tube(5, 30, box=[20, 30, 120, 200])], 2: [tube(10, 40, box=[150, 20, 300, 230])]}
        json_tubes = []
        for k in range(6):
            label_id = [11, 13][k % 2]  # JSON ids; names "run" / "jump"
            first = int(rng.integers(1, 20))
            norm = np.round(rng.uniform(0.05, 0.45, 2), 4)
            box = np.concatenate([norm, norm + np.round(rng.uniform(0.2, 0.5, 2), 4)]).astype(np.float32)
            if k < 2:  # near the ground truth of its class
                box = np.array([[0.0625, 0.125, 0.375, 0.8333], [0.4688, 0.0833, 0.9375, 0.9583]][k], np.float32)
            scores = np.round(rng.uniform(0, 1, 20), 4).astype(np.float32)
            score = round(float(rng.uniform(0, 1)), 4)
            frames = np.arange(first - 1, first + 19)  # 0-based in JSON
            json_tubes.append(Tube(v, label_id, k, frames, np.tile(box, (20, 1)), scores, score))
            pixels = np.zeros((20, 6))
            pixels[:, 0] = frames + 1
            pixels[:, 1:5] = box.astype(np.float64) * np.array([320, 240, 320, 240])
            pixels[:, 5] = scores
            pickled.setdefault({11: 0, 13: 2}[label_id], []).append((v, score, pixels))
        videos_json.append(VideoTubes(v, 25.0, 320, 240, {11: "run", 12: "walk", 13: "jump"}, json_tubes))
    gt = gt_record(gttubes, labels=labels, test=("v1", "v2", "v3"), train=("train1",))
    return gt, videos_json, pickled


def test_tubes_json_pickle_and_frame_dets_files_agree(tmp_path):
    gt, videos_json, pickled = _dataset()
    write_act_groundtruth(tmp_path / "gt.pkl", gt)
    write_tubes_json(tmp_path / "tubes.json", videos_json)
    (tmp_path / "tubes.pkl").write_bytes(pickle.dumps(pickled, protocol=2))
    for protocol in ("act", "multisports"):
        from_json = evaluate_video_map_files(tmp_path / "gt.pkl", tmp_path / "tubes.json", protocol=protocol)
        from_pickle = evaluate_video_map_files(tmp_path / "gt.pkl", tmp_path / "tubes.pkl", protocol=protocol)
        metrics = from_json.to_metrics()
        assert metrics == from_pickle.to_metrics()
        assert metrics["video_map"]["0.2"] > 0 and metrics["frame_ap"] > 0
        assert from_json.ignored["tubes_outside_test_videos"] == 6  # the train video's
        # the frame detections ACT would write give the frame-AP derived from the tubes
        rows = []
        for label in sorted(pickled):
            for video, _, t in pickled[label]:
                if video != "train1":
                    iv = ["v1", "v2", "v3"].index(video)
                    rows += [[iv, r[0], label, r[5], *r[1:5]] for r in t]
        np.save(tmp_path / "fd.npy", np.array(rows, np.float32))
        (tmp_path / "fd.pkl").write_bytes(pickle.dumps(np.array(rows, np.float32), protocol=4))
        for name in ("fd.npy", "fd.pkl"):
            given = evaluate_video_map_files(tmp_path / "gt.pkl", tmp_path / "tubes.pkl", tmp_path / name, protocol)
            assert given.frame_map == pytest.approx(from_json.frame_map, abs=1e-6)
            assert given.video_map("0.5") == from_json.video_map("0.5")


def test_unknown_label_names_are_listed(tmp_path):
    gt, videos_json, _ = _dataset()
    videos_json[0].labels[13] = "cartwheel"
    videos_json[1].labels[11] = "somersault"
    write_act_groundtruth(tmp_path / "gt.pkl", gt)
    write_tubes_json(tmp_path / "tubes.json", videos_json)
    with pytest.raises(ValueError, match=r"tubes\.json: label names not in the ground truth's labels: ") as err:
        evaluate_video_map_files(tmp_path / "gt.pkl", tmp_path / "tubes.json")
    assert "['cartwheel', 'somersault']" in str(err.value)


def test_only_test_videos_are_evaluated():
    gt, _, pickled = _dataset()
    test_only = {c: [d for d in ds if d[0] != "train1"] for c, ds in pickled.items()}
    for protocol in ("act", "multisports"):
        full = evaluate_video_map(gt, pickled, protocol=protocol)
        assert full.ignored["tubes_outside_test_videos"] == 6
        assert (
            full.to_metrics()["video_map"]
            == evaluate_video_map(gt, test_only, protocol=protocol).to_metrics()["video_map"]
        )
        assert full.num_test_videos == 3 and sum(c.num_gt_tubes for c in full.classes) == 6
    other_split = ActGroundTruth(**{**gt.to_dict(), "test_videos": [["v1"], ["train1"]]})
    assert evaluate_video_map(other_split, pickled, split=1).ignored["tubes_outside_test_videos"] == 18
    with pytest.raises(ValueError, match="split 2 does not exist"):
        evaluate_video_map(other_split, pickled, split=2)


def test_bad_inputs_are_named():
    gt, _, pickled = _dataset()
    with pytest.raises(ValueError, match=r"label indices \[7\]"):
        evaluate_video_map(gt, {7: []})
    bad = {0: [("v1", 0.5, tube(1, 5, box=[10, 10, 5, 20]))]}
    with pytest.raises(ValueError, match=r"label 0 entry 0 \(video 'v1'\).*x2 < x1"):
        evaluate_video_map(gt, bad)
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_video_map(gt, pickled, protocol="voc")


def test_tube_and_row_order_do_not_matter_with_untied_scores():
    gt, _, pickled = _dataset()
    rng = np.random.default_rng(0)
    shuffled = {c: [ds[i] for i in rng.permutation(len(ds))] for c, ds in reversed(pickled.items())}
    frame_dets = np.array([[0, f, 0, 0.01 * f, 20 + f, 30, 120, 200] for f in range(5, 31)])
    for protocol in ("act", "multisports"):
        a = evaluate_video_map(gt, pickled, frame_dets, protocol=protocol).to_metrics()
        b = evaluate_video_map(gt, shuffled, frame_dets[rng.permutation(len(frame_dets))], protocol=protocol)
        assert a == b.to_metrics()


# -- report --------------------------------------------------------------------------------------------


def test_report_files_and_metrics_schema(tmp_path):
    gt, _, pickled = _dataset()
    result = evaluate_video_map(gt, pickled, protocol="act")
    paths = result.write_report(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == [
        "metrics.json",
        "per_class.csv",
        "table.txt",
        "video_ap_per_class.png",
    ]
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["protocol"] == "act"
    assert list(metrics["video_map"]) == ["0.2", "0.5", "0.75", "0.5:0.95"]
    assert set(metrics["per_class"]) == {"0", "1", "2"}
    entry = metrics["per_class"]["0"]
    assert entry["name"] == "run" and list(entry["video_ap"]) == ["0.2", "0.5", "0.75", "0.5:0.95"]
    assert all(0 <= v <= 1 for v in entry["video_ap"].values()) and 0 <= entry["frame_ap"] <= 1
    assert metrics["per_class"]["1"]["video_ap"]["0.5"] is None
    assert metrics["video_map"]["0.5:0.95"] == pytest.approx(
        np.mean(
            [
                np.mean([c.video_ap[t] for c in result.classes if c.video_ap[t] is not None])
                for t in [0.5 + 0.05 * i for i in range(10)]
            ]
        )
    )
    table = paths["table"].read_text()
    assert table.strip() == result.table().strip() and "mean" in table and "0 run" in table
    csv_lines = paths["per_class"].read_text().splitlines()
    assert csv_lines[0].startswith("label_index,name,evaluated,video_ap@0.2") and len(csv_lines) == 4
    assert paths["plot"].stat().st_size > 0
