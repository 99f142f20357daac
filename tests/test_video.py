"""Tests for detection.video: PyAV decode/encode, resampling, windows, clips, bad and truncated files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from detection.video import (
    FrameStream,
    VideoDecodeWarning,
    VideoReadError,
    VideoWriter,
    probe,
    read_clip,
)

W, H, FPS, N = 64, 48, 30, 60
REPO = Path(__file__).resolve().parents[1]


def make_frame(i: int) -> np.ndarray:
    """Frame i: red = 4 * i on a grey background, and a white 8x8 square moving right in rows 8..15."""
    image = np.full((H, W, 3), 40, np.uint8)
    image[..., 0] = 4 * i
    x = (2 * i) % (W - 8)
    image[8:16, x:x + 8] = 255
    return image


def red_of(image: np.ndarray) -> float:
    """Mean red of the rows below the square, i.e. 4 * (source frame index), rescaled to any size."""
    h = image.shape[0]
    return float(image[h * 5 // 8:, :, 0].mean())




def write_with_gop(path: Path, n: int, gop: int) -> None:
    """Like VideoWriter, but with a keyframe every `gop` frames so that seeks land mid-file."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(make_frame(i % 60), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with VideoWriter(path, FPS, W, H) as writer:
        for i in range(N):
            writer.write(make_frame(i))
    return path


@pytest.fixture(scope="module")
def truncated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(full, cut): a scrolling noise texture, hard to compress, so the bytes spread over the frames;
    VideoWriter puts the index first (faststart), so the file cut to 60% of its bytes still opens."""
    full = tmp_path_factory.mktemp("truncated") / "full.mp4"
    base = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with VideoWriter(full, FPS, W, H) as writer:
        for i in range(N):
            writer.write(np.roll(base, i, axis=1))
    cut = full.with_name("cut.mp4")
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    return full, cut


def read_all(path: Path, **kwargs) -> list:
    with FrameStream(path, **kwargs) as stream:
        return list(stream)


def test_roundtrip_indices_times_and_content(video: Path) -> None:
    frames = read_all(video)
    assert [f.index for f in frames] == list(range(N))
    assert [f.time_s for f in frames] == [k / FPS for k in range(N)]  # exact, thanks to the time base
    for f in frames:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 and f.image.flags.c_contiguous
        assert red_of(f.image) == pytest.approx(4 * f.index, abs=5)
        x = (2 * f.index) % (W - 8)
        assert f.image[10:14, x + 2:x + 6].mean() > 230  # the square moved with the frame
    assert not any(f.image is g.image for f, g in zip(frames, frames[1:], strict=False))


def test_probe(video: Path) -> None:
    info = probe(video)
    assert (info.path, info.width, info.height, info.fps, info.num_frames) == (str(video), W, H, 30.0, N)
    assert info.duration_s == pytest.approx(N / FPS)
    with FrameStream(video) as stream:
        assert stream.info == info


@pytest.mark.parametrize("size, shape", [((32, 24), (24, 32)), ((40, 20), (20, 40)), (32, (32, 42)),
                                         (24, (24, 32))])
def test_resize(video: Path, size, shape) -> None:
    frames = read_all(video, size=size)
    assert len(frames) == N
    assert all(f.image.shape == (*shape, 3) for f in frames)
    assert red_of(frames[40].image) == pytest.approx(160, abs=5)


@pytest.mark.parametrize("fps, count, step", [(10, 20, 3), (60, 120, 0.5), (15, 30, 2)])
def test_fps_resampling(video: Path, fps: int, count: int, step: float) -> None:
    frames = read_all(video, fps=fps)
    assert [f.index for f in frames] == list(range(count))
    assert [f.time_s for f in frames] == [k / fps for k in range(count)]
    for f in frames:  # nearest source frame; a tie (60 fps, odd k) takes the earlier one
        assert red_of(f.image) == pytest.approx(4 * int(f.index * step), abs=5)
    if fps == 60:  # duplicated frames are separate arrays
        assert frames[0].image is not frames[1].image
        assert np.array_equal(frames[0].image, frames[1].image)


def test_window_after_seek_has_absolute_indices(tmp_path: Path) -> None:
    path = tmp_path / "gop.mp4"
    write_with_gop(path, 120, gop=10)
    frames = read_all(path, start_s=2.5, end_s=3.0)  # starts mid-GOP, in the second half of the file
    assert [f.index for f in frames] == list(range(75, 90))
    assert [f.time_s for f in frames] == [k / FPS for k in range(75, 90)]
    for f in frames:
        assert red_of(f.image) == pytest.approx(4 * (f.index % 60), abs=5)
    resampled = read_all(path, fps=10, start_s=2.5, end_s=3.0)
    assert [(f.index, f.time_s) for f in resampled] == [(k, k / 10) for k in range(25, 30)]
    assert [red_of(f.image) for f in resampled] == pytest.approx([4 * (3 * k % 60) for k in range(25, 30)],
                                                                 abs=5)
    assert read_all(path, start_s=10.0) == []


@pytest.mark.parametrize("center_s, expected", [
    (1.0, list(range(14, 43, 4))),
    (0.0, [0, 0, 0, 0, 0, 4, 8, 12]),
    (0.05, [0, 0, 0, 0, 2, 6, 10, 14]),  # nearest frame to 0.05 s is 1.5 -> 2
    (1.98, [43, 47, 51, 55, 59, 59, 59, 59]),
    (9.0, [43, 47, 51, 55, 59, 59, 59, 59]),
])
def test_read_clip(video: Path, center_s: float, expected: list[int]) -> None:
    clip, indices = read_clip(video, center_s, num_frames=8, stride=4)
    assert clip.shape == (8, H, W, 3) and clip.dtype == np.uint8
    assert indices.tolist() == expected
    assert [red_of(image) for image in clip] == pytest.approx([4 * i for i in expected], abs=5)


def test_read_clip_resizes_and_validates(video: Path) -> None:
    clip, indices = read_clip(video, 1.0, num_frames=3, stride=1, size=24)
    assert clip.shape == (3, 24, 32, 3) and indices.tolist() == [29, 30, 31]
    with pytest.raises(ValueError):
        read_clip(video, 1.0, num_frames=0, stride=1)


def test_writer_rejects_odd_sizes_and_wrong_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        VideoWriter(tmp_path / "odd.mp4", FPS, 63, 48)
    with VideoWriter(tmp_path / "ok.mp4", FPS, W, H) as writer:
        with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
            writer.write(np.zeros((H, W, 3), np.float32))
        with pytest.raises(ValueError, match=r"\(48, 64, 3\)"):
            writer.write(np.zeros((W, H, 3), np.uint8))
        writer.write(make_frame(0))
    assert probe(tmp_path / "ok.mp4").num_frames == 1
    assert not (tmp_path / "odd.mp4").exists()


def test_writer_is_atomic(tmp_path: Path) -> None:
    fresh, existing = tmp_path / "fresh.mp4", tmp_path / "existing.mp4"
    existing.write_bytes(b"old")
    for path in (fresh, existing):
        with pytest.raises(KeyError), VideoWriter(path, FPS, W, H) as writer:
            for i in range(30):  # enough for x264's lookahead to emit packets, so the temp file exists
                writer.write(make_frame(i))
            assert (tmp_path / f".{path.stem}.tmp.mp4").exists() and writer.frames_written == 30
            assert not fresh.exists() and existing.read_bytes() == b"old"
            raise KeyError("boom")
    assert not fresh.exists()
    assert existing.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.mp4"]


DETERMINISM_SCRIPT = """
import os, sys
import numpy as np
from detection.video import VideoWriter
if len(sys.argv) > 2 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: the bytes must not follow the cores
base = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
with VideoWriter(sys.argv[1], 25, 320, 240) as writer:
    for i in range(20):
        writer.write(np.roll(base, 5 * i, axis=1))
"""


def test_encoding_is_deterministic(tmp_path: Path) -> None:
    outputs = [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for k, out in enumerate(outputs):
        args = [sys.executable, "-c", DETERMINISM_SCRIPT, str(out)] + (["one-core"] if k == 2 else [])
        subprocess.run(args, check=True, env=env, cwd=tmp_path)
    data = [p.read_bytes() for p in outputs]
    assert data[0] == data[1] == data[2]
    assert probe(outputs[0]).num_frames == 20


def test_unreadable_files_raise_naming_the_path(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    for path, what in [(garbage, "cannot open"), (tmp_path / "missing.mp4", "cannot open"),
                       (audio, "no video stream")]:
        for open_it in (probe, FrameStream, lambda p: read_clip(p, 0.0, 4, 1)):
            with pytest.raises(VideoReadError, match=what) as error:
                open_it(path)
            assert str(path) in str(error.value)


@pytest.mark.parametrize("threads", [True, False])
def test_truncated_file_yields_what_decodes_and_warns_once(truncated: tuple[Path, Path],
                                                           threads: bool) -> None:
    full, cut = truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with FrameStream(cut, threads=threads) as stream:
            frames = list(stream)
    assert 0 < len(frames) < N
    assert [f.index for f in frames] == list(range(len(frames)))
    assert stream.stopped_early and stream.last_good == (frames[-1].index, frames[-1].time_s)
    assert len(caught) == 1 and caught[0].category is VideoDecodeWarning
    message = str(caught[0].message)
    assert str(cut) in message and f"after frame {frames[-1].index} ({frames[-1].time_s:.3f} s)" in message
    assert caught[0].filename == __file__  # points at the caller's loop

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with FrameStream(full, threads=threads) as stream:
            assert len(list(stream)) == N and not stream.stopped_early and stream.last_good == (59, 59 / 30)


def test_stream_iterates_once_and_validates(video: Path) -> None:
    with FrameStream(video, end_s=0.1) as stream:
        assert [f.index for f in stream] == [0, 1, 2]
        with pytest.raises(RuntimeError):
            iter(stream)
    with pytest.raises(ValueError):
        FrameStream(video, fps=0)
    with pytest.raises(ValueError):
        FrameStream(video, start_s=2.0, end_s=1.0)


def test_read_clip_on_truncated_file_repeats_the_last_decoded_frame(truncated: tuple[Path, Path]) -> None:
    _, cut = truncated
    with pytest.warns(VideoDecodeWarning):
        last = read_all(cut)[-1].index
    with pytest.warns(VideoDecodeWarning, match=f"after frame {last} "):
        _, indices = read_clip(cut, last / FPS, num_frames=4, stride=2)
    assert indices.tolist() == [last - 4, last - 2, last, last]
    with pytest.warns(VideoDecodeWarning), pytest.raises(VideoReadError, match="no frame decoded"):
        read_clip(cut, 1.9, num_frames=4, stride=1)


def test_encoding_does_not_depend_on_what_the_heap_held(tmp_path: Path) -> None:
    # x264's AVX-512 code gave other bytes for the same frames after other allocations (see
    # detection.video._x264_cpu_option); junk allocated and freed between frames exposed it.
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
    frames = []
    for i in range(60):
        image = background.copy()
        image[20:70, (10 + 2 * i) % 130 :][:, :20] = (230, 200, 90)
        frames.append(image)
    digests = set()
    for seed in range(4):
        junk_rng = np.random.default_rng(seed)
        with VideoWriter(tmp_path / f"{seed}.mp4", 30, 160, 120) as writer:
            for image in frames:
                if seed:
                    junk = [junk_rng.integers(0, 256, int(n), dtype=np.uint8)
                            for n in junk_rng.integers(1_000, 400_000, 20)]
                    del junk
                writer.write(image)
        digests.add(hashlib.sha256((tmp_path / f"{seed}.mp4").read_bytes()).hexdigest())
    assert len(digests) == 1
