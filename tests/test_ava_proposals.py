"""``actdet prep ava proposals``: person boxes on each split's keyframes through ``actdet detect`` (offline)."""

import shutil

import numpy as np
import pytest
from synthetic_data import SPEC, TRAIN, VAL

from data_prep.ava.proposals import make_proposals, proposals_path
from detection.config import DetectorConfig
from detection.formats.ava import read_ava_csv
from detection.persons import factory
from detection.persons.base import DetectorSettings, PersonDetector
from detection.persons.detect_job import parts_dir


@pytest.fixture
def root(synthetic_root):
    return synthetic_root


def precomputed(root, split):
    """The generator's own proposals as the detector: no weights, no torch."""
    return DetectorConfig(backend="precomputed", model=str(root / "annotations" / f"{split}_predicted_boxes.csv"),
                          score_threshold=0.0)


def test_precomputed_boxes_come_back_as_pyslowfast_named_files(root):
    for split in ("train", "val"):
        report = make_proposals(root, precomputed(root, split), splits=(split,), fps=SPEC.fps)
        assert report.ok, report.failed
        out = root / "annotations" / f"ava_{split}_predicted_boxes.csv"
        assert out.read_bytes() == (root / "annotations" / f"{split}_predicted_boxes.csv").read_bytes()
        assert report.details["splits"][split]["source"] == f"frame_lists/{split}.csv"
        assert sorted(report.done) == sorted(TRAIN if split == "train" else VAL)


class CountingDetector(PersonDetector):
    """One person per keyframe, its box following the image; can be made to stop like a Ctrl-C."""

    name = "counting"

    def __init__(self, stop_after=None):
        super().__init__(DetectorSettings(score_threshold=0.0, batch_size=2))
        self.frames_seen, self.stop_after = 0, stop_after

    def _detect_pixels(self, frames):
        out = []
        for frame in frames:
            if self.stop_after is not None and self.frames_seen >= self.stop_after:
                raise KeyboardInterrupt
            self.frames_seen += 1
            h, w = frame.shape[:2]
            level = float(frame.mean()) / 255
            out.append((np.array([[0.1 * w, 0.1 * h, 0.6 * w, level * h + 1]]), np.array([0.9]), None))
        return out


def test_resume_after_an_interruption_and_other_names(root, monkeypatch):
    keyframes = int(SPEC.seconds)  # the AVA schedule: one per second, from 0 s
    first = CountingDetector(stop_after=keyframes + 1)
    monkeypatch.setattr(factory, "build_detector", lambda cfg, progress=False: first)
    name = "{split}_mine.csv"
    with pytest.raises(KeyboardInterrupt):
        make_proposals(root, splits=("train",), fps=SPEC.fps, name=name)
    out = proposals_path(root, "train", name)
    assert not out.exists() and (parts_dir(out) / f"{TRAIN[0]}.csv").is_file()
    second = CountingDetector()
    monkeypatch.setattr(factory, "build_detector", lambda cfg, progress=False: second)
    report = make_proposals(root, splits=("train",), fps=SPEC.fps, name=name)
    assert report.ok and report.skipped == [TRAIN[0]] and report.done == [TRAIN[1]]
    assert second.frames_seen == keyframes  # only the second video ran
    rows = read_ava_csv(out)
    assert sorted(set(rows.timestamps.tolist())) == [900.0 + k for k in range(keyframes)]
    assert list(dict.fromkeys(rows.video_ids.tolist())) == TRAIN and len(rows) == 2 * keyframes
    assert (rows.action_ids == -1).all()


def test_clips_without_frames_and_missing_videos(root, monkeypatch):
    detector = CountingDetector()
    monkeypatch.setattr(factory, "build_detector", lambda cfg, progress=False: detector)
    (root / "videos_15min").mkdir()
    shutil.copy(root / "videos" / f"{VAL[0]}.mp4", root / "videos_15min" / f"{VAL[0]}.mp4")
    shutil.rmtree(root / "frames" / VAL[0])
    shutil.rmtree(root / "frames" / TRAIN[1])
    report = make_proposals(root, fps=SPEC.fps)
    assert set(report.failed) == {TRAIN[1]} and "no frames" in report.failed[TRAIN[1]]
    assert set(report.done) == {TRAIN[0], VAL[0]}
    val = read_ava_csv(proposals_path(root, "val"))
    assert set(val.video_ids.tolist()) == {VAL[0]} and len(val) == int(SPEC.seconds)
    # Without frame lists the ground truth names the videos.
    shutil.rmtree(root / "frame_lists")
    again = make_proposals(root, splits=("val",), fps=SPEC.fps)
    assert again.details["splits"]["val"]["source"] == "annotations/val.csv"
    with pytest.raises(ValueError, match="must contain"):
        make_proposals(root, name="boxes.csv")
