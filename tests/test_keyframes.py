"""Keyframe schedules: parsing, frame-folder indices and streaming selection from a video."""

import numpy as np
import pytest

from detection.persons.keyframes import KeyframeSchedule, parse_keyframes
from detection.video import VideoWriter


@pytest.mark.parametrize(
    "text, expected, back",
    [
        ("ava", KeyframeSchedule("ava"), "ava"),
        (" AVA ", KeyframeSchedule("ava"), "ava"),
        ("every:5", KeyframeSchedule("every", every=5), "every:5"),
        ("every:1", KeyframeSchedule("every", every=1), "every:1"),
        ("fps:2.5", KeyframeSchedule("fps", fps=2.5), "fps:2.5"),
        ("fps:4", KeyframeSchedule("fps", fps=4.0), "fps:4"),
    ],
)
def test_parse_and_print(text, expected, back):
    schedule = parse_keyframes(text)
    assert schedule == expected and str(schedule) == back and parse_keyframes(back) == schedule


@pytest.mark.parametrize(
    "text, message",
    [
        ("every:0", "positive integer"),
        ("every:1.5", "positive integer"),
        ("every:-2", "positive integer"),
        ("fps:0", "positive number"),
        ("fps:-1", "positive number"),
        ("fps:nan", "positive number"),
        ("fps:fast", "positive number"),
        ("sometimes", "expected 'ava', 'every:N'"),
        ("every", "expected 'ava', 'every:N'"),
        ("", "expected 'ava', 'every:N'"),
    ],
)
def test_bad_schedules_say_what_is_expected(text, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_keyframes(text)
    assert repr(text) in str(err.value) or text == ""


def test_rate():
    assert parse_keyframes("ava").rate == 1.0 and parse_keyframes("fps:3").rate == 3.0
    assert parse_keyframes("every:3").rate is None


def test_frame_indices():
    # AVA: whole seconds while the frame exists; 95 frames at 30 fps last 3.17 s.
    assert parse_keyframes("ava").frame_indices(95, 30) == [(0, 0.0), (30, 1.0), (60, 2.0), (90, 3.0)]
    assert parse_keyframes("ava").frame_indices(90, 30) == [(0, 0.0), (30, 1.0), (60, 2.0)]
    assert parse_keyframes("every:4").frame_indices(10, 10) == [(0, 0.0), (4, 0.4), (8, 0.8)]
    # fps:2 at 25 fps: 0.5 s falls between frames 12 and 13 (12.5): the earlier one.
    assert parse_keyframes("fps:2").frame_indices(30, 25) == [(0, 0.0), (12, 0.5), (25, 1.0)]
    # More keyframes than frames: the nearest frame repeats; the last keyframe is before the end.
    assert parse_keyframes("fps:4").frame_indices(3, 2) == [(0, 0.0), (0, 0.25), (1, 0.5), (1, 0.75), (2, 1.0),
                                                            (2, 1.25)]
    assert parse_keyframes("ava").frame_indices(0, 30) == []
    with pytest.raises(ValueError, match="fps > 0"):
        parse_keyframes("ava").frame_indices(10, 0)


@pytest.fixture(scope="module")
def numbered_video(tmp_path_factory):
    """33 frames at 25 fps whose brightness is 7 × the frame index."""
    path = tmp_path_factory.mktemp("kf") / "numbered.mp4"
    with VideoWriter(path, 25, 32, 32, crf=0) as writer:
        for i in range(33):
            writer.write(np.full((32, 32, 3), 7 * i, np.uint8))
    return path


@pytest.mark.parametrize("text", ["ava", "every:4", "fps:2", "fps:7"])
def test_video_keyframes_pick_the_frames_a_folder_would(numbered_video, text):
    schedule = parse_keyframes(text)
    got = [(round(float(f.image.mean()) / 7), f.time_s) for f in schedule.video_keyframes(numbered_video)]
    assert got == schedule.frame_indices(33, 25)
    if schedule.kind == "every":
        assert [f.index for f in schedule.video_keyframes(numbered_video)] == [0, 4, 8, 12, 16, 20, 24, 28, 32]
