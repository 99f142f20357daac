"""Tests for data_prep.ava.frames: namings, counts, content, skip on rerun, kills, bad videos, odd ids."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from kill_step import kill_after_ffmpeg

from data_prep.ava import frames as frames_mod
from data_prep.ava.ffmpeg import ENV_VAR, ffmpeg_executable, ffmpeg_version
from data_prep.ava.frames import count_frames, extract_frames, frame_file_name, frame_files
from detection.video import FrameStream, VideoWriter

W, H = 64, 48


def make_frame(i: int) -> np.ndarray:
    """Frame i: green jumps between neighbouring frames, red grows by 2 a frame, a white square moves right."""
    image = np.full((H, W, 3), 20 + (37 * i) % 200, np.uint8)
    image[..., 0] = 20 + (2 * i) % 220
    x = (2 * i) % (W - 8)
    image[8:16, x:x + 8] = 255
    return image


def make_video(path: Path, seconds: float = 3.0, fps: float = 30.0) -> Path:
    with VideoWriter(path, fps, W, H) as writer:
        for i in range(round(seconds * fps)):
            writer.write(make_frame(i))
    return path


def read_jpeg(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A dataset root with two 3 s clips at 30 fps; one id starts with '-'."""
    clips = tmp_path / "ds" / "videos_15min"
    clips.mkdir(parents=True)
    make_video(clips / "-5KQ66BBWC4.mp4")
    make_video(clips / "clipB.mp4")
    return tmp_path / "ds"


def test_frame_file_name_both_namings() -> None:
    assert frame_file_name("-5KQ66BBWC4", 0) == "-5KQ66BBWC4/-5KQ66BBWC4_000001.jpg"
    assert frame_file_name("vid", 27029, "pyslowfast") == "vid/vid_027030.jpg"
    assert frame_file_name("vid", 0, "mmaction2") == "vid/img_00001.jpg"
    assert frame_file_name("vid", 99999, "mmaction2") == "vid/img_100000.jpg"
    for bad in [("../x", 0, "pyslowfast"), ("vid", -1, "pyslowfast"), ("vid", 0, "opencv")]:
        with pytest.raises(ValueError):
            frame_file_name(*bad)


def test_frame_files_sorted_by_number_and_naming(tmp_path: Path) -> None:
    folder = tmp_path / "frames" / "v"
    folder.mkdir(parents=True)
    for name in ["img_100000.jpg", "img_99999.jpg", "img_00001.jpg", "v_000002.jpg", "notes.txt", "img_1.jpg"]:
        (folder / name).touch()
    assert [p.name for p in frame_files(tmp_path, "v", "mmaction2")] == [
        "img_00001.jpg", "img_99999.jpg", "img_100000.jpg"]
    assert [p.name for p in frame_files(tmp_path, "v", "pyslowfast")] == ["v_000002.jpg"]
    assert count_frames(tmp_path, "missing") == 0


def test_extract_pyslowfast_counts_content_and_details(root: Path) -> None:
    report = extract_frames(root)
    assert report.step == "frames" and report.ok
    assert sorted(report.done) == ["-5KQ66BBWC4", "clipB"] and report.skipped == []
    assert report.details["frames"] == {"-5KQ66BBWC4": 90, "clipB": 90}
    files = frame_files(root, "-5KQ66BBWC4")
    assert [p.relative_to(root / "frames").as_posix() for p in files] == [
        frame_file_name("-5KQ66BBWC4", i) for i in range(90)]
    assert not list((root / "frames").glob(".*"))  # no temporary folder left
    # The JPEG of index i is the video's frame i (JPEG and colour conversion cost a few levels).
    with FrameStream(root / "videos_15min" / "-5KQ66BBWC4.mp4") as stream:
        decoded = np.stack([f.image for f in stream]).astype(np.int16)
    for i, path in enumerate(files):
        errors = np.abs(decoded - read_jpeg(path)).mean(axis=(1, 2, 3))  # against every decoded frame
        assert int(np.argmin(errors)) == i and errors[i] < 4, (i, errors[i])
    exe = ffmpeg_executable()
    assert report.details["ffmpeg"] == exe and Path(exe).is_file()
    assert report.details["ffmpeg_version"] == ffmpeg_version(exe) != ""
    assert report.details["command"].startswith(exe + " ")
    assert "-r 30 -q:v 1 -start_number 1 '{output_dir}/{vid}_%06d.jpg'" in report.details["command"]
    assert report.details["naming"] == "pyslowfast" and report.details["fps"] == 30.0


def test_extract_mmaction2_naming_other_fps_and_names(tmp_path: Path) -> None:
    make_video(tmp_path / "clips" / "a25.mkv", seconds=2.0, fps=25.0)
    make_video(tmp_path / "clips" / "other.mp4", seconds=1.0)
    report = extract_frames(tmp_path, naming="mmaction2", fps=30.0, names=["a25.mkv", "nope"], source_dir="clips")
    assert report.done == ["a25"] and list(report.failed) == ["nope"]
    assert "nope" in report.failed["nope"]
    names = [p.name for p in frame_files(tmp_path, "a25", "mmaction2")]
    assert names == [f"img_{i:05d}.jpg" for i in range(1, 61)]  # 2 s resampled to 30 fps
    assert "'{output_dir}/img_%05d.jpg'" in report.details["command"]
    assert not (tmp_path / "frames" / "other").exists()


def test_rerun_skips_without_ffmpeg_and_redoes_incomplete(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extract_frames(root)
    mtime = (root / "frames" / "clipB" / "clipB_000001.jpg").stat().st_mtime_ns

    def no_ffmpeg(*args: object, **kwargs: object) -> None:
        raise AssertionError("ffmpeg ran for a complete folder")

    with monkeypatch.context() as m:
        m.setattr(frames_mod, "run_ffmpeg", no_ffmpeg)
        report = extract_frames(root)
    assert report.done == [] and sorted(report.skipped) == ["-5KQ66BBWC4", "clipB"] and report.ok
    assert report.details["frames"]["clipB"] == 90
    assert (root / "frames" / "clipB" / "clipB_000001.jpg").stat().st_mtime_ns == mtime
    # A folder missing its last frames (a run of the plain shell recipe that was stopped) is redone.
    for i in range(80, 91):
        (root / "frames" / "clipB" / f"clipB_{i:06d}.jpg").unlink()
    report = extract_frames(root)
    assert report.done == ["clipB"] and report.skipped == ["-5KQ66BBWC4"]
    assert count_frames(root, "clipB") == 90
    # The other naming does not overwrite these frames.
    report = extract_frames(root, naming="mmaction2", names=["clipB"])
    assert "pyslowfast" in report.failed["clipB"] and count_frames(root, "clipB") == 90


def test_corrupt_and_truncated_videos_fail_by_name(root: Path) -> None:
    clips = root / "videos_15min"
    (clips / "garbage.mp4").write_bytes(b"this is not a video" * 10)
    whole = make_video(root / "whole.mp4", seconds=4.0).read_bytes()
    (clips / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # moov first (faststart): probes fine
    report = extract_frames(root, jobs=2)
    assert sorted(report.done) == ["-5KQ66BBWC4", "clipB"]
    assert sorted(report.failed) == ["garbage", "truncated"]
    assert "garbage.mp4" in report.failed["garbage"] and "truncated.mp4" in report.failed["truncated"]
    assert sorted(p.name for p in (root / "frames").iterdir()) == ["-5KQ66BBWC4", "clipB"]


def test_kill_mid_step_leaves_no_partial_output(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = f"from data_prep.ava.frames import extract_frames; extract_frames({str(root)!r}, jobs=1)"
    kill_after_ffmpeg(code, tmp_path, "the extraction")  # its ffmpeg side (the wrapper) died with it
    frames_dir = root / "frames"
    assert [p.name for p in frames_dir.iterdir() if not p.name.startswith(".")] == []  # nothing final
    assert len(list(frames_dir.glob(".*.tmp/*.jpg"))) == 90  # the frames written before the kill

    monkeypatch.delenv(ENV_VAR, raising=False)
    report = extract_frames(root)
    assert sorted(report.done) == ["-5KQ66BBWC4", "clipB"] and report.ok
    assert sorted(p.name for p in frames_dir.iterdir()) == ["-5KQ66BBWC4", "clipB"]
    assert count_frames(root, "-5KQ66BBWC4") == count_frames(root, "clipB") == 90


def test_bad_arguments(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="naming"):
        extract_frames(root, naming="opencv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality"):
        extract_frames(root, quality=0)
    with pytest.raises(ValueError, match="jobs"):
        extract_frames(root, jobs=0)
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        extract_frames(tmp_path, source_dir="no_such_dir")
