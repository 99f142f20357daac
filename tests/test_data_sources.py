import cv2
import numpy as np
import pytest

from detection.data.sources import (
    FrameFolderSource,
    FrameReadError,
    VideoFileSource,
    check_video_id,
    frame_file_name,
)
from detection.formats.ava import FrameListEntry, write_frame_list
from detection.video import VideoWriter, read_frames


def coded(k, h=48, w=64):
    """A solid RGB frame that encodes ``k``: R = 8k, G = 255 - 8k, B = 40 (channels distinguishable)."""
    return np.broadcast_to(np.array([8 * k, 255 - 8 * k, 40], np.uint8), (h, w, 3)).copy()


def decode(frames):
    """The ``k`` of each coded frame (from the red channel's mean)."""
    return np.rint(frames[..., 0].reshape(len(frames), -1).mean(axis=1) / 8).astype(int)


def write_frames(folder, vid, count, naming="pyslowfast"):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        cv2.imwrite(str(folder / frame_file_name(vid, k, naming)), cv2.cvtColor(coded(k), cv2.COLOR_RGB2BGR))


def test_names_and_ids():
    assert frame_file_name("abc", 0) == "abc_000001.jpg"
    assert frame_file_name("abc", 41, "mmaction2") == "img_00042.jpg"
    assert check_video_id("-5KQ66BBWC4") == "-5KQ66BBWC4"
    for bad in ("", "..", "a/b", "a\\b", " x"):
        with pytest.raises(ValueError, match="cannot be used as a file name"):
            check_video_id(bad)


@pytest.mark.parametrize("naming", ["pyslowfast", "mmaction2"])
def test_frame_folders_read_rgb_in_index_order(tmp_path, naming):
    write_frames(tmp_path / "vid1", "vid1", 12, naming)
    source = FrameFolderSource(tmp_path, naming)
    assert source.num_frames("vid1") == 12
    assert source.location("vid1") == tmp_path / "vid1" and source.location("nope") is None
    frames = source.read("vid1", [3, 1, 1, 11])
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8
    assert decode(frames).tolist() == [3, 1, 1, 11]
    assert abs(int(frames[0, 0, 0, 2]) - 40) <= 3  # RGB, not BGR


def test_frame_list_gives_counts_and_paths(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    for k in range(5):
        cv2.imwrite(str(tmp_path / "elsewhere" / f"f{k}.jpg"), cv2.cvtColor(coded(k), cv2.COLOR_RGB2BGR))
    write_frames(tmp_path / "std", "std", 3)
    entries = [FrameListEntry("odd", 0, k, f"elsewhere/f{k}.jpg") for k in range(5)]
    entries += [FrameListEntry("std", 1, k, f"std/{frame_file_name('std', k)}") for k in range(3)]
    write_frame_list(tmp_path / "list.csv", entries)
    source = FrameFolderSource(tmp_path, frame_lists=[tmp_path / "list.csv"])
    assert source.num_frames("odd") == 5 and source.num_frames("std") == 3
    assert decode(source.read("odd", [4, 0])).tolist() == [4, 0]
    assert source.location("odd") == tmp_path / "elsewhere"
    write_frame_list(tmp_path / "gap.csv", [FrameListEntry("g", 0, k, f"g/{k}.jpg") for k in (0, 2)])
    with pytest.raises(ValueError, match="gap.csv: video g lists 2 frames but not frame 1"):
        FrameFolderSource(tmp_path, frame_lists=[tmp_path / "gap.csv"])


def test_missing_and_corrupt_frames_name_the_file(tmp_path):
    write_frames(tmp_path / "v", "v", 6)
    (tmp_path / "v" / "v_000003.jpg").unlink()
    (tmp_path / "v" / "v_000005.jpg").write_bytes(b"not a jpeg")
    source = FrameFolderSource(tmp_path)
    assert source.num_frames("v") == 2  # frames are counted up to the first one missing
    with pytest.raises(FrameReadError, match=r"v_000003\.jpg: frame 2 of video v is missing") as err:
        source.read("v", [0, 2])
    assert err.value.path.endswith("v_000003.jpg")
    with pytest.raises(FrameReadError, match=r"v_000005\.jpg: frame 4 of video v cannot be decoded"):
        source.read("v", [4])


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory):
    """``videos/clip.mp4``: 30 coded frames at 15 fps, plus a decoy ``clip.txt`` and an ``other.mkv``."""
    root = tmp_path_factory.mktemp("videos")
    with VideoWriter(root / "clip.mp4", 15, 64, 48, crf=0) as writer:
        for k in range(30):
            writer.write(coded(k))
    (root / "clip.txt").write_text("not a video")
    (root / "other.mkv").write_bytes(b"not a video either")
    return root


def test_read_frames_seeks_and_returns_the_asked_indices(coded_video):
    frames, used = read_frames(coded_video / "clip.mp4", [20, 5, 5, 29])
    assert decode(frames).tolist() == [20, 5, 5, 29] and used.tolist() == [20, 5, 5, 29]
    frames, used = read_frames(coded_video / "clip.mp4", [28, 40])  # past the end: the last frame
    assert used.tolist() == [28, 29] and decode(frames).tolist() == [28, 29]
    with pytest.raises(ValueError, match="indices"):
        read_frames(coded_video / "clip.mp4", [-1])


def test_video_source_resamples_to_the_grid_fps(coded_video):
    source = VideoFileSource(coded_video, fps=30)
    assert source.location("clip") == coded_video / "clip.mp4"  # .mp4 preferred over other extensions
    assert source.num_frames("clip") == 59  # 30 frames at 15 fps span grid frames 0..58 at 30 fps
    assert decode(source.read("clip", [0, 2, 3, 10, 58])).tolist() == [0, 1, 2, 5, 29]
    same = VideoFileSource(coded_video, fps=15)
    assert same.num_frames("clip") == 30
    assert decode(same.read("clip", [7, 8, 9])).tolist() == [7, 8, 9]


def test_video_source_errors_name_the_file(coded_video):
    source = VideoFileSource(coded_video, fps=15)
    with pytest.raises(FrameReadError, match=r"missing\.\*: no video file for video missing"):
        source.read("missing", [0])
    with pytest.raises(FrameReadError, match="other.mkv"):
        source.num_frames("other")
