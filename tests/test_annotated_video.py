import numpy as np

from detection.sinks.annotated_video import color_for, draw_people


def test_draws_boxes_and_captions_at_the_right_pixels():
    image = np.zeros((120, 160, 3), np.uint8)
    boxes = np.array([[0.25, 0.5, 0.5, 0.9]], np.float32)
    out = draw_people(image, boxes, [["walk 0.91", "hand wave 0.40"]], identities=[3])
    assert image.sum() == 0, "the input must not be modified"
    color = np.array(color_for(3))
    # Left edge of the box at x = 40 px, between y = 60 and 108.
    assert (np.abs(out[70:100, 40].astype(int) - color).sum(axis=1) < 60).all()
    # Caption block above the box (y < 60), nothing drawn far away from it.
    assert out[:60, 40:].any()
    assert not out[110:, 100:].any()


def test_colors_are_stable_and_untracked_is_white():
    assert color_for(5) == color_for(5 + 12)
    assert color_for(-1) == (255, 255, 255)
    assert len({color_for(i) for i in range(12)}) == 12


def test_no_people_leaves_the_frame_unchanged():
    image = np.full((48, 64, 3), 7, np.uint8)
    out = draw_people(image, np.zeros((0, 4), np.float32), [])
    np.testing.assert_array_equal(out, image)
