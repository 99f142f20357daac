"""Streaming video decode and encode on PyAV, and clip sampling around a keyframe.

Units throughout: times in seconds from the start of the video stream, frame indices 0-based, sizes
in pixels as ``(width, height)``. Images are ``H x W x 3`` uint8 RGB numpy arrays. No torch here.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

__all__ = [
    "Frame", "FrameStream", "VideoDecodeWarning", "VideoInfo", "VideoReadError", "VideoWriter",
    "output_size", "probe", "read_clip", "read_frames",
]


class VideoReadError(RuntimeError):
    """A video file does not exist, cannot be opened, or has no video stream."""


class VideoDecodeWarning(UserWarning):
    """Decoding ended before the end of the video (corrupt or truncated file)."""


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata of a video's first video stream; ``fps`` is the average frame rate."""

    path: str
    width: int
    height: int
    fps: float
    num_frames: int | None
    duration_s: float | None


@dataclass
class Frame:
    """One decoded frame: 0-based ``index``, presentation time ``time_s`` (seconds), RGB ``image``.

    ``source``: the decoded frame itself, for :meth:`FrameStream.full_image` (None for frames made elsewhere).
    """

    index: int
    time_s: float
    image: np.ndarray
    source: av.VideoFrame | None = field(default=None, repr=False, compare=False)


def _exact(x: float | Fraction) -> Fraction:
    """Seconds or frames/second as a small exact fraction: 0.1 -> 1/10, 29.97002997 -> 30000/1001."""
    return Fraction(x).limit_denominator(1_000_000)


def _open(path: str) -> tuple[av.container.InputContainer, av.VideoStream, Fraction]:
    """Open ``path``; return the container, its first video stream and its average frame rate."""
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as e:  # av's FileNotFoundError is both
        raise VideoReadError(f"{path}: cannot open as video: {getattr(e, 'strerror', None) or e}") from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or not stream.codec_context.width:
        container.close()
        raise VideoReadError(f"{path}: video stream has no frame rate or frame size")
    return container, stream, Fraction(rate)


def _info(path: str, container: av.container.InputContainer, stream: av.VideoStream,
          rate: Fraction) -> VideoInfo:
    if stream.duration is not None:
        duration_s: float | None = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration_s = container.duration / av.time_base
    else:
        duration_s = None
    ctx = stream.codec_context
    return VideoInfo(path, ctx.width, ctx.height, float(rate), stream.frames or None, duration_s)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's metadata without decoding. Raises VideoReadError."""
    container, stream, rate = _open(str(path))
    with container:
        return _info(str(path), container, stream, rate)


def output_size(size: int | tuple[int, int] | None, width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` of a ``width × height`` video resized to ``size``: None (unchanged), the short side
    in pixels (aspect kept, both rounded to even, as codecs need), or an explicit ``(width, height)``."""
    if size is None:
        return width, height
    if isinstance(size, (int, np.integer)):  # the short side; keep the aspect ratio, even for codecs
        scale = size / min(width, height)
        return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))
    w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be positive (width, height) in pixels, got {size}")
    return w, h


class FrameStream:
    """Decode a video lazily into ``Frame``s, in presentation order; iterate once.

    ``size``: ``(width, height)`` or the short side in pixels (aspect kept, rounded to even); the resize
    happens once, in swscale. ``fps``: resample to this rate, giving for each time ``k / fps`` the nearest
    decoded frame (``index = k``, ``time_s = k / fps``). ``start_s`` / ``end_s``: the window
    ``[start_s, end_s)`` in seconds, reached by seeking to the keyframe before ``start_s``.

    Source indices are ``round(time_s * info.fps)``, so they agree with or without a seek and after
    a decode error; this assumes a constant frame rate (for variable-rate video they are nominal and
    may skip or repeat). A corrupt or truncated file yields what decodes, then one
    ``VideoDecodeWarning``; ``stopped_early`` and ``last_good`` (source index, time_s) say where it
    stopped. Raises VideoReadError when the file cannot be opened.
    """

    def __init__(self, path: str | os.PathLike, *, size: int | tuple[int, int] | None = None,
                 fps: float | None = None, start_s: float | None = None, end_s: float | None = None,
                 threads: bool = True) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if start_s is not None and end_s is not None and end_s < start_s:
            raise ValueError(f"end_s ({end_s}) must not be before start_s ({start_s})")
        self.path = str(path)
        self._out_rate = _exact(fps) if fps is not None else None
        self._start = _exact(start_s) if start_s is not None else None
        self._end = _exact(end_s) if end_s is not None else None
        self._container, self._stream, self._rate = _open(self.path)
        self.info = _info(self.path, self._container, self._stream, self._rate)
        try:
            self.size = output_size(size, self.info.width, self.info.height)
        except ValueError:
            self.close()
            raise
        if threads:
            self._stream.thread_type = "AUTO"
        self._reformatter = VideoReformatter()  # keeps one swscale context for all frames
        self._full_reformatter: VideoReformatter | None = None  # full_image's, made on first use
        self._iterated = False
        self._error: av.error.FFmpegError | None = None
        self.stopped_early = False
        self.last_good: tuple[int, float] | None = None

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[Frame]:
        if self._iterated:
            raise RuntimeError(f"{self.path}: a FrameStream can be iterated once; open a new one")
        self._iterated = True
        return self._resampled() if self._out_rate is not None else self._plain()

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        w, h = self.size
        rgb = self._reformatter.reformat(frame, width=w, height=h, format="rgb24")
        return np.ascontiguousarray(rgb.to_ndarray())  # rows may be padded

    def full_image(self, frame: Frame) -> np.ndarray:
        """``frame`` (one of this stream's) as RGB at the video's own size, whatever ``size`` is: for the few
        frames that need every pixel (a detector's keyframes) while the others are decoded small."""
        if frame.source is None:
            raise ValueError(f"{self.path}: frame {frame.index} does not come from this stream")
        if self.size == (self.info.width, self.info.height):
            return frame.image
        if self._full_reformatter is None:
            self._full_reformatter = VideoReformatter()
        rgb = self._full_reformatter.reformat(frame.source, width=self.info.width, height=self.info.height,
                                              format="rgb24")
        return np.ascontiguousarray(rgb.to_ndarray())

    def _raw(self) -> Iterator[av.VideoFrame]:
        """Decoded frames; after a decode error, what the decoder still holds, then the error is kept."""
        try:
            for packet in self._container.demux(self._stream):
                yield from packet.decode()
        except av.error.FFmpegError as e:
            self._error = e
            with contextlib.suppress(av.error.FFmpegError):
                yield from self._stream.codec_context.decode(None)

    def _decoded(self, start: Fraction | None,
                 end: Fraction | None) -> Iterator[tuple[int, Fraction, av.VideoFrame]]:
        """(source index, exact time_s, frame) for the decoded frames with ``start <= time_s < end``."""
        tb, origin, period = self._stream.time_base, self._stream.start_time or 0, 1 / self._rate
        if start is not None and start > 0:
            # To the keyframe at or before start; if the file cannot seek, decode from the beginning.
            with contextlib.suppress(av.error.FFmpegError):
                self._container.seek(origin + math.floor(start / tb), stream=self._stream)
        last_t = None
        for frame in self._raw():
            if frame.pts is not None:
                t = (frame.pts - origin) * tb
            else:  # some raw streams carry no timestamps
                t = last_t + period if last_t is not None else Fraction(0)
            if last_t is not None and t <= last_t:  # repeated timestamps after a decode error
                continue
            index, last_t = round(t * self._rate), t
            self.last_good = (index, float(t))
            if end is not None and t >= end:
                return
            if start is None or t >= start:
                yield index, t, frame
        # Decoded to the end of the file. Frame-threaded decoding swallows decode errors, so compare
        # with the frame count the container declares as well.
        if self._error is not None:
            self._warn_stopped(self._error.strerror or str(self._error))
        elif self.info.num_frames:
            reached = self.last_good[0] if self.last_good else round((start or 0) * self._rate) - 1
            if reached < self.info.num_frames - 1:
                self._warn_stopped(f"the container declares {self.info.num_frames} frames")

    def _warn_stopped(self, reason: str) -> None:
        self.stopped_early = True
        where = (f"after frame {self.last_good[0]} ({self.last_good[1]:.3f} s)" if self.last_good
                 else "before the first frame")
        warnings.warn(f"{self.path}: decoding stopped early {where}: {reason}", VideoDecodeWarning,
                      stacklevel=4)

    def _plain(self) -> Iterator[Frame]:
        for index, t, frame in self._decoded(self._start, self._end):
            yield Frame(index, float(t), self._to_rgb(frame), frame)

    def _resampled(self) -> Iterator[Frame]:
        out, period, end = self._out_rate, 1 / self._rate, self._end
        start = self._start or Fraction(0)
        k = math.ceil(start * out)
        images: dict[Fraction, np.ndarray] = {}  # RGB of the (at most two) candidate source frames

        def pick(k: int, t: Fraction, frame: av.VideoFrame) -> Frame:
            if t in images:
                image = images[t].copy()  # a duplicated frame; callers may draw on their copy
            else:
                image = images[t] = self._to_rgb(frame)
            return Frame(k, float(k / out), image, frame)

        prev: tuple[Fraction, av.VideoFrame] | None = None
        # Source frames one period beyond the window, so the nearest one to each edge time is seen.
        src_start = start - period if start > 0 else None
        for _, t, frame in self._decoded(src_start, end + period if end is not None else None):
            while (end is None or k / out < end) and t >= k / out:  # cur is the first frame at/after k/out
                tk = k / out
                yield pick(k, *prev) if prev is not None and tk - prev[0] <= t - tk else pick(k, t, frame)
                k += 1
            if end is not None and k / out >= end:
                return
            prev = (t, frame)
            images = {t: images[t]} if t in images else {}
        # The last frame lasts one source period.
        while prev is not None and k / out < prev[0] + period and (end is None or k / out < end):
            yield pick(k, *prev)
            k += 1


def read_clip(path: str | os.PathLike, center_s: float, num_frames: int, stride: int,
              size: int | tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``num_frames`` frames at ``stride`` source frames around the frame nearest ``center_s``.

    Indices are ``center - (num_frames // 2) * stride + k * stride`` (PySlowFast/AVA), clamped to
    ``[0, last frame]`` so edge frames repeat. Only the window is decoded (seek, then decode forward).
    Returns ``(clip, indices)``: ``T x H x W x 3`` uint8 RGB and the 0-based frame index of each image
    (where a frame is missing, e.g. in a truncated file, the nearest decoded one and its index).
    Raises ValueError for bad arguments, VideoReadError when the file cannot be read there.
    """
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames} and {stride}")
    info = probe(path)
    rate = _exact(info.fps)
    last = info.num_frames - 1 if info.num_frames else (
        math.ceil(info.duration_s * rate) - 1 if info.duration_s else None)
    center = max(0, round(center_s * rate))
    if last is not None:
        center = min(center, last)
    wanted = np.clip(center + (np.arange(num_frames) - num_frames // 2) * stride, 0, last)
    lo, hi = int(wanted.min()), int(wanted.max())
    # Half-frame margins make the window robust to timestamp jitter; indices come from timestamps.
    start_s = float((lo - Fraction(1, 2)) / rate) if lo > 0 else None
    end_s = float((hi + Fraction(1, 2)) / rate)
    with FrameStream(path, size=size, start_s=start_s, end_s=end_s) as stream:
        return _nearest_frames(stream, stream._start, stream._end, wanted,
                               f"between {start_s or 0:.3f} s and {end_s:.3f} s")


def read_frames(path: str | os.PathLike, indices: np.ndarray | list[int], *,
                size: int | tuple[int, int] | None = None, threads: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The frames at 0-based source ``indices`` (any order, repeats allowed), decoded in one pass.

    Seeks once to the keyframe before the smallest index and decodes forward to the largest, converting
    to RGB only the frames asked for. ``size`` as in :class:`FrameStream`. ``threads``: FFmpeg's own
    decoding threads (off by default: data-loader workers already run in parallel).
    Returns ``(frames, used)``: ``len(indices) x H x W x 3`` uint8 RGB in the order of ``indices`` and the
    index each image really has (the nearest decoded frame where one is missing, e.g. past the end of a
    truncated file). Raises ValueError on negative or no indices, VideoReadError when nothing decodes.
    """
    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    if wanted.size == 0 or wanted.min() < 0:
        raise ValueError(f"{path}: indices must be a non-empty list of frame indices >= 0, got {wanted.tolist()}")
    lo, hi = int(wanted.min()), int(wanted.max())
    with FrameStream(path, size=size, threads=threads) as stream:
        # Half-frame margins make the window robust to timestamp jitter; indices come from timestamps.
        start = (lo - Fraction(1, 2)) / stream._rate if lo > 0 else None
        end = (hi + Fraction(1, 2)) / stream._rate
        return _nearest_frames(stream, start, end, wanted, f"between frames {lo} and {hi}")


def _nearest_frames(stream: FrameStream, start: Fraction | None, end: Fraction | None, wanted: np.ndarray,
                    window: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``stream`` from ``start`` to ``end`` (seconds) once, for the 0-based frame indices ``wanted``.

    Returns ``(frames, used)`` as :func:`read_frames` does: for each wanted index the RGB image of the
    nearest decoded frame, and that frame's index (a wanted frame past the end of a truncated file gets the
    last one decoded). Raises VideoReadError naming the file and ``window`` when nothing decodes.
    """
    needed, images, tail = set(wanted.tolist()), {}, None
    for index, _, frame in stream._decoded(start, end):
        if index in needed:
            images[index] = stream._to_rgb(frame)
        tail = index, frame
    if tail is not None and tail[0] not in images:  # the edge frame to repeat if the file ends early
        images[tail[0]] = stream._to_rgb(tail[1])
    if not images:
        raise VideoReadError(f"{stream.path}: no frame decoded {window}")
    have = np.array(sorted(images))
    used = have[np.abs(have[None, :] - wanted[:, None]).argmin(axis=1)]  # nearest decoded frame
    return np.stack([images[i] for i in used.tolist()]), used.astype(np.int64)


@functools.cache
def _x264_cpu_option() -> dict[str, str]:
    """Keep x264 off its AVX-512 code: there the bytes of a frame depend on memory x264 did not write
    (measured: the same frames encoded after other allocations gave other bytes, with any thread count),
    so reruns differed. Every AVX-512 CPU has the AVX2 set named here, which gives the same output as
    on AVX2-only CPUs at the same speed (measured, 1080p). numpy's runtime CPU probe tells which."""
    features = getattr(getattr(np, "_core", None), "_multiarray_umath", None)
    if getattr(features, "__cpu_features__", {}).get("AVX512F"):
        return {"x264-params": "asm=AVX2,FMA3,BMI2,LZCNT"}
    return {}


class VideoWriter:
    """Encode RGB frames to an H.264 (libx264, yuv420p) MP4 at exactly ``fps``; written atomically.

    Frames go to ``.<stem>.tmp<suffix>`` next to ``path``, renamed to ``path`` by a clean ``close()``;
    an exception inside ``with`` deletes the temp file and leaves an existing ``path`` alone. Frame ``i``
    has timestamp ``i / fps`` seconds. The same frames give the same bytes on every run and machine with
    the same FFmpeg/x264 build and CPU class, for a fixed ``threads`` (the output depends on the count,
    so it is never left to x264's core-dependent automatic choice).
    """

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, *, crf: int = 20,
                 preset: str = "veryfast", threads: int = 4) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"{path}: yuv420p needs positive even width and height, got {width}x{height}")
        if fps <= 0:
            raise ValueError(f"{path}: fps must be positive, got {fps}")
        if threads < 1:
            raise ValueError(f"{path}: threads must be at least 1, got {threads}")
        self.path, self.width, self.height = Path(path), width, height
        self._tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix or '.mp4'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames_written = 0
        self._closed = False
        rate = _exact(fps)
        self._container = av.open(str(self._tmp), "w", options={"movflags": "+faststart"})
        try:
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.codec_context.time_base = 1 / rate
            self._stream.codec_context.thread_count = threads
            self._stream.options = {"crf": str(crf), "preset": preset, **_x264_cpu_option()}
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, image: np.ndarray) -> None:
        """Append one ``height x width x 3`` uint8 RGB frame. Raises ValueError on another shape/dtype."""
        expected = (self.height, self.width, 3)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != expected:
            got = f"shape {image.shape} dtype {image.dtype}" if isinstance(image, np.ndarray) else type(image)
            raise ValueError(f"{self.path}: expected a uint8 RGB image of shape {expected}, got {got}")
        if self._closed:
            raise RuntimeError(f"{self.path}: write() after close()")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = self.frames_written, self._stream.codec_context.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, finish the file and move it to ``path``."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except BaseException:
            self.abort()
            raise
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Stop without writing ``path``: close and delete the temp file."""
        self._closed = True
        with contextlib.suppress(Exception):
            self._container.close()
        self._tmp.unlink(missing_ok=True)
