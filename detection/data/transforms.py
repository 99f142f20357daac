"""Clip augmentations that move person boxes with the pixels, and the evaluation-time resize.

Clips are uint8 RGB numpy arrays ``(T, H, W, 3)``; boxes are (N, 4) float32 normalized ``x1, y1, x2, y2``
of the clip they come with (the project's convention), so resizing leaves them unchanged and only crops
and flips move them. Pixel ``j`` of a row covers ``[j, j + 1) / W`` in normalized coordinates. Every
random choice comes from the ``numpy.random.Generator`` passed in: the same generator state gives the
same clip and boxes. All frames of a clip get the same parameters (one crop, one flip, one colour change).

The training recipe follows PySlowFast's AVA loader: short side drawn with 1/size uniform between the
jitter bounds, a square random crop, a horizontal flip, optional brightness/contrast/saturation jitter in
random order; boxes are clipped to the crop and kept (optionally dropped when too little remains).
Evaluation resizes the short side and does not crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from detection.config import AugmentConfig

__all__ = [
    "ClipTransform",
    "color_jitter",
    "crop",
    "horizontal_flip",
    "hue_rotation",
    "random_crop",
    "random_short_side",
    "short_side_resize",
]

GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luma of RGB
# RGB -> YIQ (NTSC): luma plus two chroma axes; a hue change is a rotation in the chroma plane.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _check_clip(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames: expected a uint8 RGB clip (T, H, W, 3), got {got}")


def short_side_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize every frame so that its short side is ``size`` pixels (the long side floored, aspect kept).

    Bilinear (cv2 INTER_LINEAR), as PySlowFast. Normalized boxes need no change. A clip already at that
    size is returned as it is.
    """
    _check_clip(frames)
    if size < 1:
        raise ValueError(f"size must be >= 1 pixel, got {size}")
    height, width = frames.shape[1:3]
    if min(height, width) == size:
        return frames
    if width < height:
        new_w, new_h = size, int(math.floor(height / width * size))
    else:
        new_w, new_h = int(math.floor(width / height * size)), size
    # One cv2 call per frame: faster than one call on a (H, W, 3T) stack, which cv2 does not vectorise.
    return np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in frames])


def random_short_side(min_size: int, max_size: int, rng: np.random.Generator) -> int:
    """A short side in ``[min_size, max_size]`` pixels with 1/size uniform (PySlowFast's scale jitter)."""
    if not 1 <= min_size <= max_size:
        raise ValueError(f"need 1 <= min_size <= max_size, got {min_size}, {max_size}")
    return int(round(1.0 / rng.uniform(1.0 / max_size, 1.0 / min_size)))


def crop(frames: np.ndarray, boxes: np.ndarray, x0: int, y0: int, width: int,
         height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pixels ``[y0, y0 + height) x [x0, x0 + width)`` of every frame, and the boxes moved with them.

    Returns ``(frames, boxes, visible)``: boxes normalized to the crop and clipped to it (a box outside
    becomes a zero-area box on the crop's edge) and the share (N,) of each box's area that lies inside
    the crop (0 for a zero-area box). A view of ``frames``, not a copy.
    """
    _check_clip(frames)
    full_h, full_w = frames.shape[1:3]
    if not (0 <= x0 and 0 <= y0 and 1 <= width and 1 <= height and x0 + width <= full_w and y0 + height <= full_h):
        raise ValueError(f"crop {width}x{height} at ({x0}, {y0}) does not fit a {full_w}x{full_h} clip")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    # Normalized in the full frame -> pixels -> normalized in the crop.
    scale = np.array([full_w / width, full_h / height] * 2, dtype=np.float32)
    shift = np.array([x0 / width, y0 / height] * 2, dtype=np.float32)
    moved = boxes * scale - shift
    clipped = np.clip(moved, 0.0, 1.0)
    area = (moved[:, 2] - moved[:, 0]) * (moved[:, 3] - moved[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    visible = np.where(area > 0, inside / np.maximum(area, 1e-12), 0.0).astype(np.float32)
    return frames[:, y0:y0 + height, x0:x0 + width], clipped.astype(np.float32), visible


def random_crop(frames: np.ndarray, boxes: np.ndarray, size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop at a uniformly drawn position (a side shorter than ``size`` is kept whole).

    Returns ``(frames, boxes, visible)`` as :func:`crop`.
    """
    _check_clip(frames)
    height, width = frames.shape[1:3]
    crop_h, crop_w = min(size, height), min(size, width)
    y0 = int(rng.integers(0, height - crop_h + 1))
    x0 = int(rng.integers(0, width - crop_w + 1))
    return crop(frames, boxes, x0, y0, crop_w, crop_h)


def horizontal_flip(frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the clip left-right; normalized ``x`` becomes ``1 - x`` (so ``x1, x2`` swap roles)."""
    _check_clip(frames)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    flipped = boxes.copy()
    flipped[:, 0] = 1.0 - boxes[:, 2]
    flipped[:, 2] = 1.0 - boxes[:, 0]
    return np.ascontiguousarray(frames[:, :, ::-1]), flipped


def color_jitter(frames: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation changes in random order, each by a factor in ``1 ± strength``.

    Brightness scales the pixels; contrast blends each frame with its mean gray level; saturation blends
    each pixel with its own gray level. One set of factors for the whole clip; the result is rounded and
    clipped back to uint8.
    """
    _check_clip(frames)
    if strength <= 0:
        return frames
    x = frames.astype(np.float32)
    factors = 1.0 + rng.uniform(-strength, strength, size=3)
    for op in rng.permutation(3).tolist():
        alpha = np.float32(factors[op])
        if op == 0:  # brightness
            x *= alpha
        elif op == 1:  # contrast: towards the mean gray of each frame
            mean_gray = (x @ GRAY_WEIGHTS).mean(axis=(1, 2))[:, None, None, None]
            x = x * alpha + mean_gray * (1.0 - alpha)
        else:  # saturation: towards each pixel's gray
            x = x * alpha + (x @ GRAY_WEIGHTS)[..., None] * (1.0 - alpha)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def hue_rotation(frames: np.ndarray, turns: float) -> np.ndarray:
    """Rotate every pixel's hue by ``turns`` of the colour circle (0.5: opposite hues), keeping its luma.

    One 3x3 matrix on RGB (a rotation of YIQ's chroma plane); rounded and clipped back to uint8.
    """
    _check_clip(frames)
    angle = 2.0 * np.pi * turns
    rotate = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]])
    matrix = (np.linalg.inv(_RGB_TO_YIQ) @ rotate @ _RGB_TO_YIQ).astype(np.float32)
    return np.clip(np.rint(frames.astype(np.float32) @ matrix.T), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class ClipTransform:
    """The augmentations of one split: ``train`` jitters, crops, flips, colours and hues; eval only resizes.

    ``eval_short_side``: short side (px) of val/test clips. Calling it returns ``(frames, boxes, keep)``:
    the transformed clip, the boxes that remain, and the (N,) bool mask of the input boxes kept (all of
    them unless ``augment.crop_min_visible`` drops boxes that left the crop).
    """

    augment: AugmentConfig
    train: bool
    eval_short_side: int

    def __call__(self, frames: np.ndarray, boxes: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        keep = np.ones(len(boxes), dtype=bool)
        if not self.train:
            return short_side_resize(frames, self.eval_short_side), boxes, keep
        aug = self.augment
        frames = short_side_resize(frames, random_short_side(*aug.jitter_short_side, rng))
        if aug.crop_size is not None:
            frames, boxes, visible = random_crop(frames, boxes, aug.crop_size, rng)
            if aug.crop_min_visible > 0:
                keep = visible >= aug.crop_min_visible
                boxes = boxes[keep]
        if aug.flip_prob > 0 and rng.random() < aug.flip_prob:
            frames, boxes = horizontal_flip(frames, boxes)
        frames = color_jitter(frames, aug.color_jitter, rng)
        if aug.hue_jitter > 0:
            frames = hue_rotation(frames, rng.uniform(-aug.hue_jitter, aug.hue_jitter))
        return np.ascontiguousarray(frames), boxes, keep
