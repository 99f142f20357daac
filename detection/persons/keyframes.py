"""Keyframe schedules: which frames of a video the person detector looks at.

A schedule is written as a short string (the ``--keyframes`` option):

- ``ava``: 1 Hz at whole seconds, as AVA annotates (the frame nearest to ``0 s, 1 s, 2 s, ...``);
- ``every:N``: every N-th decoded frame (frame indices ``0, N, 2N, ...``), at the frame's own time;
- ``fps:F``: F keyframes per second (the frame nearest to ``k / F`` seconds), F may be fractional.

Keyframe times are seconds from the start of the video (``ava`` gives whole seconds). Videos are decoded
with :class:`detection.video.FrameStream` (streaming, one frame in memory at a time besides the one
being compared); frame folders are resolved to frame indices without reading the other images.
No torch here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from detection.video import Frame, FrameStream

__all__ = ["KeyframeSchedule", "parse_keyframes"]

_SYNTAX = "expected 'ava', 'every:N' (N a positive integer) or 'fps:F' (F a positive number)"


def _exact(x: float) -> Fraction:
    """A rate as a small exact fraction (29.97002997 -> 30000/1001), as the video module does."""
    return Fraction(x).limit_denominator(1_000_000)


@dataclass(frozen=True)
class KeyframeSchedule:
    """Which frames are keyframes. ``every``: frames between keyframes; ``fps``: keyframes per second.

    Build one with :func:`parse_keyframes`; ``str(schedule)`` gives the string back.
    """

    kind: Literal["ava", "every", "fps"]
    every: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "every" and not (isinstance(self.every, int) and self.every >= 1):
            raise ValueError(f"keyframes every:N needs an integer N >= 1, got {self.every!r}")
        if self.kind == "fps" and not (self.fps is not None and math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"keyframes fps:F needs a positive F, got {self.fps!r}")
        if self.kind not in ("ava", "every", "fps"):
            raise ValueError(f"unknown keyframe schedule kind {self.kind!r}: {_SYNTAX}")

    def __str__(self) -> str:
        if self.kind == "every":
            return f"every:{self.every}"
        if self.kind == "fps":
            return f"fps:{self.fps:g}"
        return "ava"

    @property
    def rate(self) -> float | None:
        """Keyframes per second for ``ava`` (1) and ``fps:F`` (F); None for ``every:N``."""
        return 1.0 if self.kind == "ava" else self.fps

    def video_keyframes(self, path: str | os.PathLike, size: int | tuple[int, int] | None = None) -> Iterator[Frame]:
        """Decode ``path`` and yield its keyframes in time order, as :class:`Frame` (``time_s`` = keyframe time).

        ``ava`` / ``fps:F``: ``Frame.index`` is the keyframe number k and ``time_s`` is ``k / rate`` exactly;
        ``every:N``: the source frame index (a multiple of N) and its presentation time. ``size`` is passed
        to :class:`FrameStream`. After the generator is exhausted, a truncated or corrupt file has issued
        one ``VideoDecodeWarning``; use :meth:`open_stream` to inspect ``stopped_early`` yourself.
        Raises VideoReadError when the file cannot be opened.
        """
        with self.open_stream(path, size) as stream:
            yield from self.select(stream)

    def open_stream(self, path: str | os.PathLike, size: int | tuple[int, int] | None = None) -> FrameStream:
        """The :class:`FrameStream` this schedule reads (resampled for ``ava`` / ``fps:F``), for :meth:`select`."""
        return FrameStream(path, size=size, fps=self.rate)

    def select(self, stream: FrameStream) -> Iterator[Frame]:
        """The keyframes among the frames of a stream opened with :meth:`open_stream`."""
        if self.kind != "every":
            yield from stream  # resampled: every frame is a keyframe
            return
        for frame in stream:
            if frame.index % self.every == 0:
                yield frame

    def frame_indices(self, num_frames: int, fps: float) -> list[tuple[int, float]]:
        """Keyframes of a sequence of ``num_frames`` frames at a constant ``fps`` (a frame folder).

        Returns ``(frame index, keyframe time in seconds)`` pairs, 0-based indices, the same choice that
        :meth:`video_keyframes` makes on a constant-rate video: the nearest frame to each keyframe time
        (the earlier one on a tie), keyframe times before the end of the last frame.
        """
        if num_frames < 0 or not fps > 0:
            raise ValueError(f"need num_frames >= 0 and fps > 0, got {num_frames} and {fps}")
        if self.kind == "every":
            src = _exact(fps)
            return [(i, float(i / src)) for i in range(0, num_frames, self.every)]
        src, out = _exact(fps), _exact(self.rate)
        end = Fraction(num_frames) / src  # the last frame lasts one period
        picks = []
        k = 0
        while Fraction(k) / out < end:
            position = Fraction(k) / out * src  # in source frames
            index = min(math.ceil(position - Fraction(1, 2)), num_frames - 1)  # nearest, the earlier on a tie
            picks.append((index, float(Fraction(k) / out)))
            k += 1
        return picks


def parse_keyframes(text: str) -> KeyframeSchedule:
    """A schedule from its string: ``ava``, ``every:N`` or ``fps:F``. Raises ValueError saying what is expected."""
    spec = str(text).strip().lower()
    if spec == "ava":
        return KeyframeSchedule("ava")
    match = re.fullmatch(r"(every|fps)\s*[:=]\s*(\S+)", spec)
    if not match:
        raise ValueError(f"keyframes {text!r}: {_SYNTAX}")
    kind, value = match.groups()
    if kind == "every":
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"keyframes {text!r}: N in every:N must be a positive integer (frames)")
        return KeyframeSchedule("every", every=int(value))
    try:
        rate = float(value)
    except ValueError:
        rate = float("nan")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"keyframes {text!r}: F in fps:F must be a positive number (keyframes per second)")
    return KeyframeSchedule("fps", fps=rate)
