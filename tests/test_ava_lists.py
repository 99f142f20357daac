"""``actdet prep ava lists``: PySlowFast's frame lists from the frames on disk, split by the ground truth."""

import os
import shutil
from pathlib import Path

import pytest
from synthetic_data import SPEC, TRAIN, VAL

import detection.formats.ava as ava_format
from data_prep.ava.lists import write_frame_lists


@pytest.fixture
def root(synthetic_root):
    """A copy of the synthetic tree (tests change it), without its frame lists."""
    shutil.rmtree(synthetic_root / "frame_lists")
    return synthetic_root


def pyslowfast_image_lists(frame_list_dir: Path, frame_dir: Path, names):
    """What PySlowFast's ``ava_helper.load_image_lists`` does with the lists (rewritten for the test)."""
    image_paths, video_names = {}, []
    for name in names:
        with open(frame_list_dir / name) as f:
            f.readline()
            for line in f:
                row = line.split()
                assert len(row) == 5
                if row[0] not in video_names:
                    video_names.append(row[0])
                image_paths.setdefault(video_names.index(row[0]), []).append(os.path.join(frame_dir, row[3]))
    return [image_paths[i] for i in range(len(image_paths))], video_names


def test_lists_are_the_frames_on_disk_in_pyslowfast_format(synthetic_dataset, root):
    report = write_frame_lists(root)
    assert report.ok and sorted(report.done) == sorted(TRAIN + VAL)
    for split in ("train", "val"):  # the generator writes the same lists PySlowFast's published ones look like
        name = f"frame_lists/{split}.csv"
        assert (root / name).read_bytes() == (synthetic_dataset / name).read_bytes()
    assert not (root / "frame_lists" / "test.csv").exists()
    paths, names = pyslowfast_image_lists(root / "frame_lists", root / "frames", ["train.csv"])
    assert names == TRAIN
    for vid, frames in zip(names, paths, strict=True):
        on_disk = sorted(str(p) for p in (root / "frames" / vid).iterdir())
        assert frames == on_disk  # every frame, in order, each one existing
    assert report.details["splits"]["train"] == {
        "file": "frame_lists/train.csv", "groundtruth": "annotations/train.csv", "videos": len(TRAIN),
        "frames": len(TRAIN) * SPEC.num_frames}
    assert report.details["frame_counts"] == dict.fromkeys(TRAIN + VAL, SPEC.num_frames)
    first = (root / "frame_lists" / "val.csv").read_text().splitlines()[:2]
    assert first == ["original_vido_id video_id frame_id path labels", f'{VAL[0]} 0 0 {VAL[0]}/{VAL[0]}_000001.jpg ""']


def test_ava_file_names_decide_the_splits_and_other_videos_go_to_test(root):
    for split in ("train", "val"):
        os.replace(root / "annotations" / f"{split}.csv", root / "annotations" / f"ava_{split}_v2.2.csv")
    # v2.2 wins over an older v2.1 file with other videos
    (root / "annotations" / "ava_train_v2.1.csv").write_text(f"{VAL[0]},0902,0.1,0.1,0.5,0.5,1,0\n")
    shutil.copytree(root / "frames" / TRAIN[0], root / "frames" / "testvid")
    for i, path in enumerate(sorted((root / "frames" / "testvid").iterdir())):
        path.rename(path.with_name(f"testvid_{i + 1:06d}.jpg"))
    report = write_frame_lists(root)
    assert report.ok, report.failed
    assert report.details["splits"]["train"]["groundtruth"] == "annotations/ava_train_v2.2.csv"
    entries = ava_format.read_frame_list(root / "frame_lists" / "test.csv")
    assert {e.original_video_id for e in entries} == {"testvid"} and len(entries) == SPEC.num_frames
    train = ava_format.read_frame_list(root / "frame_lists" / "train.csv")
    assert [e.video_index for e in train] == [0] * SPEC.num_frames + [1] * SPEC.num_frames
    # Once the extra video is gone, the stale test list goes too.
    shutil.rmtree(root / "frames" / "testvid")
    assert write_frame_lists(root).ok and not (root / "frame_lists" / "test.csv").exists()


def test_a_gap_in_the_frames_and_a_video_without_frames_fail(root):
    gap = root / "frames" / TRAIN[0] / f"{TRAIN[0]}_000007.jpg"
    gap.unlink()
    shutil.rmtree(root / "frames" / VAL[0])
    report = write_frame_lists(root)
    assert set(report.failed) == {TRAIN[0], VAL[0]}
    assert f"{TRAIN[0]}/{TRAIN[0]}_000007.jpg is missing" in report.failed[TRAIN[0]]
    assert "named in annotations/val.csv but has no frames" in report.failed[VAL[0]]
    assert report.done == [TRAIN[1]]
    listed = {e.original_video_id for e in ava_format.read_frame_list(root / "frame_lists" / "train.csv")}
    assert listed == {TRAIN[1]}  # the lists still hold what is complete
    assert ava_format.read_frame_list(root / "frame_lists" / "val.csv") == []
    lenient = write_frame_lists(root, allow_missing=True)
    assert set(lenient.failed) == {TRAIN[0]} and lenient.details["missing"] == {"val": [VAL[0]]}


def test_mmaction2_naming(root):
    for vid in TRAIN + VAL:
        for i, path in enumerate(sorted((root / "frames" / vid).iterdir())):
            path.rename(path.with_name(f"img_{i + 1:05d}.jpg"))
    assert set(write_frame_lists(root).failed) == set(TRAIN + VAL)  # nothing named the pyslowfast way
    report = write_frame_lists(root, naming="mmaction2")
    assert report.ok
    entries = ava_format.read_frame_list(root / "frame_lists" / "val.csv")
    assert entries[0].path == f"{VAL[0]}/img_00001.jpg" and entries[-1].frame_index == SPEC.num_frames - 1


def test_without_frames_or_ground_truth(root, tmp_path):
    for split in ("train", "val"):
        (root / "annotations" / f"{split}.csv").unlink()
    report = write_frame_lists(root)
    assert "ava_train_v2.2.csv" in report.failed["annotations"] and not (root / "frame_lists").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "run the frames step" in write_frame_lists(empty).failed["frames"]


def test_an_interrupted_write_leaves_the_old_list_or_none(root, monkeypatch):
    assert write_frame_lists(root).ok
    before = (root / "frame_lists" / "train.csv").read_bytes()
    (root / "frames" / TRAIN[1] / f"{TRAIN[1]}_{SPEC.num_frames:06d}.jpg").unlink()  # the next lists differ

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(ava_format.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_frame_lists(root)
    assert (root / "frame_lists" / "train.csv").read_bytes() == before  # not half a file
    shutil.rmtree(root / "frame_lists")
    with pytest.raises(KeyboardInterrupt):
        write_frame_lists(root)
    assert not [p for p in (root / "frame_lists").iterdir() if not p.name.startswith(".")]
