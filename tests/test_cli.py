import argparse
import subprocess
import sys

import pytest

from detection import __version__
from detection.cli import build_parser, main


def _subparsers(parser, prefix=()):
    """Every (sub)command path of the parser, e.g. ('prep', 'synthetic')."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subparsers(sub, (*prefix, name))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"actdet {__version__}"


def test_every_subcommand_has_help(capsys):
    paths = list(_subparsers(build_parser()))
    assert ("demo",) in paths and ("prep", "synthetic") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            main([*path, "--help"])
        assert exit_info.value.code == 0
        assert "usage: actdet " + " ".join(path) in capsys.readouterr().out


def test_only_working_subcommands_are_offered():
    # Later issues add run/detect/link/eval/train/test/model when they work; none may exist as a stub.
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in top.choices.items():
        assert sub.get_default("func") is not None or any(
            isinstance(a, argparse._SubParsersAction) for a in sub._actions
        ), name


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "detection.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_bad_override_is_one_clear_error(tmp_path, capsys):
    status = main(["demo", "--out", str(tmp_path), "data.synthetic.vidoes=2"])
    assert status == 2
    err = capsys.readouterr().err
    assert "actdet demo: error:" in err and "did you mean 'videos'" in err
    assert "Traceback" not in err


def test_prep_synthetic_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["prep", "synthetic", "--out", str(out), "--videos", "2", "--seconds", "5", "--seed", "3",
                 "--no-frames", "--quiet"]) == 0
    assert (out / "manifest.json").is_file()
    assert (out / "annotations" / "val.csv").stat().st_size > 0
    assert not (out / "frames").exists()
    assert str(out) in capsys.readouterr().out


def test_eval_frame_map_and_video_map_on_a_synthetic_dataset(tmp_path, capsys):
    """The GT scored against itself is perfect, through both eval subcommands and their reports."""
    import json

    from data_prep.synthetic import SyntheticSpec, generate_dataset
    from detection.formats.ava import read_ava_csv, write_ava_csv

    root = tmp_path / "s"
    generate_dataset(root, SyntheticSpec(videos=1, seconds=6, seed=5, frames=False))
    ann = root / "annotations"
    gt = read_ava_csv(ann / "val.csv", kind="groundtruth")
    write_ava_csv(tmp_path / "det.csv", gt, kind="detections")
    status = main(["eval", "frame-map", "--gt", str(ann / "val.csv"), "--det", str(tmp_path / "det.csv"),
                   "--labelmap", str(ann / "label_map.pbtxt"), "--exclusions",
                   str(ann / "val_excluded_timestamps.csv"), "--out", str(tmp_path / "fm")])
    assert status == 0
    metrics = json.loads((tmp_path / "fm" / "metrics.json").read_text())
    assert metrics["protocol"] == "activitynet" and metrics["mAP"] == 1.0
    assert "mAP" in capsys.readouterr().out

    # Tubes = the ground-truth tubes themselves, as the standard detected-tubes pickle.
    import pickle

    import numpy as np

    from detection.formats.act import read_act_groundtruth

    act = read_act_groundtruth(ann / "gt_tubes.pkl")
    dets = {
        label: [(video, 1.0, np.hstack([t, np.ones((len(t), 1))])) for video in act.test_videos[0]
                for t in act.gttubes[video].get(label, [])]
        for label in range(len(act.labels))
    }
    (tmp_path / "tubes.pkl").write_bytes(pickle.dumps(dets))
    status = main(["eval", "video-map", "--gt", str(ann / "gt_tubes.pkl"), "--tubes", str(tmp_path / "tubes.pkl"),
                   "--protocol", "act", "--out", str(tmp_path / "vm")])
    assert status == 0
    metrics = json.loads((tmp_path / "vm" / "metrics.json").read_text())
    assert metrics["protocol"] == "act" and metrics["video_map"]["0.5"] == 1.0


def test_eval_reports_bad_input_as_one_error(tmp_path, capsys):
    bad = tmp_path / "det.csv"
    bad.write_text("v,0902,0.5,0.1,0.2,0.2,12,0.9\n")
    gt = tmp_path / "gt.csv"
    gt.write_text("v,0902,0.1,0.1,0.2,0.2,12,0\n")
    labelmap = tmp_path / "map.pbtxt"
    labelmap.write_text('item {\n  name: "stand"\n  id: 12\n}\n')
    assert main(["eval", "frame-map", "--gt", str(gt), "--det", str(bad), "--labelmap", str(labelmap)]) == 2
    err = capsys.readouterr().err
    assert "det.csv:1" in err and "inverted box" in err
