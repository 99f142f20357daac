"""Drawing people, identities and actions onto frames, for annotated review videos.

Boxes arrive normalized (the pipeline's convention) and become pixels only here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detection.structures import scale_boxes

__all__ = ["color_for", "draw_people"]

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
