import shutil
import warnings
from collections import defaultdict
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.ops import box_iou

from data_prep.synthetic import SyntheticScene, SyntheticSpec, annotate, generate_dataset, synthetic_label_map
from detection.config import AugmentConfig, DataConfig
from detection.data import AvaDataset, FrameReadError, MissingFrameWarning, clip_indices, collate
from detection.formats.ava import read_ava_csv, read_exclusions, write_ava_csv, write_exclusions
from detection.models.action_model import InputSpec

SPEC = SyntheticSpec(videos=3, seconds=5, width=160, height=120, max_people=3, keyframe_margin_s=1, val_videos=1)
INPUT = InputSpec(num_frames=8, sampling_rate=8, short_side=120, size=(120, 160))  # +-32 frames: clamps at 1 s
NO_AUG = AugmentConfig(jitter_short_side=(120, 120), crop_size=None, flip_prob=0.0, test_short_side=120)
LABELS = synthetic_label_map()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    generate_dataset(out, SPEC)
    return out


def config(root, **overrides):
    return DataConfig(root=str(root), synthetic=None, augment=overrides.pop("augment", NO_AUG), **overrides)


def gt_by_keyframe(path):
    """{(video, timestamp): {box tuple: set of label ids}} from a GT CSV."""
    rows = read_ava_csv(path, kind="groundtruth")
    out = defaultdict(lambda: defaultdict(set))
    for v, t, b, a in zip(rows.video_ids, rows.timestamps, rows.boxes, rows.action_ids, strict=True):
        out[(str(v), float(t))][tuple(b.tolist())].add(int(a))
    return out


def sample_boxes(sample, boxes=None):
    """{box tuple: set of label ids} of a sample (its original boxes unless ``boxes`` given)."""
    boxes = sample.original_boxes if boxes is None else boxes
    return {tuple(b.tolist()): {LABELS.ids[c] for c in np.flatnonzero(row.numpy())}
            for b, row in zip(boxes, sample.labels, strict=True)}


@pytest.mark.parametrize("source", ["frames", "videos"])
def test_samples_hold_exactly_the_generated_boxes_and_labels(root, source):
    expected = gt_by_keyframe(root / "annotations" / "train.csv")
    ds = AvaDataset(config(root, source=source, train_proposals=None), "train", INPUT, seed=0)
    assert len(ds) == len(expected) and ds.has_labels
    train_ids, _ = SPEC.video_ids()
    drawn = defaultdict(lambda: defaultdict(set))  # the generator's own record, before the CSV
    for i, vid in enumerate(train_ids):
        for sec, box, action, _ in annotate(SyntheticScene(SPEC, i)).gt:
            drawn[(vid, SPEC.time_offset + sec)][tuple(np.round(box.astype(np.float64), 3).tolist())].add(action)
    for i in range(len(ds)):
        s = ds[i]
        key = (s.video_id, s.timestamp)
        assert sample_boxes(s) == expected[key]
        assert sample_boxes(s, s.boxes) == expected[key]  # no augmentation: the clip's boxes are the same
        got = {tuple(np.round(b, 3).tolist()): v for b, v in sample_boxes(s).items()}
        assert got == drawn[key]
        assert s.from_gt.all() and (s.scores == 1).all()
        assert s.frame_index == round((s.timestamp - 900) * 30)
        assert s.frame_indices[INPUT.num_frames // 2] == s.frame_index  # the keyframe is the centre frame
        assert s.clip.shape == (3, 8, 120, 160) and s.original_size == (120, 160)


def test_val_without_proposals_uses_the_ground_truth(root):
    expected = gt_by_keyframe(root / "annotations" / "val.csv")
    ds = AvaDataset(config(root, val_proposals=None), "val", INPUT)
    assert {ds.keyframe(i)[:2] for i in range(len(ds))} == set(expected)
    for i in range(len(ds)):
        s = ds[i]
        assert sample_boxes(s, s.boxes) == expected[(s.video_id, s.timestamp)]


def test_clips_from_frames_and_videos_agree_and_centre_on_the_keyframe(root):
    frames = AvaDataset(config(root, source="frames", train_proposals=None), "train", INPUT, normalize=False)
    videos = AvaDataset(config(root, source="videos", train_proposals=None), "train", INPUT, normalize=False)
    assert len(frames) == len(videos)
    clamped = False
    for i in range(len(frames)):
        a, b = frames[i], videos[i]
        assert a.clip.dtype == torch.uint8 and a.clip.shape == b.clip.shape == (3, 8, 120, 160)
        np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
        assert (a.clip.float() - b.clip.float()).abs().mean() < 4.0  # JPEG vs H.264 of the same render
        centre = a.clip[:, INPUT.num_frames // 2].permute(1, 2, 0).numpy()
        jpeg = root / "frames" / a.video_id / f"{a.video_id}_{a.frame_index + 1:06d}.jpg"
        np.testing.assert_array_equal(centre, cv2.cvtColor(cv2.imread(str(jpeg)), cv2.COLOR_BGR2RGB))
        clamped |= a.frame_indices[0] == 0
    assert clamped  # the 1 s keyframes reach before the first frame


def test_clip_indices_follow_pyslowfast_and_clamp():
    np.testing.assert_array_equal(clip_indices(60, 4, 4, 100), [52, 56, 60, 64])
    np.testing.assert_array_equal(clip_indices(2, 4, 4, 100), [0, 0, 2, 6])
    np.testing.assert_array_equal(clip_indices(98, 4, 4, 100), [90, 94, 98, 99])
    np.testing.assert_array_equal(clip_indices(10, 3, 2, None), [8, 10, 12])  # odd T keeps the keyframe


def test_train_proposals_are_labelled_by_iou(root):
    gt = gt_by_keyframe(root / "annotations" / "train.csv")
    props = read_ava_csv(root / "annotations" / "train_predicted_boxes.csv")
    cfg = config(root, train_score_threshold=0.5, proposal_iou=0.9)
    ds = AvaDataset(cfg, "train", INPUT)
    checked = negatives = 0
    for i in range(len(ds)):
        video, t, _ = ds.keyframe(i)
        boxes, labels, from_gt, scores = ds.targets(i)
        assert {tuple(b.tolist()) for b in boxes[from_gt]} == set(gt[(video, t)])
        mine = (props.video_ids == video) & (props.timestamps == t) & (props.scores >= 0.5)
        np.testing.assert_array_equal(boxes[~from_gt], props.boxes[mine])
        np.testing.assert_array_equal(scores[~from_gt], props.scores[mine])
        gt_boxes = np.array(list(gt[(video, t)]), np.float32).reshape(-1, 4)
        iou = box_iou(torch.from_numpy(props.boxes[mine]), torch.from_numpy(gt_boxes)).numpy()
        for row, ious in zip(labels[~from_gt], iou, strict=True):
            want = set().union(*[gt[(video, t)][tuple(gt_boxes[j].tolist())] for j in np.flatnonzero(ious >= 0.9)])
            assert {LABELS.ids[c] for c in np.flatnonzero(row)} == want
            negatives += not want
            checked += 1
    assert checked > 0 and negatives > 0
    strict = AvaDataset(config(root, train_score_threshold=0.5, proposal_negatives=False), "train", INPUT)
    assert strict.num_boxes == ds.num_boxes - negatives


def test_val_scores_the_proposals_above_the_threshold(root):
    props = read_ava_csv(root / "annotations" / "val_predicted_boxes.csv")
    ds = AvaDataset(config(root), "val", INPUT)
    keep = props.scores >= 0.8
    keyframes = set(zip(props.video_ids[keep], props.timestamps[keep], strict=True))
    assert ds.num_boxes == keep.sum() and len(ds) == len(keyframes)
    for i in range(len(ds)):
        s = ds[i]
        mine = (props.video_ids == s.video_id) & (props.timestamps == s.timestamp) & keep
        np.testing.assert_array_equal(s.original_boxes, props.boxes[mine])
        assert not s.from_gt.any() and s.labels.shape == (mine.sum(), len(LABELS))
    test = AvaDataset(config(root, test_score_threshold=0.95), "test", INPUT)
    assert test.num_boxes == (props.scores >= 0.95).sum()


def test_excluded_keyframes_are_skipped(root, tmp_path):
    full = AvaDataset(config(root), "train", INPUT)
    video, t, _ = full.keyframe(1)
    excluded = read_exclusions(root / "annotations" / "train_excluded_timestamps.csv")
    assert excluded  # the generator excludes keyframes where people overlap, proposals there are not used
    assert not {(full.keyframe(i)[0], int(full.keyframe(i)[1])) for i in range(len(full))} & excluded
    write_exclusions(tmp_path / "excluded.csv", excluded | {(video, int(t))})
    ds = AvaDataset(config(root, train_exclusions=str(tmp_path / "excluded.csv")), "train", INPUT)
    assert len(ds) == len(full) - 1
    assert (video, t) not in {ds.keyframe(i)[:2] for i in range(len(ds))}


def test_missing_frames_raise_or_are_skipped(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("videos"))
    ds = AvaDataset(config(copy, train_proposals=None), "train", INPUT)
    video, _, frame = ds.keyframe(0)
    missing = copy / "frames" / video / f"{video}_{frame + 1:06d}.jpg"
    missing.unlink()
    with pytest.raises(FrameReadError, match=f"{missing.name}: frame {frame} of video {video} is missing"):
        ds[0]
    skipping = AvaDataset(config(copy, train_proposals=None, on_missing="skip"), "train", INPUT)
    with pytest.warns(MissingFrameWarning, match=missing.name):
        assert skipping[0] is None
    assert skipping.skipped == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFrameWarning)
        batch = collate([skipping[0], skipping[1], skipping[2]])
    assert len(batch) == 2 and batch.skipped == 1
    shutil.rmtree(copy / "frames" / video)  # a whole video gone: found when the dataset is built
    with pytest.raises(FileNotFoundError, match=f"{video}: no frames for video {video}"):
        AvaDataset(config(copy, train_proposals=None), "train", INPUT)
    with pytest.warns(MissingFrameWarning, match="1 of 2 videos"):
        rest = AvaDataset(config(copy, train_proposals=None, on_missing="skip"), "train", INPUT)
    assert len(rest) > 0 and video not in {rest.keyframe(i)[0] for i in range(len(rest))}


def test_timestamps_before_the_offset_are_reported(root, tmp_path):
    rows = read_ava_csv(root / "annotations" / "train.csv", kind="groundtruth")
    rows.timestamps[:] -= 900
    write_ava_csv(tmp_path / "gt.csv", rows, kind="groundtruth")
    with pytest.raises(ValueError, match="gt.csv: timestamp .* is before data.time_offset=900"):
        AvaDataset(config(root, train_annotations=str(tmp_path / "gt.csv"), train_proposals=None), "train", INPUT)


def test_augmented_samples_are_reproducible_and_collate_pads(root):
    augment = AugmentConfig(jitter_short_side=(100, 140), crop_size=96, flip_prob=0.5, color_jitter=0.2)
    ds = AvaDataset(config(root, augment=augment), "train", INPUT, seed=3)
    a, b = ds[0], ds[0]
    assert a.clip.shape == (3, 8, 96, 96)
    torch.testing.assert_close(a.clip, b.clip)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    ds.set_epoch(1)
    assert not torch.equal(ds[0].clip, a.clip)
    val = AvaDataset(config(root, augment=AugmentConfig(test_short_side=60)), "val", INPUT)
    small = val[0]
    batch = collate([a, small])
    assert batch.clips.shape == (2, 3, 8, 96, 96) and batch.image_sizes == [(96, 96), (60, 80)]
    # Boxes renormalized to the padded clip cover the same pixels.
    np.testing.assert_allclose(batch.boxes[1].numpy() * 96, small.boxes * [80, 60, 80, 60], rtol=1e-5)
    assert batch.labels.shape == (len(a.boxes) + len(small.boxes), len(LABELS))
    assert batch.box_clip.tolist() == [0] * len(a.boxes) + [1] * len(small.boxes)


def test_temporal_jitter_moves_train_clips_only_and_keeps_the_rest(root):
    jitter = replace(NO_AUG, temporal_jitter=3)
    plain = AvaDataset(config(root, train_proposals=None), "train", INPUT, normalize=False, seed=0)
    moved = AvaDataset(config(root, train_proposals=None, augment=jitter), "train", INPUT, normalize=False, seed=0)
    shifts = []
    for i in range(len(plain)):
        a, b = plain[i], moved[i]
        shift = b.frame_indices[INPUT.num_frames // 2] - a.frame_indices[INPUT.num_frames // 2]
        assert abs(shift) <= 3 and b.frame_index == a.frame_index  # the keyframe (and its targets) stay
        np.testing.assert_array_equal(b.original_boxes, a.original_boxes)
        np.testing.assert_array_equal(b.labels, a.labels)
        if 0 < a.frame_indices[0] and b.frame_indices[-1] < a.frame_indices[-1] + 3:  # not clamped
            np.testing.assert_array_equal(b.frame_indices, a.frame_indices + shift)
        shifts.append(int(shift))
        assert moved[i].frame_indices.tolist() == b.frame_indices.tolist()  # reproducible
    assert len(set(shifts)) >= 4  # uniform over -3..3
    moved.set_epoch(1)
    assert [int(moved[i].frame_indices[INPUT.num_frames // 2] - plain[i].frame_indices[INPUT.num_frames // 2])
            for i in range(len(plain))] != shifts
    val = AvaDataset(config(root, augment=jitter), "val", INPUT, normalize=False)
    ref = AvaDataset(config(root), "val", INPUT, normalize=False)
    for i in range(len(val)):
        np.testing.assert_array_equal(val[i].frame_indices, ref[i].frame_indices)
    with pytest.raises(ValueError, match="temporal_jitter"):
        AugmentConfig(temporal_jitter=-1)


@pytest.mark.parametrize("source", ["frames", "videos"])
def test_data_loader_with_two_workers(root, source):
    ds = AvaDataset(config(root, source=source), "train", INPUT, seed=0)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    seen = []
    for batch in loader:
        assert batch.clips.shape[1:3] == (3, 8) and len(batch.boxes) == len(batch)
        assert batch.labels.shape[0] == sum(len(b) for b in batch.boxes)
        seen += list(zip(batch.video_ids, batch.timestamps, strict=True))
    assert seen == [ds.keyframe(i)[:2] for i in range(len(ds))]
