"""Drawing people, identities and actions onto frames, for annotated review videos.

Boxes arrive normalized (the pipeline's convention) and become pixels only here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detection.structures import scale_boxes

__all__ = ["AnnotatedVideoSink", "color_for", "draw_people"]

# A qualitative palette (RGB) that stays readable on busy backgrounds.
_PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 190),
        (0, 128, 128),
        (170, 110, 40),
    ],
    dtype=np.uint8,
)


def color_for(identity: int) -> tuple[int, int, int]:
    """A stable RGB colour for a track/person id (-1, untracked, is white)."""
    if identity < 0:
        return (255, 255, 255)
    return tuple(int(c) for c in _PALETTE[identity % len(_PALETTE)])


def draw_people(
    image: np.ndarray,
    boxes: np.ndarray,
    captions: Sequence[Sequence[str]],
    identities: Sequence[int] | None = None,
) -> np.ndarray:
    """Draw boxes with an id tag and caption lines (e.g. ``"walk 0.91"``) on a copy of an RGB image.

    image: H×W×3 uint8 RGB. boxes: (N, 4) normalized xyxy. captions: N lists of text lines.
    identities: N track/person ids that pick the colours and the ``#id`` tag (None: no tag, one colour).
    """
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    pixel_boxes = np.round(scale_boxes(boxes, width, height)).astype(int)
    scale = max(0.35, min(width, height) / 900)
    thickness = max(1, round(min(width, height) / 300))
    line_h = int(22 * scale) + 4
    for i, (x1, y1, x2, y2) in enumerate(pixel_boxes):
        identity = -1 if identities is None else int(identities[i])
        color = color_for(identity)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        lines = ([f"#{identity}"] if identity >= 0 else []) + list(captions[i])
        # Caption block above the box, or inside its top when there is no room above.
        y = y1 - line_h * len(lines) if y1 - line_h * len(lines) >= 0 else y1 + 1
        for text in lines:
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            x = int(np.clip(x1, 0, max(0, width - tw - 4)))
            cv2.rectangle(out, (x, y), (x + tw + 4, y + line_h), color, -1)
            text_color = (0, 0, 0) if int(np.mean(color)) > 110 else (255, 255, 255)
            cv2.putText(
                out, text, (x + 2, y + line_h - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, text_color, 1,
                cv2.LINE_AA,
            )
            y += line_h
    return out


class AnnotatedVideoSink:
    """Write ``annotated.mp4``: every frame with the people of its nearest keyframe (earlier on a tie).

    Frames (already at the output size) come in order through :meth:`add_frame`, keyframes with final
    track ids through :meth:`add_keyframes`, in order. A frame waits until the first keyframe at or after
    it has come, so the frames held are those between the newest keyframe handed in and the decoder —
    bounded by the pipeline's lag, not by the video's length. Each person gets a box in its track's
    colour, ``#id`` and up to ``top_k`` actions scoring at least ``threshold`` (``walk 0.91``).
    Encoding: :class:`detection.video.VideoWriter` (H.264, atomic, deterministic bytes).
    """

    def __init__(self, path, fps: float, width: int, height: int, label_map, *, top_k: int = 3,
                 threshold: float = 0.3) -> None:
        from collections import deque

        from detection.video import VideoWriter

        self._writer = VideoWriter(path, fps, width, height)
        self.path = self._writer.path
        self._names = list(label_map.names)
        self.top_k, self.threshold = top_k, threshold
        self._frames: deque = deque()  # (index, image) waiting for their keyframe
        self._keyframes: deque = deque()  # keyframes not yet passed by the frames
        self._prev = None  # the last keyframe at or before the frames waiting

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    @property
    def held(self) -> int:
        """Frames waiting for their keyframe."""
        return len(self._frames)

    def _captions(self, kf) -> list[list[str]]:
        out = []
        for scores in kf.action_scores:
            best = np.argsort(-scores, kind="stable")[: self.top_k]
            out.append([f"{self._names[c]} {scores[c]:.2f}" for c in best.tolist() if scores[c] >= self.threshold])
        return out

    def add_keyframes(self, keyframes) -> None:
        """Keyframes (:class:`~detection.structures.KeyframeDetections`) with final track ids, in order."""
        self._keyframes.extend(keyframes)
        self._flush(final=False)

    def add_frame(self, index: int, image: np.ndarray) -> None:
        """The next frame (0-based source ``index``, ``height × width × 3`` uint8 RGB)."""
        self._frames.append((int(index), image))
        self._flush(final=False)

    def _draw(self, index: int, image: np.ndarray, kf) -> None:
        if kf is None or not len(kf):
            self._writer.write(image)
            return
        ids = kf.track_ids if kf.track_ids is not None else None
        self._writer.write(draw_people(image, kf.boxes, self._captions(kf), ids))

    def _flush(self, final: bool) -> None:
        while self._frames:
            index, image = self._frames[0]
            while self._keyframes and self._keyframes[0].frame_index <= index:
                self._prev = self._keyframes.popleft()
            nxt = self._keyframes[0] if self._keyframes else None
            on_keyframe = self._prev is not None and self._prev.frame_index == index
            if nxt is None and not final and not on_keyframe:
                return  # the keyframe after this frame has not come yet
            kf = self._prev
            if nxt is not None and (kf is None or nxt.frame_index - index < index - kf.frame_index):
                kf = nxt
            self._frames.popleft()
            self._draw(index, image, kf)

    def close(self) -> None:
        """Draw the frames still waiting (with the last keyframe) and finish the file."""
        self._flush(final=True)
        self._writer.close()

    def abort(self) -> None:
        self._frames.clear()
        self._writer.abort()
