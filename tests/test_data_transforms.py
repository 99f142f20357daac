import numpy as np
import pytest

from detection.config import AugmentConfig
from detection.data.transforms import (
    ClipTransform,
    color_jitter,
    crop,
    horizontal_flip,
    hue_rotation,
    random_crop,
    random_short_side,
    short_side_resize,
)


def clip_with_box(box_px, t=3, h=60, w=80):
    """Black frames with a white rectangle at pixel box [x1, y1, x2, y2) and its normalized box."""
    frames = np.zeros((t, h, w, 3), np.uint8)
    x1, y1, x2, y2 = box_px
    frames[:, y1:y2, x1:x2] = 255
    return frames, np.array([[x1 / w, y1 / h, x2 / w, y2 / h]], np.float32)


def white_box(frames):
    """Normalized bounds of the white pixels of the first frame (continuous: pixel j covers [j, j+1))."""
    ys, xs = np.nonzero(frames[0, :, :, 0] > 127)
    h, w = frames.shape[1:3]
    return np.array([xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h], np.float32)


def test_short_side_resize_keeps_aspect_and_floors_the_long_side():
    frames = np.zeros((2, 240, 320, 3), np.uint8)
    assert short_side_resize(frames, 128).shape == (2, 128, 170, 3)
    portrait = np.zeros((2, 320, 240, 3), np.uint8)
    assert short_side_resize(portrait, 128).shape == (2, 170, 128, 3)
    assert short_side_resize(frames, 240) is frames
    with pytest.raises(ValueError, match="uint8 RGB clip"):
        short_side_resize(frames.astype(np.float32), 128)


def test_random_short_side_stays_in_bounds_and_is_reproducible():
    sizes = [random_short_side(256, 320, np.random.default_rng(i)) for i in range(200)]
    assert min(sizes) >= 256 and max(sizes) <= 320 and len(set(sizes)) > 20
    draw = [random_short_side(256, 320, np.random.default_rng(5)) for _ in range(2)]
    assert draw[0] == draw[1]
    assert random_short_side(200, 200, np.random.default_rng(0)) == 200


def test_flip_moves_boxes_with_the_pixels():
    frames, boxes = clip_with_box((10, 5, 30, 50))
    flipped, fboxes = horizontal_flip(frames, boxes)
    np.testing.assert_allclose(fboxes[0], white_box(flipped), atol=1e-6)
    np.testing.assert_allclose(fboxes[0], [1 - 30 / 80, 5 / 60, 1 - 10 / 80, 50 / 60], atol=1e-6)
    np.testing.assert_array_equal(horizontal_flip(flipped, fboxes)[0], frames)


def test_crop_keeps_boxes_aligned_and_clips_the_ones_it_cuts():
    frames, boxes = clip_with_box((10, 5, 30, 50))
    outside = np.array([[0.9, 0.1, 1.0, 0.2]], np.float32)
    out, moved, visible = crop(frames, np.concatenate([boxes, outside]), x0=20, y0=10, width=40, height=40)
    assert out.shape == (3, 40, 40, 3)
    np.testing.assert_allclose(moved[0], white_box(out), atol=1e-6)  # the part of the box inside the crop
    assert visible[0] == pytest.approx((10 * 40) / (20 * 45))
    assert visible[1] == 0.0 and moved[1, 2] - moved[1, 0] == 0.0  # kept, zero-area on the edge
    with pytest.raises(ValueError, match="does not fit"):
        crop(frames, boxes, 50, 0, 40, 40)


def test_random_crop_is_reproducible_and_fits():
    frames, boxes = clip_with_box((10, 5, 30, 50), h=60, w=80)
    a = random_crop(frames, boxes, 48, np.random.default_rng(3))
    b = random_crop(frames, boxes, 48, np.random.default_rng(3))
    assert a[0].shape == (3, 48, 48, 3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    small = random_crop(frames, boxes, 100, np.random.default_rng(0))  # larger than the clip: kept whole
    assert small[0].shape == frames.shape


def test_color_jitter_is_reproducible_and_off_at_zero():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    assert color_jitter(frames, 0.0, np.random.default_rng(1)) is frames
    a = color_jitter(frames, 0.4, np.random.default_rng(1))
    b = color_jitter(frames, 0.4, np.random.default_rng(1))
    assert a.dtype == np.uint8 and a.shape == frames.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, frames)


def test_hue_rotation_turns_colours_and_keeps_gray_and_luma():
    gray = np.full((1, 2, 2, 3), 128, np.uint8)
    np.testing.assert_array_equal(hue_rotation(gray, 0.3), gray)  # no chroma: nothing to turn
    red = np.array([180, 100, 100], np.uint8).reshape(1, 1, 1, 3)  # unsaturated enough to turn unclipped
    luma = lambda x: float(x.astype(np.float64)[0, 0, 0] @ [0.299, 0.587, 0.114])  # noqa: E731
    for turns in (0.1, 0.25, 1 / 3, 0.5):
        out = hue_rotation(red, turns)
        assert abs(luma(out) - luma(red)) < 2.0  # the same luma
        assert np.abs(out.astype(int) - red).max() > 40  # another colour
    np.testing.assert_array_equal(hue_rotation(red, 0.0), red)
    frames = np.random.default_rng(0).integers(90, 160, (2, 8, 8, 3), dtype=np.uint8)  # turn without clipping
    back = hue_rotation(hue_rotation(frames, 0.2), -0.2)  # a rotation: undone by the opposite one
    assert np.abs(back.astype(int) - frames).max() <= 1


def test_train_transform_turns_hues_only_when_asked():
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    boxes = np.array([[0.1, 0.1, 0.5, 0.5]], np.float32)
    base = dict(jitter_short_side=(32, 32), crop_size=None, flip_prob=0.0)
    plain = ClipTransform(AugmentConfig(**base), train=True, eval_short_side=32)
    hued = ClipTransform(AugmentConfig(**base, hue_jitter=0.5), train=True, eval_short_side=32)
    np.testing.assert_array_equal(plain(frames, boxes, np.random.default_rng(1))[0], frames)
    out, moved, _ = hued(frames, boxes, np.random.default_rng(1))
    assert not np.array_equal(out, frames)
    np.testing.assert_array_equal(moved, boxes)
    np.testing.assert_array_equal(out, hued(frames, boxes, np.random.default_rng(1))[0])
    with pytest.raises(ValueError, match="hue_jitter"):
        AugmentConfig(hue_jitter=0.7)


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_moves_boxes_with_the_pixels(seed):
    frames, boxes = clip_with_box((40, 30, 120, 150), t=2, h=180, w=240)
    augment = AugmentConfig(jitter_short_side=(100, 140), crop_size=96, flip_prob=0.5, color_jitter=0.0)
    transform = ClipTransform(augment, train=True, eval_short_side=128)
    out, moved, keep = transform(frames, boxes, np.random.default_rng(seed))
    assert out.shape[1:3] == (96, 96) and keep.all()
    if moved[0, 2] > moved[0, 0] and moved[0, 3] > moved[0, 1]:  # some of the box is in the crop
        np.testing.assert_allclose(moved[0], white_box(out), atol=2.5 / 96)  # within the resize blur
    again = transform(frames, boxes, np.random.default_rng(seed))
    np.testing.assert_array_equal(again[0], out)


def test_crop_min_visible_drops_boxes_that_left_the_crop():
    frames, boxes = clip_with_box((0, 0, 8, 8), h=60, w=200)
    far = np.array([[0.96, 0.5, 1.0, 0.6]], np.float32)
    augment = AugmentConfig(jitter_short_side=(60, 60), crop_size=60, flip_prob=0.0, crop_min_visible=0.5)
    transform = ClipTransform(augment, train=True, eval_short_side=60)
    kept = set()
    for seed in range(20):
        _, moved, keep = transform(frames, np.concatenate([boxes, far]), np.random.default_rng(seed))
        assert len(moved) == keep.sum()
        kept.add(tuple(keep.tolist()))
    assert (False, False) in kept and any(k[0] or k[1] for k in kept)


def test_eval_transform_resizes_without_crop_or_flip():
    frames, boxes = clip_with_box((10, 5, 30, 50))
    out, moved, keep = ClipTransform(AugmentConfig(), train=False, eval_short_side=120)(
        frames, boxes, np.random.default_rng(0))
    assert out.shape == (3, 120, 160, 3) and keep.all()
    np.testing.assert_array_equal(moved, boxes)
