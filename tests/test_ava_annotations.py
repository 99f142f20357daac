"""``actdet prep ava annotations``: every problem as file:line, exact statistics, the label-map rule."""

import csv
import shutil
from collections import Counter

import numpy as np
import pytest
from synthetic_data import SPEC, TRAIN, VAL

from data_prep.ava.annotations import check_annotations, find_annotations, format_statistics
from detection.formats.ava import check_ava_csv, read_ava_table
from tests.conftest import ROOT as REPO


@pytest.fixture
def root(synthetic_root):
    return synthetic_root


def check(root, **kw):
    return check_annotations(root, fps=SPEC.fps, **kw)


def test_statistics_are_exact(root):
    report = check(root)
    assert report.ok, report.failed
    assert set(report.done) >= {"annotations/train.csv", "annotations/val.csv", "annotations/label_map.pbtxt",
                                "annotations/train_predicted_boxes.csv", "annotations/val_excluded_timestamps.csv"}
    for split, ids in (("train", TRAIN), ("val", VAL)):
        rows = list(csv.reader(open(root / "annotations" / f"{split}.csv")))
        stats = report.details["statistics"][split]
        assert stats["videos"] == len({r[0] for r in rows}) == len(ids)
        assert stats["keyframes"] == len({(r[0], r[1]) for r in rows})
        assert stats["boxes"] == len({(r[0], r[1], *r[2:6]) for r in rows})
        assert stats["people"] == len({(r[0], r[7]) for r in rows})
        assert stats["labels"] == len(rows)
        per_box = Counter((r[0], r[1], *r[2:6]) for r in rows)
        assert stats["max_labels_per_box"] == max(per_box.values())
        assert stats["labels_per_box"] == round(len(rows) / len(per_box), 3)
        assert stats["classes"] == dict(Counter(int(r[6]) for r in rows))
        proposals = list(csv.reader(open(root / "annotations" / f"{split}_predicted_boxes.csv")))
        prop = stats["proposals"][f"annotations/{split}_predicted_boxes.csv"]
        assert prop["boxes"] == len(proposals) and prop["keyframes"] == len({(r[0], r[1]) for r in proposals})
    text = format_statistics(report)
    assert f"train (annotations/train.csv): {len(TRAIN)} videos" in text and "most labelled: " in text


BAD_GT = [
    ("video_id,timestamp,x1,y1,x2,y2,action_id,person_id", "error", "could not convert string to float"),
    ("{v},0902,0.1,0.1,0.5", "error", "expected 7 or 8 columns, got 5"),
    ("{v},09x2,0.1,0.1,0.5,0.5,12,0", "error", "could not convert"),
    ("{v},0902,0.1,0.1,1.5,0.5,12,0", "error", "box outside [0, 1]"),
    ("{v},0902,0.5,0.1,0.5,0.5,12,0", "error", "empty box"),
    ("{v},0902,0.6,0.1,0.5,0.5,12,0", "error", "inverted box"),
    ("{v},0902,0.1,0.1,0.5,0.5,77,0", "error", "action id 77 is not in the label map"),
    ("{v},0902,0.1,0.1,0.5,0.5,,0", "error", "no action id"),
    ("{v},0990,0.1,0.1,0.5,0.5,12,0", "error", "timestamp 990 is frame 900"),
    ("../x,0902,0.1,0.1,0.5,0.5,12,0", "error", "may only contain letters"),
    ("{v},0902,0.1,0.1,0.5,0.5,12,0", "ok", ""),
    ("{v},0902,0.1,0.1,0.5,0.5,12,0", "warning", "duplicate of line 11"),
    ("{v},0903,0.1,0.1,0.5,0.5,12,0", "warning", "is excluded"),
    ("novideo,0902,0.1,0.1,0.5,0.5,12,0", "warning", "video novideo has no frames"),
    ("{v},902.5,0.1,0.1,0.5,0.5,12,0", "warning", "fractional timestamp"),
]


def test_every_problem_is_reported_with_file_and_line(root):
    vid = TRAIN[0]
    gt = root / "annotations" / "train.csv"
    gt.write_text("\n".join(line.format(v=vid) for line, _, _ in BAD_GT) + "\n")
    (root / "annotations" / "train_excluded_timestamps.csv").write_text(f"{vid},0903\n{vid}\nx,abc\n")
    (root / "annotations" / "val_predicted_boxes.csv").write_text(f"{VAL[0]},0902,0.1,0.1,0.5,0.5,,1.5\n")
    report = check(root)
    errors = report.details["errors"]["annotations/train.csv"]
    warnings = report.details["warnings"]["annotations/train.csv"]
    for lineno, (_, kind, what) in enumerate(BAD_GT, start=1):
        prefix = f"{gt}:{lineno}: "
        mine = [m for m in (errors if kind == "error" else warnings) if m.startswith(prefix)]
        if kind == "ok":
            assert not [m for m in errors + warnings if m.startswith(prefix)]
        else:
            assert mine and what in mine[0], (lineno, what, mine)
    assert len(errors) == sum(kind == "error" for _, kind, _ in BAD_GT)
    assert report.details["counts"]["annotations/train.csv"]["errors"] == len(errors)
    assert report.failed["annotations/train.csv"].startswith(f"{len(errors)} errors: {gt}:1: ")
    ex = root / "annotations" / "train_excluded_timestamps.csv"
    assert report.details["errors"]["annotations/train_excluded_timestamps.csv"] == [
        f"{ex}:2: expected 'video_id,timestamp', got '{vid}'", f"{ex}:3: timestamp 'abc' is not a number"]
    props = report.details["errors"]["annotations/val_predicted_boxes.csv"]
    assert props == [f"{root / 'annotations' / 'val_predicted_boxes.csv'}:1: score 1.5 outside [0, 1]"]
    assert "annotations/val.csv" in report.done  # the other files still pass
    stats = report.details["statistics"]["train"]  # the valid rows are counted
    assert stats["videos"] == 1 + 1  # vid and novideo
    assert stats["excluded_keyframes_annotated"] == 1
    assert f"{len(errors)} errors in annotations/train.csv:" in format_statistics(report)


def test_label_map_rule_full_list_and_activitynet_subset(tmp_path):
    """AVA ground truth holds all 80 classes; the ActivityNet map has the 60 evaluated ones."""
    root = tmp_path / "ava"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(REPO / "configs/ava/ava_action_list_v2.1_for_activitynet_2018.pbtxt", root / "annotations")
    # 2 (crawl) is an AVA class that is not evaluated; 81 is no AVA class.
    (root / "annotations" / "ava_train_v2.2.csv").write_text(
        "vid1,0902,0.1,0.1,0.5,0.5,1,0\nvid1,0902,0.1,0.1,0.5,0.5,2,0\nvid1,0903,0.1,0.1,0.5,0.5,81,1\n")
    report = check_annotations(root)
    found = find_annotations(root)
    assert found.groundtruth == {"train": root / "annotations" / "ava_train_v2.2.csv"} and found.label_map is None
    errors = report.details["errors"]["annotations/ava_train_v2.2.csv"]
    assert len(errors) == 1 and errors[0].endswith("action id 81 is not in the label map: vid1,903,0.1,0.1,0.5,0.5,81")
    assert ":3: " in errors[0]
    assert report.details["statistics"]["train"]["labels_not_evaluated"] == 1
    assert "configs/ava/ava_action_list_v2.2.pbtxt" in report.details["label_map_note"]
    # With the full list in the folder, it is the one used.
    shutil.copy(REPO / "configs/ava/ava_action_list_v2.2.pbtxt", root / "annotations")
    again = check_annotations(root)
    assert again.details["files"]["label_map"] == "annotations/ava_action_list_v2.2.pbtxt"
    subset = "annotations/ava_action_list_v2.1_for_activitynet_2018.pbtxt"
    assert again.details["files"]["evaluated_label_map"] == subset
    assert list(again.failed) == ["annotations/ava_train_v2.2.csv"]
    # No media on disk at all: no warnings about missing videos.
    assert "annotations/ava_train_v2.2.csv" not in again.details["warnings"]


def test_missing_files_are_failures(tmp_path):
    (tmp_path / "annotations").mkdir()
    report = check_annotations(tmp_path)
    assert "no ground-truth CSV" in report.failed["annotations"]
    assert "no label map" in report.failed["annotations/*.pbtxt"]
    (tmp_path / "annotations" / "train.csv").write_text("v,0902,0.1,0.1,0.5,0.5,1,0\n")
    (tmp_path / "annotations" / "label_map.pbtxt").write_text("item {\n  name: 'x'\n")
    report = check_annotations(tmp_path)
    assert "label_map.pbtxt:" in report.failed["annotations/label_map.pbtxt"]


def test_check_ava_csv_goes_past_bad_rows_with_the_readers_rules(tmp_path):
    good = ["v,0902,0.1,0.2,0.3,0.4,5,1", "w,0903,0.1,0.2,0.3,0.4,,0.5"]
    lines = ["header,x", good[0], "", "v,0902,0.5,0.2,0.3,0.4,5,1", '"v",0904,0.1,0.2,0.3,0.4,5,1', good[1], "v,1,2"]
    path = tmp_path / "boxes.csv"
    path.write_bytes(("\n".join(lines)).encode() + b"\n\xff\xfe,1\n" + (good[0] + "\n").encode() * 3)
    result = check_ava_csv(path, "detections")
    assert result.lines.tolist() == [2, 5, 6, 9, 10, 11]
    assert [m.split(": ")[0] for m in result.problems] == [f"{path}:{n}" for n in (1, 4, 7, 8)]
    assert "not UTF-8" in result.problems[-1]
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join([good[0], good[1]] * 50) + "\n")
    checked, table = check_ava_csv(clean), read_ava_table(clean)
    assert checked.ok and checked.lines.tolist() == list(range(1, 101))
    np.testing.assert_array_equal(checked.table.boxes, table.boxes)
    np.testing.assert_array_equal(checked.table.last, table.last)
