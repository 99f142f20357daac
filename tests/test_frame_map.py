"""AVA frame-mAP: every rule of the official evaluator on small hand-computed cases."""

import json
import math

import numpy as np
import pytest

from detection.formats.ava import AvaTable, read_ava_csv, write_ava_csv
from detection.structures import LabelMap
from eval.frame_map import FrameMapResult, evaluate_frame_map, evaluate_frame_map_files

LABELS = LabelMap.from_pairs([(1, "bend"), (12, "stand"), (80, "watch")])
A = (0.0, 0.0, 0.5, 1.0)  # left half
B = (0.5, 0.0, 1.0, 1.0)  # right half
A_SHIFT = (0.125, 0.0, 0.625, 1.0)  # IoU 0.6 with A (dyadic: exact arithmetic)
FAR = (0.0, 0.0, 0.125, 0.125)  # overlaps nothing much


def table(rows):
    """AvaTable from ``(video, t, box, action, last)``; ``last`` None = absent 8th column."""
    return AvaTable(
        video_ids=np.asarray([r[0] for r in rows], dtype=str).reshape(len(rows)),
        timestamps=np.asarray([r[1] for r in rows], dtype=np.float64).reshape(len(rows)),
        boxes=np.asarray([r[2] for r in rows], dtype=np.float64).reshape(len(rows), 4),
        action_ids=np.asarray([r[3] for r in rows], dtype=np.int64).reshape(len(rows)),
        last=np.asarray([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64).reshape(len(rows)),
    )


def ap_of(result: FrameMapResult, label_id: int) -> float:
    return float(result.ap[result.class_ids.index(label_id)])


def test_hand_computed_ap_and_map():
    # stand: 2 GT; ranked TP (0.9), FP (0.8), TP (0.7): P = 1, 1/2, 2/3 at R = 1/2, 1/2, 1.
    gt = table([("v", 902, A, 12, 0), ("v", 903, B, 12, 0), ("v", 902, A, 1, 0)])
    det = table([("v", 902, A, 12, 0.9), ("v", 902, FAR, 12, 0.8), ("v", 903, B, 12, 0.7), ("v", 902, A, 1, 0.3)])
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    assert ap_of(result, 1) == 1.0
    assert math.isnan(ap_of(result, 80))  # no ground truth: no AP, not in the mean
    assert result.mAP == pytest.approx((5 / 6 + 1) / 2)
    assert result.num_gt.tolist() == [1, 2, 0] and result.num_det.tolist() == [1, 3, 0]
    np.testing.assert_allclose(result.precision[12], [1, 0.5, 2 / 3])
    np.testing.assert_allclose(result.recall[12], [0.5, 0.5, 1])


def test_class_with_ground_truth_but_no_detections_has_ap_zero():
    gt = table([("v", 902, A, 12, 0), ("v", 902, A, 1, 0)])
    det = table([("v", 902, A, 12, 0.9), ("v", 902, A, 80, 0.9)])  # watch: detections but no GT
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 1) == 0.0 and ap_of(result, 12) == 1.0 and math.isnan(ap_of(result, 80))
    assert result.mAP == 0.5
    assert result.to_metrics()["per_class"]["80"]["ap"] is None


def test_greedy_matching_never_reroutes_to_the_second_best_box():
    gt = table([("v", 902, A, 12, 0), ("v", 902, (0.0, 0.0, 0.75, 1.0), 12, 1)])
    det = table([("v", 902, A, 12, 0.9), ("v", 902, (0.0, 0.0, 0.625, 1.0), 12, 0.8)])
    # det2: IoU with A = 0.5/0.625 = 0.8, with the 0.75-wide box = 0.625/0.75 = 0.833 -> picks box 2: TP.
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 1.0
    det = table([("v", 902, A, 12, 0.9), ("v", 902, (0.0, 0.0, 0.5, 0.9375), 12, 0.8)])
    # det2: IoU with A = 0.9375 (its argmax, taken) and with box 2 = 0.46875/0.75 = 0.625 >= 0.5: still FP.
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 0.5  # P = 1, 1/2 at R = 1/2, 1/2


def test_tied_ious_take_the_first_box_in_the_official_ground_truth_order():
    # A_SHIFT overlaps A and `right` equally (IoU 0.6). The official sorts a keyframe's ground truth by
    # decreasing 8th column (person id): person 1 first -> det1 takes it, det2 (exactly on it) is a FP.
    right = (0.25, 0.0, 0.75, 1.0)
    gt = table([("v", 902, A, 12, 0), ("v", 902, right, 12, 1)])
    det = table([("v", 902, A_SHIFT, 12, 0.9), ("v", 902, right, 12, 0.8)])
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 0.5
    # PySlowFast keeps the file order: det1 takes A, det2 takes `right`.
    assert ap_of(evaluate_frame_map(gt, det, LABELS, protocol="pyslowfast"), 12) == 1.0
    # Swap the person ids and the official also gives 1.0.
    gt = table([("v", 902, A, 12, 1), ("v", 902, right, 12, 0)])
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 1.0


def test_iou_threshold_is_inclusive_and_uses_continuous_areas():
    half = (0.0, 0.0, 0.25, 1.0)  # IoU exactly 0.5 with A
    gt = table([("v", 902, A, 12, 0)])
    assert ap_of(evaluate_frame_map(gt, table([("v", 902, half, 12, 0.9)]), LABELS), 12) == 1.0
    less = (0.0, 0.0, 0.25, 0.999)
    assert ap_of(evaluate_frame_map(gt, table([("v", 902, less, 12, 0.9)]), LABELS), 12) == 0.0


def test_detections_on_keyframes_without_ground_truth_are_false_positives():
    gt = table([("v", 902, A, 12, 0)])
    det = table([("v", 905, A, 12, 0.9), ("v", 902, A, 12, 0.8)])
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == 0.5  # FP first, then TP: P = 0, 1/2 at R = 0, 1
    assert result.counts.det_rows_without_gt_keyframe == 1


def test_exclusions_drop_ground_truth_and_detections():
    gt = table([("v", 902, A, 12, 0), ("v", 903, A, 12, 0)])
    det = table([("v", 902, A, 12, 0.9), ("v", 903, FAR, 12, 0.95)])
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 0.25  # FP, TP with 2 GT
    result = evaluate_frame_map(gt, det, LABELS, exclusions={("v", 903), ("other", 1)})
    assert ap_of(result, 12) == 1.0 and result.num_gt.tolist() == [0, 1, 0]
    assert result.counts.excluded_keyframes == 1
    assert result.counts.gt_rows_excluded == 1 and result.counts.det_rows_excluded == 1


def test_fractional_timestamps_truncate_to_the_second():
    gt = table([("v", 902, A, 12, 0)])
    det = table([("v", 902.75, A, 12, 0.9), ("v", 903.0, A, 12, 0.8)])
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == 1.0 and result.counts.det_keyframes == 2


def test_top_50_cap_per_keyframe_across_classes():
    gt = table([("v", 902, A, 12, 0)])
    noise = [("v", 902, FAR, 1, 0.5 + k / 1000) for k in range(50)]
    det = table(noise + [("v", 902, A, 12, 0.4)])  # the TP is the 51st best: dropped
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == 0.0 and result.counts.det_rows_over_cap == 1
    assert ap_of(evaluate_frame_map(gt, det, LABELS, protocol="pyslowfast"), 12) == 1.0
    det = table(noise[:49] + [("v", 902, A, 12, 0.4)])  # 50 rows: nothing dropped
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 1.0


def test_cap_admits_a_row_only_with_a_strictly_greater_score():
    gt = table([("v", 902, A, 12, 0)])
    tied = [("v", 902, FAR, 1, 0.5)] * 50
    # The heap is full of 0.5s; a later 0.5 does not enter, even though it is a TP...
    assert ap_of(evaluate_frame_map(gt, table(tied + [("v", 902, A, 12, 0.5)]), LABELS), 12) == 0.0
    # ...but one fed before them stays, and the later ties are the ones dropped.
    assert ap_of(evaluate_frame_map(gt, table([("v", 902, A, 12, 0.5)] + tied), LABELS), 12) == 1.0


def test_cap_evicts_the_smallest_tuple_among_tied_minimum_scores():
    # The heap holds (score, action_id, y1, x1, y2, x2); a higher score evicts the smallest tuple.
    gt = table([("v", 902, A, 1, 0), ("v", 902, A, 80, 0)])
    full = [("v", 902, A, 1, 0.5)] + [("v", 902, FAR, 12, 0.5)] * 48 + [("v", 902, A, 80, 0.5)]
    det = table(full + [("v", 902, FAR, 12, 0.6)])
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 1) == 0.0  # (0.5, 1, ...) was the smallest tuple: evicted
    assert ap_of(result, 80) == 1.0  # (0.5, 80, ...) stays
    assert result.counts.tie_keyframes_replayed >= 1


def test_unknown_label_ids_are_ignored_before_the_cap_and_counted():
    gt = table([("v", 902, A, 12, 0), ("v", 902, B, 99, 0)])
    det = table([("v", 902, FAR, 99, 0.9)] * 60 + [("v", 902, A, 12, 0.1), ("v", 902, A, -1, 0.5)])
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == 1.0 and result.counts.det_rows_over_cap == 0
    assert result.counts.det_rows_unknown_label == 61 and result.counts.gt_rows_unknown_label == 1
    assert result.class_ids == (1, 12, 80)


def test_duplicate_detection_rows_second_is_false_positive():
    gt = table([("v", 902, A, 12, 0)])
    det = table([("v", 902, A, 12, 0.9), ("v", 902, A, 12, 0.8)])
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == 1.0  # TP, then the duplicate's FP: P = 1, 1/2 at R = 1, 1
    # An exact duplicate is matched second (FP) but ranks first among the equal scores (see below).
    det = table([("v", 902, A, 12, 0.9), ("v", 902, A, 12, 0.9)])
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 0.5


def test_exact_score_ties_rank_like_numpys_reversed_argsort():
    # Keyframe 902 first appears first, so its TP comes first in the class's concatenation; the official
    # ranks with np.argsort(scores)[::-1], which puts the later (FP) detection first among equals.
    gt = table([("v", 902, A, 12, 0)])
    det = table([("v", 902, A, 12, 0.5), ("v", 903, A, 12, 0.5)])
    assert np.argsort(np.array([0.5, 0.5]))[::-1].tolist() == [1, 0]
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 0.5
    det = table([("v", 903, A, 12, 0.5), ("v", 902, A, 12, 0.5)])  # now the FP's keyframe comes first
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 1.0


def test_degenerate_detections_fill_the_cap_but_are_not_evaluated():
    gt = table([("v", 902, A, 12, 0)])
    flat = (0.2, 0.2, 0.2, 0.6)  # zero width
    det = table([("v", 902, flat, 12, 0.9), ("v", 902, A, 12, 0.5)])
    result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == 1.0 and result.counts.det_rows_degenerate == 1
    assert result.num_det.tolist() == [0, 1, 0]
    det = table([("v", 902, flat, 1, 0.9)] * 50 + [("v", 902, A, 12, 0.5)])  # 50 flat boxes take the places
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 0.0


def test_pyslowfast_matches_in_file_order_and_has_no_cap():
    gt = table([("v", 902, A, 12, 0)])
    det = table([("v", 902, A, 12, 0.3), ("v", 902, A, 12, 0.9)])
    # ActivityNet sorts by score: the 0.9 is the TP. PySlowFast matches the 0.3 first (file order).
    assert ap_of(evaluate_frame_map(gt, det, LABELS), 12) == 1.0
    assert ap_of(evaluate_frame_map(gt, det, LABELS, protocol="pyslowfast"), 12) == 0.5
    # With one detection per box and class, sorted input, and <= 50 rows, the two protocols agree.
    det = table([("v", 902, A, 12, 0.9), ("v", 902, B, 12, 0.3), ("v", 903, A, 1, 0.2)])
    a, p = evaluate_frame_map(gt, det, LABELS), evaluate_frame_map(gt, det, LABELS, protocol="pyslowfast")
    np.testing.assert_array_equal(a.ap, p.ap)
    assert a.mAP == p.mAP and p.protocol == "pyslowfast"
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_frame_map(gt, det, LABELS, protocol="coco")


def test_results_do_not_depend_on_row_order_with_untied_scores():
    rng = np.random.default_rng(0)
    boxes = [A, B, A_SHIFT, FAR, (0.1, 0.1, 0.6, 0.9)]
    gt_rows = [(f"v{k % 3}", 900 + k % 4, boxes[k % 5], (1, 12, 80)[k % 3], k) for k in range(20)]
    det_rows = [
        (f"v{rng.integers(3)}", 900 + int(rng.integers(4)), boxes[rng.integers(5)], (1, 12, 80)[rng.integers(3)], s)
        for s in rng.permutation(200) / 200
    ]
    reference = evaluate_frame_map(table(gt_rows), table(det_rows), LABELS)
    for _ in range(3):
        g = [gt_rows[i] for i in rng.permutation(len(gt_rows))]
        d = [det_rows[i] for i in rng.permutation(len(det_rows))]
        shuffled = evaluate_frame_map(table(g), table(d), LABELS)
        np.testing.assert_array_equal(shuffled.ap, reference.ap)
    assert 0 < reference.mAP < 1


def test_inputs_are_not_mutated():
    gt = table([("v", 902.5, A, 12, 3), ("v", 903, B, 99, 0)])
    det = table([("v", 902, A, 12, 0.9), ("v", 902, (0.3, 0.3, 0.3, 0.4), 12, 0.8), ("w", 1, B, 1, np.nan)])
    before = [a.copy() for t in (gt, det) for a in vars(t).values()]
    for t in (gt, det):
        for a in vars(t).values():
            a.flags.writeable = False
    evaluate_frame_map(gt, det, LABELS, exclusions={("w", 1)})
    after = [a for t in (gt, det) for a in vars(t).values()]
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(x, y)


def test_out_of_range_coordinates_are_evaluated_as_given_with_a_warning():
    gt = table([("v", 902, (-0.02, 0.0, 0.5, 1.01), 12, 0)])
    det = table([("v", 902, (-0.02, 0.0, 0.5, 1.01), 12, 0.9), ("v", 902, A, 12, 0.5)])
    with pytest.warns(UserWarning, match="1 ground-truth and 1 detection rows have coordinates outside"):
        result = evaluate_frame_map(gt, det, LABELS)
    assert ap_of(result, 12) == 1.0
    assert result.counts.gt_rows_out_of_range == 1 and result.counts.det_rows_out_of_range == 1


def test_bad_values_are_errors(tmp_path):
    gt, det = tmp_path / "gt.csv", tmp_path / "det.csv"
    labels = tmp_path / "map.pbtxt"
    LABELS.to_pbtxt(labels)
    gt.write_text("v,0902,0.1,0.1,0.5,0.5,12,0\n")
    det.write_text("v,0902,0.1,0.1,0.5,0.5,12,0.9\nv,0902,0.6,0.1,0.5,0.5,12,0.9\n")
    with pytest.raises(ValueError, match=r"det.csv:2: inverted box"):
        evaluate_frame_map_files(gt, det, labels)
    det.write_text("v,0902,0.1,0.1,0.5,0.5,12,0.9\nv,0902,0.1,0.1,0.5,0.5,12,nan\n")
    with pytest.raises(ValueError, match=r"det.csv:2: non-finite value"):
        evaluate_frame_map_files(gt, det, labels)
    det.write_text("v,0902,0.1,0.1,inf,0.5,12,0.5\n")
    with pytest.raises(ValueError, match=r"det.csv:1: non-finite value"):
        evaluate_frame_map_files(gt, det, labels)
    with pytest.raises(ValueError, match=r"detections: row 0 has a non-finite value"):
        evaluate_frame_map(table([]), table([("v", 902, A, 12, np.inf)]), LABELS)
    with pytest.raises(ValueError, match=r"ground truth: row 0 has an inverted box"):
        evaluate_frame_map(table([("v", 902, (0.5, 0, 0.4, 1), 12, 0)]), table([]), LABELS)


def test_empty_detection_file_gives_ap_zero(tmp_path):
    gt, det, labels = tmp_path / "gt.csv", tmp_path / "det.csv", tmp_path / "map.pbtxt"
    LABELS.to_pbtxt(labels)
    gt.write_text("v,0902,0.1,0.1,0.5,0.5,12,0\nv,0903,0.1,0.1,0.5,0.5,1,0\n")
    det.write_text("")
    result = evaluate_frame_map_files(gt, det, labels)
    assert result.mAP == 0.0 and ap_of(result, 12) == 0.0 and math.isnan(ap_of(result, 80))
    empty = evaluate_frame_map(table([]), table([]), LABELS)
    assert math.isnan(empty.mAP) and empty.to_metrics()["mAP"] is None


def test_files_rows_and_tables_agree(tmp_path):
    gt_rows = [("v", 902, A, 12, 0), ("v", 902, B, 1, 1), ("w", 1800, A_SHIFT, 80, 0)]
    det_rows = [("v", 902, A_SHIFT, 12, 0.9), ("v", 902, B, 1, 0.4), ("w", 1800, A, 80, 0.7), ("w", 1800, B, 80, 0.8)]
    gt, det = table(gt_rows), table(det_rows)
    write_ava_csv(tmp_path / "gt.csv", gt.to_rows("groundtruth"), kind="groundtruth")
    write_ava_csv(tmp_path / "det.csv", det.to_rows("detections"), kind="detections")
    (tmp_path / "excl.csv").write_text("w,1801\n")
    LABELS.to_pbtxt(tmp_path / "map.pbtxt")
    from_files = evaluate_frame_map_files(
        tmp_path / "gt.csv", tmp_path / "det.csv", tmp_path / "map.pbtxt", tmp_path / "excl.csv"
    )
    from_rows = evaluate_frame_map(
        read_ava_csv(tmp_path / "gt.csv", "groundtruth"), read_ava_csv(tmp_path / "det.csv"), LABELS
    )
    from_tables = evaluate_frame_map(gt, det, LABELS)
    np.testing.assert_array_equal(from_files.ap, from_tables.ap)
    np.testing.assert_array_equal(from_rows.ap, from_tables.ap)
    assert from_files.ap.tolist() == [1.0, 1.0, 0.5]


def test_groups_follow_label_types_or_ava_id_ranges():
    gt = table([("v", 902, A, 1, 0), ("v", 902, A, 12, 0), ("v", 902, A, 80, 0)])
    det = table([("v", 902, A, 1, 0.9), ("v", 902, FAR, 12, 0.9), ("v", 902, A, 80, 0.9)])
    result = evaluate_frame_map(gt, det, LABELS)  # no label types: AVA's id ranges (1-14, 15-63, 64-80)
    assert result.groups == {"PERSON_MOVEMENT": 0.5, "PERSON_INTERACTION": 1.0}
    typed = LabelMap(
        ids=(1, 12, 80), names=("bend", "stand", "watch"), label_types={12: "OBJECT_MANIPULATION", 80: "POSE"}
    )
    result = evaluate_frame_map(gt, det, typed)
    assert result.groups == {"PERSON_MOVEMENT": 1.0, "OBJECT_MANIPULATION": 0.0, "POSE": 1.0}
    assert result.class_groups == ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "POSE")


def test_report_files_and_metrics_schema(tmp_path):
    gt = table([("v", 902, A, 12, 0), ("v", 903, B, 12, 0), ("v", 902, A, 1, 0)])
    det = table([("v", 902, A, 12, 0.9), ("v", 902, FAR, 12, 0.8), ("v", 903, B, 12, 0.7), ("v", 902, A, 1, 0.3)])
    result = evaluate_frame_map(gt, det, LABELS)
    paths = result.write_report(tmp_path / "report")
    assert set(paths) == {"metrics", "per_class", "table", "ap_per_class", "pr_curves"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["protocol"] == "activitynet"
    assert metrics["mAP"] == pytest.approx(11 / 12)
    assert metrics["per_class"]["12"] == {"name": "stand", "ap": pytest.approx(5 / 6), "num_gt": 2, "num_det": 3}
    assert metrics["per_class"]["80"]["ap"] is None
    assert metrics["groups"] == {"PERSON_MOVEMENT": pytest.approx(11 / 12), "PERSON_INTERACTION": None}
    assert metrics["counts"]["det_rows"] == 4
    assert metrics == json.loads(json.dumps(result.to_metrics()))
    text = paths["table"].read_text()
    assert "stand" in text and "91.67" in text and text.strip() == result.table().strip()
    assert paths["per_class"].read_text().splitlines()[0] == "id,name,group,num_gt,num_det,ap"
    result.write_report(tmp_path / "chosen", pr_classes=[1, 80])
    with pytest.raises(KeyError, match="label id 7"):
        result.write_report(tmp_path / "bad", pr_classes=[7])


def test_ranking_and_ap_arithmetic_are_the_official_bit_for_bit():
    # The official ranks with np.argsort(scores)[::-1], counts with integer cumsums, divides, makes the
    # precision envelope with a backward loop and sums over recall changes; we must get the same bits.
    rng = np.random.default_rng(1)
    n, num_gt = 300, 40
    scores = rng.choice([0.1, 0.25, 0.5, 0.75], n)
    is_tp = np.zeros(n, dtype=bool)
    is_tp[rng.choice(n, num_gt - 5, replace=False)] = True
    gt = table([("v", t, A, 12, 0) for t in range(num_gt)])
    det = table([("v", t, A if tp else FAR, 12, s) for t, (tp, s) in enumerate(zip(is_tp, scores, strict=True))])
    # Each detection is alone on its keyframe, so its TP flag is is_tp (keyframes >= num_gt have no GT).
    is_tp &= np.arange(n) < num_gt
    result = evaluate_frame_map(gt, det, LABELS)

    labels = is_tp[np.argsort(scores)[::-1]].astype(int)
    tp, fp = np.cumsum(labels), np.cumsum(1 - labels)
    precision = np.concatenate([[0], tp.astype(float) / (tp + fp), [0]])
    recall = np.concatenate([[0], tp.astype(float) / num_gt, [1]])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    changes = np.where(recall[1:] != recall[:-1])[0] + 1
    expected = np.sum((recall[changes] - recall[changes - 1]) * precision[changes])
    assert ap_of(result, 12) == expected  # exactly, not approximately
