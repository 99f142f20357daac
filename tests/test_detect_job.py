"""``actdet detect``: rows, inputs, resuming after an interruption, and failed videos."""

import json
import shutil

import numpy as np
import pytest
from synthetic_data import SPEC, TRAIN

from detection.cli import main
from detection.formats.ava import read_ava_csv
from detection.persons import factory
from detection.persons.base import DetectorSettings, PersonDetector
from detection.persons.detect_job import collect_inputs, parts_dir, run_detect
from detection.persons.keyframes import parse_keyframes

PER_VIDEO = int(SPEC.seconds)  # keyframes a video on the AVA schedule (one a second from 0 s)


@pytest.fixture
def videos(synthetic_dataset, tmp_path):
    """Copies of the two train videos (tests may damage them)."""
    out = []
    for vid in TRAIN:
        shutil.copy(synthetic_dataset / "videos" / f"{vid}.mp4", tmp_path / f"{vid}.mp4")
        out.append(tmp_path / f"{vid}.mp4")
    return out


class BrightnessDetector(PersonDetector):
    """Two "people" per frame whose boxes and scores follow the image content; can be made to fail."""

    name = "stub"

    def __init__(self, settings=None, interrupt_at=None):
        super().__init__(settings or DetectorSettings(score_threshold=0.0, batch_size=2))
        self.frames_seen = 0
        self.interrupt_at = interrupt_at

    def _detect_pixels(self, frames):
        out = []
        for frame in frames:
            if self.interrupt_at is not None and self.frames_seen >= self.interrupt_at:
                raise KeyboardInterrupt
            self.frames_seen += 1
            h, w = frame.shape[:2]
            level = float(frame.mean()) / 255
            boxes = np.array([[0.1 * w, 0.2 * h, 0.5 * w, 0.9 * h], [0.6 * w, level * h / 2, 0.9 * w, h]])
            out.append((boxes, np.array([level, 1 - level]), None))
        return out


def use_detector(monkeypatch, detector):
    monkeypatch.setattr(factory, "build_detector", lambda cfg, progress=True: detector)


def detect(*args):
    return main(["detect", *map(str, args), "--quiet"])


def test_precomputed_proposals_come_back_unchanged(synthetic_dataset, videos, tmp_path, capsys):
    """Detecting with the dataset's own proposals at its keyframes reproduces the proposals file."""
    proposals = synthetic_dataset / "annotations" / "train_predicted_boxes.csv"
    out = tmp_path / "out" / "proposals.csv"
    status = detect(*videos, "--backend", "precomputed", "--model", proposals, "--score-threshold", "0",
                    "--time-offset", "900", "--keyframes", "ava", "--out", out)
    assert status == 0
    assert out.read_bytes() == proposals.read_bytes()
    printed = capsys.readouterr().out
    unlabelled = 2 * (PER_VIDEO - len(SPEC.keyframe_seconds()))  # AVA keyframes outside the generator's margins
    assert "for 2 of 2 videos" in printed and f"{unlabelled} keyframes had no precomputed boxes" in printed
    assert not parts_dir(out).exists() and not (tmp_path / "out" / "proposals.csv.failures.json").exists()
    # A frame folder at its frame rate gives the same rows as its video.
    vid = TRAIN[0]
    folder_out = tmp_path / "folder.csv"
    assert detect(synthetic_dataset / "frames" / vid, "--backend", "precomputed", "--model", proposals,
                  "--score-threshold", "0", "--time-offset", "900", "--folder-fps", "10", "--out", folder_out) == 0
    expected = [line for line in proposals.read_text().splitlines(keepends=True) if line.startswith(vid + ",")]
    assert folder_out.read_text() == "".join(expected)


def test_rows_of_a_stub_detector(videos, tmp_path, monkeypatch):
    use_detector(monkeypatch, BrightnessDetector(DetectorSettings(score_threshold=0.3, batch_size=3)))
    out = tmp_path / "every.csv"
    assert detect(*videos, "--keyframes", "every:20", "--time-offset", "100", "--out", out) == 0
    rows = read_ava_csv(out)
    # 50 frames: keyframes 0, 20, 40 at 0, 2, 4 s; per keyframe the boxes scoring >= 0.3, best first.
    stamps = [f"{v},{t:g}" for v, t in zip(rows.video_ids, rows.timestamps, strict=True)]
    assert sorted(set(stamps), key=stamps.index) == [f"{v.stem},{t}" for v in videos for t in (100, 102, 104)]
    assert (rows.action_ids == -1).all() and (rows.scores >= 0.3).all()
    lines = out.read_text().splitlines()
    assert any(line.startswith(f"{videos[0].stem},0100,0.100,0.200,0.500,0.900,,") for line in lines[:2])
    for key in set(stamps):
        scores = rows.scores[[s == key for s in stamps]]
        assert (np.diff(scores) <= 0).all()


def test_resume_after_an_interruption_gives_the_same_bytes(videos, tmp_path, monkeypatch, capsys):
    settings = DetectorSettings(score_threshold=0.0, batch_size=1)
    use_detector(monkeypatch, BrightnessDetector(settings))
    reference = tmp_path / "reference.csv"
    assert detect(*videos, "--out", reference) == 0

    out = tmp_path / "resumed.csv"
    first = BrightnessDetector(settings, interrupt_at=PER_VIDEO + 2)  # all of video 1, then 2 of video 2
    use_detector(monkeypatch, first)
    assert detect(*videos, "--out", out) == 130
    assert "rerun with --resume to continue" in capsys.readouterr().err
    assert not out.exists() and (parts_dir(out) / f"{videos[0].stem}.csv").is_file()
    assert not (parts_dir(out) / f"{videos[1].stem}.csv").exists()

    second = BrightnessDetector(settings)
    use_detector(monkeypatch, second)
    assert detect(*videos, "--out", out, "--resume") == 0
    assert second.frames_seen == PER_VIDEO  # only the second video ran again
    assert out.read_bytes() == reference.read_bytes()
    assert "resumed: 1 videos were already done" in capsys.readouterr().out
    assert not parts_dir(out).exists()
    lines = out.read_text().splitlines()
    assert len(lines) == len(set(lines)) == 2 * PER_VIDEO * 2  # no duplicates, nothing missing


def test_changed_settings_start_over(videos, tmp_path):
    inputs = collect_inputs(videos)
    schedule = parse_keyframes("ava")
    out = tmp_path / "p.csv"
    detector = BrightnessDetector(interrupt_at=6)
    with pytest.raises(KeyboardInterrupt):
        run_detect(inputs, out, detector, schedule)
    summary = run_detect(inputs, out, BrightnessDetector(), schedule, time_offset=900)
    assert summary.restarted and summary.resumed == [] and summary.keyframes == 2 * PER_VIDEO
    fresh = tmp_path / "fresh.csv"
    run_detect(inputs, fresh, BrightnessDetector(), schedule, time_offset=900)
    assert out.read_bytes() == fresh.read_bytes()


def test_a_broken_video_is_reported_and_the_others_written(videos, tmp_path, monkeypatch, capsys):
    good, other = videos
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 50)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(other.read_bytes()[: other.stat().st_size // 2])
    use_detector(monkeypatch, BrightnessDetector())
    out = tmp_path / "p.csv"
    assert detect(good, broken, cut, other, "--out", out) == 1
    captured = capsys.readouterr()
    assert "broken: failed:" in captured.err and "cut: failed:" in captured.err
    assert "decoding stopped early" in captured.err and "2 videos failed" in captured.out
    assert sorted(set(read_ava_csv(out).video_ids)) == sorted([good.stem, other.stem])
    report = json.loads((tmp_path / "p.csv.failures.json").read_text())
    assert [f["video_id"] for f in report["failed"]] == ["broken", "cut"]
    assert "cannot open as video" in report["failed"][0]["error"]

    # Repaired inputs: the next run does only those, and the output is complete, in input order.
    shutil.copy(good, broken)
    shutil.copy(other, cut)
    again = BrightnessDetector()
    use_detector(monkeypatch, again)
    assert detect(good, broken, cut, other, "--out", out, "--resume") == 0
    assert again.frames_seen == 2 * PER_VIDEO
    assert list(dict.fromkeys(read_ava_csv(out).video_ids)) == [good.stem, "broken", "cut", other.stem]
    assert not (tmp_path / "p.csv.failures.json").exists()


def test_bad_inputs_are_one_clear_error(videos, tmp_path, capsys):
    spaced = tmp_path / "my video.mp4"
    shutil.copy(videos[0], spaced)
    assert detect(spaced, "--out", tmp_path / "x.csv", "--backend", "precomputed", "--model", spaced) == 2
    assert "video id 'my video'" in capsys.readouterr().err
    (tmp_path / "again").mkdir()
    twin = tmp_path / "again" / videos[0].name
    shutil.copy(videos[0], twin)
    assert detect(videos[0], twin, "--out", tmp_path / "x.csv") == 2
    assert "same video id" in capsys.readouterr().err
    assert detect(tmp_path / "missing.mp4", "--out", tmp_path / "x.csv") == 2
    assert "does not exist" in capsys.readouterr().err
    assert detect(videos[0], "--keyframes", "often", "--out", tmp_path / "x.csv") == 2
    assert "expected 'ava', 'every:N'" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
