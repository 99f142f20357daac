"""The AVA preparation chain: the manifest, ``all`` resuming, ``verify``, and ``actdet prep ava`` itself."""

import json
import shutil

import pytest
from synthetic_data import SPEC, TRAIN, VAL

from data_prep.ava import annotations as annotations_step
from data_prep.ava import cut, download, frames, lists, manifest, pipeline, proposals
from data_prep.ava.pipeline import STEPS, PrepOptions, run_all, run_step, verify
from data_prep.ava.report import StepReport
from detection.cli import main
from detection.config import DetectorConfig


@pytest.fixture
def root(synthetic_root):
    """A copy of the synthetic tree (tests change it), without its frame lists."""
    shutil.rmtree(synthetic_root / "frame_lists")
    return synthetic_root


def options(root, **kw):
    detector = DetectorConfig(backend="precomputed", model=str(root / "annotations" / "train_predicted_boxes.csv"),
                              score_threshold=0.0)
    return PrepOptions(fps=SPEC.fps, detector=detector, splits=("train",), **kw)


class Calls:
    """Wraps the step functions of the modules to count their calls (and stands in for the network/ffmpeg ones)."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dict]] = []

        def fake(step):
            def run(root, *args, **kw):
                self.calls.append((step, kw))
                return StepReport(step, done=[f"{step}-item"], details={"ffmpeg_version": "n-test", "command": "ff"})
            return run

        monkeypatch.setattr(download, "download_videos", fake("download"))
        monkeypatch.setattr(download, "download_annotations", fake("download-annotations"))
        monkeypatch.setattr(cut, "cut_videos", fake("cut"))
        monkeypatch.setattr(frames, "extract_frames", fake("frames"))
        for module, name, step in ((lists, "write_frame_lists", "lists"),
                                   (annotations_step, "check_annotations", "annotations"),
                                   (proposals, "make_proposals", "proposals")):
            real = getattr(module, name)

            def counted(*args, _real=real, _step=step, **kw):
                self.calls.append((_step, kw))
                return _real(*args, **kw)
            monkeypatch.setattr(module, name, counted)

    def steps(self):
        steps = [s for s, _ in self.calls]
        self.calls.clear()
        return steps


def test_manifest_records_each_step_atomically(root):
    report = StepReport("cut", done=["a"], details={"ffmpeg": "/bin/ffmpeg", "ffmpeg_version": "n7", "command": "x"})
    manifest.record_step(root, report, {"start_s": 0.0}, {"videos_15min/a.mkv": [1, 2]})
    record = manifest.step_record(root, "cut")
    assert record.complete and record.report == report and record.options == {"start_s": 0.0}
    tools = record["tools"]
    assert tools["ffmpeg_version"] == "n7" and tools["command"] == "x" and "actdet" in tools
    assert (root / "prep_manifest.json").is_file() and json.loads((root / "manifest.json").read_text())["spec"]
    assert not list(root.glob(".prep_manifest.json*"))  # no temporary left
    manifest.record_step(root, StepReport("lists", failed={"v": "gap"}))
    assert not manifest.step_record(root, "lists").complete and manifest.step_record(root, "cut") is not None
    (root / "prep_manifest.json").write_text("{broken")
    assert manifest.step_record(root, "cut") is None


def test_all_runs_every_step_with_its_options_then_skips_what_is_complete(root, monkeypatch):
    calls = Calls(monkeypatch)
    opts = options(root, video_list="http://127.0.0.1:1/list.txt", base_url="http://127.0.0.1:1/v/",
                   annotations_url="http://127.0.0.1:1/ann.zip", start_s=0.0, end_s=3.0, jobs=1)
    result = run_all(root, opts)
    assert result.ok and [r.step for r in result.reports] == list(STEPS)
    kwargs = dict(calls.calls)
    assert kwargs["download"]["video_list"] == "http://127.0.0.1:1/list.txt" and kwargs["download"]["jobs"] == 1
    assert kwargs["download-annotations"]["url"] == "http://127.0.0.1:1/ann.zip"
    assert (kwargs["cut"]["start_s"], kwargs["cut"]["end_s"]) == (0.0, 3.0)
    assert kwargs["frames"]["fps"] == SPEC.fps and kwargs["frames"]["naming"] == "pyslowfast"
    assert calls.steps() == ["download", "download-annotations", "cut", "frames", "lists", "annotations", "proposals"]
    assert result.reports[0].done == ["download-item", "annotations/download-annotations-item"]
    record = manifest.step_record(root, "frames")
    assert record["tools"]["ffmpeg_version"] == "n-test" and record.options["fps"] == SPEC.fps

    again = run_all(root, opts)
    assert again.ok and calls.steps() == []  # everything complete: nothing reruns
    assert all(r.details.get("up_to_date") for r in again.reports)
    # Other options for a step rerun it and everything after it.
    run_all(root, options(root, video_list="http://127.0.0.1:1/list.txt", base_url="http://127.0.0.1:1/v/",
                          annotations_url="http://127.0.0.1:1/ann.zip", start_s=0.0, end_s=3.0, time_offset=899.0))
    assert calls.steps() == ["annotations", "proposals"]
    # A changed output reruns its step: a frame that disappears, a rewritten proposals file.
    opts.time_offset = 899.0
    (root / "frames" / TRAIN[0] / f"{TRAIN[0]}_{SPEC.num_frames:06d}.jpg").unlink()  # the last one: no gap
    result = run_all(root, opts, start="lists")
    assert result.ok and calls.steps() == ["lists", "annotations", "proposals"]  # once lists ran, all after it do
    assert manifest.step_record(root, "lists").report.details["frame_counts"][TRAIN[0]] == SPEC.num_frames - 1
    (root / "annotations" / "ava_train_predicted_boxes.csv").write_text("")
    assert run_all(root, opts, start="lists").ok and calls.steps() == ["proposals"]
    (root / "frames" / TRAIN[0] / f"{TRAIN[0]}_000020.jpg").unlink()  # a gap: lists fails, the chain stops
    result = run_all(root, opts, start="lists")
    assert calls.steps() == ["lists"] and result.stopped_after == "lists"
    assert "not run: annotations, proposals" in result.message


def test_a_failed_step_stops_the_chain_unless_keep_going(root, monkeypatch):
    calls = Calls(monkeypatch)
    shutil.rmtree(root / "frames" / VAL[0])
    result = run_all(root, options(root), start="lists")
    assert calls.steps() == ["lists"] and result.stopped_after == "lists" and not result.ok
    assert "stopped after 'lists': 1 item(s) failed" in result.message
    assert not manifest.step_record(root, "lists").complete
    result = run_all(root, options(root), start="lists", keep_going=True)
    assert calls.steps() == ["lists", "annotations", "proposals"] and result.stopped_after is None
    # Fixed: the failed step reruns, the rest too.
    assert run_all(root, options(root, allow_missing=True), start="lists").ok
    assert calls.steps() == ["lists", "annotations", "proposals"]
    with pytest.raises(ValueError, match="comes after"):
        run_all(root, options(root), start="proposals", stop="lists")


def test_a_step_that_cannot_start_is_recorded_as_failed(root):
    shutil.rmtree(root / "videos")
    report = run_step(root, "cut", PrepOptions())
    assert not report.ok and "FileNotFoundError" in report.failed["cut"]
    assert not manifest.step_record(root, "cut").complete


def test_verify_catches_a_deleted_frame_and_a_truncated_list(root):
    assert run_all(root, options(root), start="lists").ok
    good = verify(root)
    assert good.ok, good.failed
    assert good.details["videos"] == SPEC.videos and good.details["frames"] == SPEC.videos * SPEC.num_frames
    expected = {"frame_lists/train.csv", f"frames/{TRAIN[0]}", "annotations/ava_train_predicted_boxes.csv"}
    assert expected <= set(good.done)
    (root / "frames" / TRAIN[1] / f"{TRAIN[1]}_000005.jpg").unlink()
    val = root / "frame_lists" / "val.csv"
    val.write_text("".join(val.read_text().splitlines(keepends=True)[:-4]))
    bad = verify(root)
    assert set(bad.failed) == {f"frames/{TRAIN[1]}", "frame_lists/val.csv", f"frames/{VAL[0]}"}
    assert f"{TRAIN[1]}/{TRAIN[1]}_000005.jpg" in bad.failed[f"frames/{TRAIN[1]}"]
    assert f"the lists step recorded {SPEC.num_frames}" in bad.failed["frame_lists/val.csv"]
    (root / "annotations" / "ava_train_predicted_boxes.csv").unlink()
    (root / "annotations" / "train_predicted_boxes.csv").unlink()
    assert "annotations/ava_train_predicted_boxes.csv" in verify(root).failed


def test_cli(root, capsys):
    model = str(root / "annotations" / "train_predicted_boxes.csv")
    args = ["prep", "ava", "all", "--root", str(root), "--from", "lists", "--fps", str(SPEC.fps), "--splits", "train",
            "--backend", "precomputed", "--model", model, "--score-threshold", "0", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "== lists" in out and f"lists: {SPEC.videos} done" in out
    assert f"train (annotations/train.csv): {len(TRAIN)} videos" in out
    assert main(args) == 0
    assert "lists: up to date" in capsys.readouterr().out
    assert main(["prep", "ava", "verify", "--root", str(root)]) == 0
    assert f"verified: {SPEC.videos} videos" in capsys.readouterr().out
    (root / "frames" / VAL[0] / f"{VAL[0]}_000003.jpg").unlink()
    assert main(["prep", "ava", "verify", "--root", str(root)]) == 1
    assert f"failed frames/{VAL[0]}: 1 listed frames are missing" in capsys.readouterr().out
    assert main(["prep", "ava", "lists", "--root", str(root)]) == 1
    assert f"failed {VAL[0]}:" in capsys.readouterr().out
    assert main(["prep", "ava", "annotations", "--root", str(root), "--fps", "10"]) == 0
    assert main(["prep", "ava", "all", "--root", str(root), "--from", "proposals", "--to", "lists"]) == 2
    assert "comes after" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["prep", "ava", "unpack", "--root", str(root)])
    assert exit_info.value.code == 2


def test_step_options_name_what_shapes_the_output():
    opts = PrepOptions(jobs=8, progress=True)
    assert pipeline.step_options("download", opts)["video_list"] == download.OFFICIAL_VIDEO_LIST
    assert "jobs" not in pipeline.step_options("frames", opts)
    detector = pipeline.step_options("proposals", PrepOptions(detector=DetectorConfig(batch_size=16)))["detector"]
    assert "batch_size" not in detector and detector["backend"] == "torchvision"
    with pytest.raises(ValueError, match="unknown step"):
        pipeline.step_options("unpack", opts)
