"""Tests for data_prep.ava.cut (and the ffmpeg runner it shares with frames): window, skip, kill, bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from kill_step import kill_after_ffmpeg

from data_prep.ava import cut as cut_mod
from data_prep.ava.cut import cut_command, cut_videos
from data_prep.ava.ffmpeg import (
    ENV_VAR,
    FFmpegError,
    ffmpeg_executable,
    ffmpeg_version,
    find_videos,
    run_ffmpeg,
)
from detection.video import FrameStream, VideoWriter, probe

W, H, FPS = 64, 48, 30


def make_frame(i: int) -> np.ndarray:
    """Frame i: grey at 20 + 2 i (mod 200) and a white square at x = i (mod 56); unique for 1,400 frames."""
    image = np.full((H, W, 3), 20 + (2 * i) % 200, np.uint8)
    image[8:16, i % 56:i % 56 + 8] = 255
    return image


def make_video(path: Path, seconds: float = 6.0) -> Path:
    with VideoWriter(path, FPS, W, H) as writer:
        for i in range(round(seconds * FPS)):
            writer.write(make_frame(i))
    return path


def decode(path: Path) -> np.ndarray:
    with FrameStream(path) as stream:
        return np.stack([f.image for f in stream]).astype(np.int16)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A dataset root with two 6 s videos in two containers; one id starts with '-'."""
    videos = tmp_path / "ds" / "videos"
    videos.mkdir(parents=True)
    make_video(videos / "-5KQ66BBWC4.mp4")
    make_video(videos / "clipB.mkv")
    return tmp_path / "ds"


def test_ffmpeg_executable_version_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import imageio_ffmpeg

    monkeypatch.delenv(ENV_VAR, raising=False)
    exe = ffmpeg_executable()
    assert Path(exe) == Path(imageio_ffmpeg.get_ffmpeg_exe()).resolve()
    assert ffmpeg_version() == ffmpeg_version(exe) and ffmpeg_version()[0].isalnum()
    monkeypatch.setenv(ENV_VAR, exe)
    assert ffmpeg_executable() == exe
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "no-ffmpeg"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        ffmpeg_executable()


def test_run_ffmpeg_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "-broken.mp4"
    bad.write_bytes(b"no video here")
    with pytest.raises(FFmpegError, match="-broken.mp4: ffmpeg failed .exit status"):
        run_ffmpeg(["-i", str(bad), "-f", "null", "-"], what=bad)


def test_find_videos(tmp_path: Path) -> None:
    for name in ["a.mkv", "b.mp4", "b.webm", ".a.tmp.mkv", "c.mp4.part", "bad id.mp4"]:
        (tmp_path / name).touch()
    videos, failed = find_videos(tmp_path)
    assert videos == {"a": tmp_path / "a.mkv"}
    assert sorted(failed) == ["b", "bad id"] and "b.mp4, b.webm" in failed["b"]
    videos, failed = find_videos(tmp_path, ["b.webm", "a", "zzz"])
    assert videos == {"a": tmp_path / "a.mkv", "b": tmp_path / "b.webm"} and list(failed) == ["zzz"]


def test_cut_window_content_and_details(root: Path) -> None:
    report = cut_videos(root, start_s=1.0, end_s=2.0)
    assert report.step == "cut" and report.ok and sorted(report.done) == ["-5KQ66BBWC4", "clipB"]
    out = root / "videos_15min"
    assert sorted(p.name for p in out.iterdir()) == ["-5KQ66BBWC4.mp4", "clipB.mkv"]  # names kept, no temp
    for name in ["-5KQ66BBWC4.mp4", "clipB.mkv"]:
        info = probe(out / name)
        assert info.duration_s == pytest.approx(2.0, abs=0.05)  # seconds 1 through 2 inclusive: -t 2
        source, clip = decode(root / "videos" / name), decode(out / name)
        assert len(clip) == 60
        # Frame k of the clip is the source's frame at 1 s + k / 30 (index 30 + k): input seeking is exact.
        for k in range(len(clip)):
            errors = np.abs(source - clip[k]).mean(axis=(1, 2, 3))
            assert int(np.argmin(errors)) == 30 + k and errors[30 + k] < 3, (k, errors[30 + k])
    assert report.details["clip_seconds"]["clipB"] == pytest.approx(2.0, abs=0.05)
    exe = ffmpeg_executable()
    assert report.details["ffmpeg"] == exe and report.details["ffmpeg_version"] == ffmpeg_version(exe)
    assert report.details["command"] == f"{exe} -nostdin -hide_banner -loglevel error -y -ss 1 -t 2 -i '{{input}}' " \
                                        "'{output}'"
    assert report.details["start_s"] == 1.0 and report.details["duration_s"] == 2.0


def test_default_window_is_pyslowfast_recipe() -> None:
    cmd = cut_command("-x.mkv", "out/-x.mkv", 900.0, 1800.0, executable="ffmpeg")
    assert cmd[cmd.index("-ss"):cmd.index("-i")] == ["-ss", "900", "-t", "901"]
    assert cmd[-2] == os.path.abspath("-x.mkv") and cmd[-1] == os.path.abspath("out/-x.mkv")


def test_window_clipped_to_the_source_and_beyond_it(root: Path) -> None:
    report = cut_videos(root, start_s=4.0, end_s=10.0, names=["-5KQ66BBWC4"])
    assert report.done == ["-5KQ66BBWC4"]
    assert report.details["clip_seconds"]["-5KQ66BBWC4"] == pytest.approx(2.0, abs=0.05)
    report = cut_videos(root, start_s=7.0, end_s=9.0, names=["clipB.mkv"])
    assert "clipB.mkv" in report.failed["clipB"] and "window starts at 7 s" in report.failed["clipB"]
    assert not (root / "videos_15min" / "clipB.mkv").exists()


def test_rerun_skips_without_ffmpeg_and_redoes_wrong_duration(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cut_videos(root, 1.0, 2.0)

    def no_ffmpeg(*args: object, **kwargs: object) -> None:
        raise AssertionError("ffmpeg ran for a complete clip")

    with monkeypatch.context() as m:
        m.setattr(cut_mod, "run_ffmpeg", no_ffmpeg)
        report = cut_videos(root, 1.0, 2.0)
    assert report.done == [] and sorted(report.skipped) == ["-5KQ66BBWC4", "clipB"] and report.ok
    # A clip of the wrong length (here the whole source) is cut again; so is an unreadable one.
    make_video(root / "videos_15min" / "clipB.mkv", seconds=6.0)
    (root / "videos_15min" / "-5KQ66BBWC4.mp4").write_bytes(b"half a file")
    report = cut_videos(root, 1.0, 2.0)
    assert sorted(report.done) == ["-5KQ66BBWC4", "clipB"]
    assert probe(root / "videos_15min" / "clipB.mkv").duration_s == pytest.approx(2.0, abs=0.05)


def test_corrupt_source_fails_by_name_others_complete(root: Path) -> None:
    (root / "videos" / "garbage.webm").write_bytes(b"\x1aE\xdf\xa3" + b"x" * 200)
    report = cut_videos(root, 1.0, 2.0, jobs=2)
    assert sorted(report.done) == ["-5KQ66BBWC4", "clipB"] and list(report.failed) == ["garbage"]
    assert "garbage.webm" in report.failed["garbage"]
    assert sorted(p.name for p in (root / "videos_15min").iterdir()) == ["-5KQ66BBWC4.mp4", "clipB.mkv"]


def test_kill_mid_step_leaves_no_partial_clip(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = f"from data_prep.ava.cut import cut_videos; cut_videos({str(root)!r}, 1.0, 2.0, jobs=1)"
    kill_after_ffmpeg(code, tmp_path, "the cut")
    out = root / "videos_15min"
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == []  # only the temporary clip

    monkeypatch.delenv(ENV_VAR, raising=False)
    report = cut_videos(root, 1.0, 2.0)
    assert sorted(report.done) == ["-5KQ66BBWC4", "clipB"] and report.ok
    assert sorted(p.name for p in out.iterdir()) == ["-5KQ66BBWC4.mp4", "clipB.mkv"]


def test_bad_arguments(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window"):
        cut_videos(root, start_s=5.0, end_s=1.0)
    with pytest.raises(ValueError, match="jobs"):
        cut_videos(root, jobs=0)
    with pytest.raises(FileNotFoundError, match="videos"):
        cut_videos(tmp_path / "empty")
