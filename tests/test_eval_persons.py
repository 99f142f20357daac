"""Person detection quality (eval/persons.py): hand-computed COCO AP, recall@0.5, de-duplication, reports, CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from detection.cli import main
from detection.formats.ava import AvaRows, write_ava_csv, write_exclusions
from eval.persons import evaluate_persons, evaluate_persons_files

AP_TO_RECALL_HALF = 51 / 101  # COCO's 101-point AP when precision is 1 up to recall 0.5 and nothing after


def rows(entries, scores=None):
    """AvaRows from ``(video, second, box)`` tuples; ground truth when ``scores`` is None."""
    videos = [e[0] for e in entries]
    return AvaRows.build(
        videos,
        [e[1] for e in entries],
        np.asarray([e[2] for e in entries], dtype=np.float64).reshape(-1, 4),
        [e[3] if len(e) > 3 else -1 for e in entries],
        scores=scores,
    )


# Ground truth: 2 keyframes, 3 people; person A has two actions (two rows, one person).
A, B, C = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.2, 0.0, 0.6, 0.8]
GT = rows([("v1", 902, A, 12), ("v1", 902, A, 80), ("v1", 902, B, 14), ("v2", 903, C, 11)])


def test_hand_computed_ap50_and_recall():
    # On v1@902: an exact copy of A (0.9), a box with IoU 0.5 exactly with A (0.8, a duplicate of A: false
    # positive for AP, but it would count for recall), nothing near B. On v2@903: a box with IoU 0.62 with C (0.7).
    half_a = [0.0, 0.0, 0.25, 0.5]  # area 0.125 inside A (0.25): IoU 0.5
    c_part = [0.2, 0.0, 0.6, 0.496]  # 0.4 × 0.496 = 0.1984 inside C (0.32): IoU 0.62
    proposals = rows([("v1", 902, A), ("v1", 902, half_a), ("v2", 903, c_part)], scores=[0.9, 0.8, 0.7])
    result = evaluate_persons(GT, proposals)
    m = result.to_metrics()
    # recall@0.5: A (IoU 1) and C (0.62) have a proposal, B does not.
    assert m["recall@0.5"] == pytest.approx(2 / 3)
    np.testing.assert_allclose(np.sort(result.best_iou), [0.0, 0.62, 1.0], atol=1e-9)
    # AP50 ranking: 0.9 TP (A), 0.8 FP (A is taken), 0.7 TP (C); 3 GT.
    # precision envelope: 1 up to recall 1/3, 2/3 up to recall 2/3, nothing beyond.
    # 101 recall points: 0..0.33 (34 points) at 1, 0.34..0.66 (33 points) at 2/3.
    assert m["AP50"] == pytest.approx((34 + 33 * 2 / 3) / 101)
    # AP over IoU 0.50:0.95: A is found at every threshold; C only at 0.50, 0.55, 0.60 (IoU 0.62).
    # With C missed the ranking is TP, FP, FP: precision 1 up to recall 1/3 (34 points).
    per_threshold = [(34 + 33 * 2 / 3) / 101] * 3 + [34 / 101] * 7
    assert m["AP"] == pytest.approx(np.mean(per_threshold))
    # COCO's AR@100: recall per threshold (2/3 three times, 1/3 seven times), averaged.
    assert m["AR@100"] == pytest.approx((3 * 2 / 3 + 7 / 3) / 10)
    assert m["num_gt"] == 3 and m["num_proposals"] == 3 and m["keyframes"] == 2
    # Per video.
    v1, v2 = m["per_video"]["v1"], m["per_video"]["v2"]
    assert v1["num_gt"] == 2 and v1["recall@0.5"] == pytest.approx(0.5)
    assert v1["AP50"] == pytest.approx(AP_TO_RECALL_HALF) and v1["AP"] == pytest.approx(AP_TO_RECALL_HALF)
    assert v2["recall@0.5"] == 1.0 and v2["AP50"] == pytest.approx(1.0) and v2["AP"] == pytest.approx(0.3)


def test_perfect_and_half_perfect_proposals():
    perfect = evaluate_persons(GT, rows([("v1", 902, A), ("v1", 902, B), ("v2", 903, C)], scores=[0.5, 0.6, 0.7]))
    assert perfect.overall.AP == pytest.approx(1.0)
    assert perfect.overall.AP50 == pytest.approx(1.0)
    assert perfect.overall.recall50 == 1.0 and perfect.overall.AR == pytest.approx(1.0)
    # Half of the people of one keyframe found exactly, the other half not at all.
    gt = rows([("v", 1, A), ("v", 1, B)])
    half = evaluate_persons(gt, rows([("v", 1, A)], scores=[0.3]))
    assert half.overall.AP == pytest.approx(AP_TO_RECALL_HALF)
    assert half.overall.AP50 == pytest.approx(AP_TO_RECALL_HALF)
    assert half.overall.recall50 == 0.5 and half.overall.AR == pytest.approx(0.5)


def test_rows_of_one_person_are_merged_and_proposals_keep_their_best_score():
    gt = rows([("v", 1, A, 1), ("v", 1, A, 2), ("v", 1, A, 3), ("v", 2, B, 1)])
    # A wrong box scored 0.5, and the right box of v@2 listed twice: 0.1 and 0.9. Ranked by its best score
    # (0.9) the right box comes first: AP50 1. Had the 0.1 row been kept, the wrong box would rank first.
    proposals = rows([("v", 2, B), ("v", 2, C), ("v", 2, B), ("v", 1, A)], scores=[0.1, 0.5, 0.9, 0.95])
    result = evaluate_persons(gt, proposals)
    assert result.counts.gt_rows == 4 and result.counts.gt_people == 2
    assert result.counts.proposal_rows == 4 and result.counts.proposals == 3
    assert result.overall.num_gt == 2 and result.overall.num_proposals == 3
    # Ranked 0.95 TP, 0.9 TP, 0.5 FP: precision 1 up to recall 1.
    assert result.overall.AP50 == pytest.approx(1.0)


def test_exclusions_videos_without_gt_and_proposals_elsewhere():
    proposals = rows(
        [("v1", 902, A), ("v1", 905, B), ("v2", 903, C), ("v3", 7, A)], scores=[0.9, 0.8, 0.7, 0.6]
    )
    result = evaluate_persons(GT, proposals, exclusions={("v2", 903), ("v9", 1)})
    c = result.counts
    assert c.excluded_keyframes == 1 and c.gt_people_excluded == 1 and c.proposals_excluded == 1
    assert c.proposals_without_gt_keyframe == 2  # v1@905 and v3@7: false positives
    assert set(result.per_video) == {"v1", "v3"}  # every keyframe of v2 was excluded
    assert result.per_video["v3"].num_gt == 0 and math.isnan(result.per_video["v3"].AP)
    assert result.to_metrics()["per_video"]["v3"]["AP"] is None
    # v1 alone: A found (0.9), B missed; the FP on v1@905 ranks after the TP: AP50 51/101.
    assert result.per_video["v1"].AP50 == pytest.approx(AP_TO_RECALL_HALF)
    # Overall: ranking 0.9 TP, 0.8 FP, 0.6 FP over 2 GT people.
    assert result.overall.AP50 == pytest.approx(AP_TO_RECALL_HALF)
    assert result.overall.num_gt == 2 and result.overall.keyframes == 3


def random_rows(rng, n, videos, seconds, scores=False):
    corners = rng.random((n, 2, 2))
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    vid = [f"vid{k}" for k in rng.integers(0, videos, n)]
    sec = rng.integers(0, seconds, n)
    return AvaRows.build(vid, sec, boxes, [-1] * n, scores=rng.random(n) if scores else None)


def test_recall_matches_brute_force_and_per_video_matches_separate_runs():
    rng = np.random.default_rng(3)
    gt = random_rows(rng, 300, 3, 20)
    # Proposals: jittered copies of the ground truth plus random boxes.
    jitter = np.clip(gt.boxes + rng.normal(0, 0.05, gt.boxes.shape), 0, 1)
    jitter = np.concatenate([np.minimum(jitter[:, :2], jitter[:, 2:]), np.maximum(jitter[:, :2], jitter[:, 2:])], 1)
    extra = random_rows(rng, 400, 3, 20, scores=True)
    proposals = AvaRows.build(
        np.concatenate([gt.video_ids, extra.video_ids]),
        np.concatenate([gt.timestamps, extra.timestamps]),
        np.concatenate([jitter, extra.boxes]),
        [-1] * 700,
        scores=rng.random(700),
    )
    result = evaluate_persons(gt, proposals)

    def brute_best(g, p):
        best = []
        for i in range(len(g)):
            same = (p.video_ids == g.video_ids[i]) & (np.trunc(p.timestamps) == np.trunc(g.timestamps[i]))
            ious = [_iou(g.boxes[i].astype(float), b.astype(float)) for b in p.boxes[same]]
            best.append(max(ious, default=0.0))
        return np.asarray(best)

    # best_iou is per distinct GT person (sorted by video, second, box); compare as sorted multisets.
    np.testing.assert_allclose(np.sort(result.best_iou), np.sort(brute_best(gt, proposals)), atol=1e-12)
    assert 0 < result.overall.recall50 < 1
    for video in np.unique(gt.video_ids):
        alone = evaluate_persons(gt.select(gt.video_ids == video), proposals.select(proposals.video_ids == video))
        assert result.per_video[video] == alone.overall


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_no_proposals_and_max_dets():
    empty = rows([], scores=[])
    result = evaluate_persons(GT, empty)
    assert result.overall.AP == 0.0 and result.overall.recall50 == 0.0
    with pytest.raises(ValueError, match="max_dets"):
        evaluate_persons(GT, empty, max_dets=5)
    # max_dets caps what COCOeval sees per keyframe (highest scores first), not recall@0.5.
    # Ten confident boxes far from everyone, then an exact copy of A with the lowest score.
    misses = [("v1", 902, [0.01 * k, 0.9, 0.01 * k + 0.05, 1.0]) for k in range(10)]
    many = rows([*misses, ("v1", 902, A)], scores=[0.9] * 10 + [0.1])
    capped = evaluate_persons(GT, many, max_dets=10)
    uncapped = evaluate_persons(GT, many, max_dets=100)
    assert capped.per_video["v1"].AP50 == 0.0 and uncapped.per_video["v1"].AP50 > 0
    assert capped.per_video["v1"].recall50 == uncapped.per_video["v1"].recall50 == 0.5


def test_files_report_and_cli(tmp_path, capsys):
    gt_csv, prop_csv, excl_csv = tmp_path / "gt.csv", tmp_path / "proposals.csv", tmp_path / "excl.csv"
    write_ava_csv(gt_csv, GT, kind="groundtruth")
    write_ava_csv(prop_csv, rows([("v1", 902, A), ("v2", 903, C)], scores=[0.9, 0.8]), kind="detections")
    write_exclusions(excl_csv, [("v2", 903)])
    result = evaluate_persons_files(gt_csv, prop_csv)
    # A and C found exactly (0.9, 0.8), B missed: precision 1 up to recall 2/3 (67 of 101 recall points).
    assert result.overall.AP == pytest.approx(67 / 101)
    paths = result.write_report(tmp_path / "report")
    assert {p.name for p in paths.values()} == {"metrics.json", "per_video.csv", "table.txt"}
    metrics = json.loads(paths["metrics"].read_text())
    assert set(metrics) >= {"AP", "AP50", "recall@0.5", "AR@100", "per_video", "counts"}
    assert metrics["per_video"]["v2"]["AP"] == pytest.approx(1.0)
    lines = paths["per_video"].read_text().splitlines()
    assert lines[0] == "video,keyframes,num_gt,num_proposals,ap,ap50,recall50,ar100" and len(lines) == 3
    assert "overall" in paths["table"].read_text()

    out = tmp_path / "cli"
    argv = ["eval", "persons", "--gt", str(gt_csv), "--proposals", str(prop_csv), "--exclusions", str(excl_csv)]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recall@0.5" in printed and "v1" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["counts"]["excluded_keyframes"] == 1
    assert metrics["recall@0.5"] == pytest.approx(0.5)


def test_cli_reports_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("v1,0902,0.1,0.1\n")
    assert main(["eval", "persons", "--gt", str(bad), "--proposals", str(bad)]) == 2
    assert f"{bad}:1" in capsys.readouterr().err


def test_does_not_import_torch():
    code = "import sys, eval.persons, pycocotools.cocoeval\nassert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
