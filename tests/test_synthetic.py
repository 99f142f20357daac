"""Tests of the synthetic AVA-format dataset: files and formats, pixel-true boxes, motion-only classes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import data_prep.synthetic as synthetic
from data_prep import synthetic_render as sr
from data_prep.synthetic import (
    SYNTHETIC_LABELS,
    PersonState,
    SyntheticScene,
    SyntheticSpec,
    annotate,
    generate_dataset,
    synthetic_label_map,
)
from detection.formats.act import read_act_groundtruth
from detection.formats.ava import read_ava_csv, read_exclusions, read_frame_list
from detection.structures import LabelMap, box_iou

SPEC = SyntheticSpec(videos=4, seconds=10.0, seed=0)  # the last video is val
STATS_SPEC = SyntheticSpec(videos=10, seconds=12.0, seed=1)  # simulated only, never drawn
STAND, WALK, RUN, JUMP, BEND, WAVE = 12, 14, 10, 7, 1, 69


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate_dataset(root, SPEC)


@pytest.fixture(scope="module")
def scenes() -> list[SyntheticScene]:
    return [SyntheticScene(STATS_SPEC, i) for i in range(STATS_SPEC.videos)]


def _bbox(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _frame_people(scenes: list[SyntheticScene], step: int = 5):
    for scene in scenes:
        for f in range(0, scene.num_frames, step):
            yield scene, f, scene.people(f)


# --------------------------------------------------------------------------------------------------
# Spec and label map


def test_label_map_and_spec():
    assert [i for i, _ in SYNTHETIC_LABELS] == [12, 14, 10, 7, 1, 69]
    label_map = synthetic_label_map()
    assert label_map.names[5] == "hand wave" and label_map.index(69) == 5
    assert SyntheticSpec(videos=1).video_ids() == ([], ["syn_s0_000"])
    assert SyntheticSpec(videos=8, seed=7).video_ids()[1] == ["syn_s7_006", "syn_s7_007"]
    assert SyntheticSpec(videos=3, val_videos=0).video_ids()[1] == []
    assert SyntheticSpec(seconds=12.0).keyframe_seconds() == list(range(2, 11))
    assert SyntheticSpec(seconds=5.0).keyframe_seconds() == [2, 3]
    for bad in (dict(videos=0), dict(width=321), dict(val_videos=5), dict(seconds=0)):
        with pytest.raises(ValueError, match="SyntheticSpec"):
            SyntheticSpec(**bad).validate()


# --------------------------------------------------------------------------------------------------
# Files


def test_every_file_exists_and_parses(dataset):
    root, manifest = dataset
    train, val = SPEC.video_ids()
    assert manifest["splits"] == {"train": train, "val": val}
    assert json.loads((root / "manifest.json").read_text()) == manifest
    assert manifest["spec"]["seconds"] == SPEC.seconds and manifest["generator_version"] >= 1
    assert LabelMap.from_pbtxt(root / "annotations" / "label_map.pbtxt").ids == synthetic_label_map().ids
    n = SPEC.num_frames
    for split, ids in (("train", train), ("val", val)):
        gt = read_ava_csv(root / "annotations" / f"{split}.csv", kind="groundtruth")
        assert len(gt) > 0 and set(gt.video_ids) <= set(ids)
        assert set(gt.action_ids) <= set(synthetic_label_map().ids) and (gt.person_ids >= 0).all()
        assert ((gt.boxes >= 0) & (gt.boxes <= 1)).all()
        proposals = read_ava_csv(root / "annotations" / f"{split}_predicted_boxes.csv", kind="detections")
        assert len(proposals) > 0 and (proposals.action_ids == -1).all()
        assert ((proposals.scores > 0) & (proposals.scores < 1)).all()
        excluded = read_exclusions(root / "annotations" / f"{split}_excluded_timestamps.csv")
        assert all(v in ids for v, _ in excluded)
        # AVA leaves the ground truth of excluded keyframes out.
        assert not excluded & {(v, int(t)) for v, t in zip(gt.video_ids, gt.timestamps, strict=True)}
        entries = read_frame_list(root / "frame_lists" / f"{split}.csv")
        assert len(entries) == n * len(ids)
        for k, vid in enumerate(ids):
            mine = [e for e in entries if e.original_video_id == vid]
            assert [e.frame_index for e in mine] == list(range(n)) and {e.video_index for e in mine} == {k}
            assert mine[0].path == f"{vid}/{vid}_000001.jpg" and mine[0].labels == '""'
            assert (root / "frames" / mine[-1].path).is_file()
    gt_tubes = read_act_groundtruth(root / "annotations" / "gt_tubes.pkl")
    assert gt_tubes.labels == list(synthetic_label_map().names)
    assert gt_tubes.train_videos == [train] and gt_tubes.test_videos == [val]
    assert gt_tubes.nframes == dict.fromkeys(train + val, n)
    assert gt_tubes.resolution == dict.fromkeys(train + val, (SPEC.height, SPEC.width))
    counts = manifest["counts"]
    assert counts["frames"] == n * SPEC.videos
    assert counts["keyframes"] == {"train": 7 * 3, "val": 7}
    assert sum(counts["boxes_per_class"].values()) == sum(
        len(read_ava_csv(root / "annotations" / f"{s}.csv", kind="groundtruth")) for s in ("train", "val"))
    assert not list(root.rglob("*.tmp*")) and not (root / ".synthetic_partial.json").exists()


def test_ground_truth_reads_like_pyslowfast_and_the_activitynet_evaluator(dataset):
    root, _ = dataset
    labels = set(synthetic_label_map().ids)
    for split in ("train", "val"):
        path = root / "annotations" / f"{split}.csv"
        keys = set()
        for line in path.read_text().splitlines():  # PySlowFast's ava_helper
            row = line.strip().split(",")
            assert len(row) == 8
            assert int(row[1]) in range(902, 1799)
            x1, y1, x2, y2 = (float(v) for v in row[2:6])
            assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
            assert int(row[6]) in labels and int(row[7]) >= 0
        with open(path, newline="") as f:  # the official evaluator
            for row in csv.reader(f):
                assert len(row) in (7, 8)
                keys.add("%s,%04d" % (row[0], int(row[1])))  # noqa: UP031 (the evaluator's key)
                assert int(row[6]) in labels and [float(v) for v in row[2:6]]
        assert all(k.split(",")[1].isdigit() and len(k.split(",")[1]) == 4 for k in keys)
        for line in (root / "annotations" / f"{split}_predicted_boxes.csv").read_text().splitlines():
            row = line.strip().split(",")  # PySlowFast's predicted-box reader: empty label, then score
            assert len(row) == 8 and row[6] == "" and 0 < float(row[7]) < 1 and int(row[1]) in range(902, 1799)
    # The official evaluator's label-map reader.
    names = {}
    name = None
    for line in (root / "annotations" / "label_map.pbtxt").read_text().splitlines():
        if line.startswith("  name:"):
            name = line.split('"')[1]
        elif line.startswith("  id:"):
            names[int(line.strip().split(" ")[-1])] = name
    assert names == dict(SYNTHETIC_LABELS)


def test_videos_and_jpegs_have_every_frame(dataset):
    from detection.video import FrameStream

    root, manifest = dataset
    n = round(SPEC.seconds * SPEC.fps)
    for vid in manifest["splits"]["train"][:1] + manifest["splits"]["val"]:
        with FrameStream(root / "videos" / f"{vid}.mp4") as stream:
            assert stream.info.fps == SPEC.fps and stream.size == (SPEC.width, SPEC.height)
            frames = [frame.index for frame in stream]
        assert frames == list(range(n))
        jpegs = sorted((root / "frames" / vid).glob("*.jpg"))
        assert len(jpegs) == n and jpegs[-1].name == f"{vid}_{n:06d}.jpg"


def test_decoded_frames_match_the_render(dataset):
    import cv2

    from detection.video import FrameStream

    root, manifest = dataset
    vid = manifest["splits"]["val"][0]
    scene = SyntheticScene(SPEC, SPEC.videos - 1)
    assert scene.video_id == vid
    jpeg = cv2.cvtColor(cv2.imread(str(root / "frames" / vid / f"{vid}_000061.jpg")), cv2.COLOR_BGR2RGB)
    with FrameStream(root / "videos" / f"{vid}.mp4", start_s=2.0, end_s=2.01) as stream:
        (decoded,) = list(stream)
    expected = scene.render(60).astype(np.float64)
    assert np.abs(jpeg - expected).mean() < 4 and np.abs(decoded.image - expected).mean() < 4


def test_act_tubes_agree_with_keyframe_ground_truth(dataset):
    root, manifest = dataset
    gt_tubes = read_act_groundtruth(root / "annotations" / "gt_tubes.pkl")
    label_map = synthetic_label_map()
    for split in ("train", "val"):
        gt = read_ava_csv(root / "annotations" / f"{split}.csv", kind="groundtruth")
        for vid, sec, box, action in zip(gt.video_ids, gt.timestamps, gt.boxes, gt.action_ids, strict=True):
            frame = (int(sec) - SPEC.time_offset) * SPEC.fps + 1  # ACT frames count from 1
            rows = [t[t[:, 0] == frame] for t in gt_tubes.gttubes[vid][label_map.index(int(action))]]
            rows = np.concatenate(rows)
            pixels = box * np.array([SPEC.width, SPEC.height] * 2)
            assert np.abs(rows[:, 1:] - pixels).max(axis=1).min() < 0.01 * SPEC.width
    for tubes in gt_tubes.gttubes.values():
        for tube_list in tubes.values():
            for tube in tube_list:  # one box per frame, contiguous
                assert tube.shape[1] == 5 and (np.diff(tube[:, 0]) == 1).all()


def test_rerun_with_the_same_spec_is_a_no_op(dataset):
    root, manifest = dataset
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and "frames" not in p.parts}
    assert generate_dataset(root, SPEC) == manifest
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    spec = SyntheticSpec(videos=2, seconds=5.0, seed=11, frames=False)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_dataset(a, spec)
    generate_dataset(b, spec)
    generate_dataset(c, SyntheticSpec(videos=2, seconds=5.0, seed=12, frames=False))
    names = [p.relative_to(a) for p in sorted(a.rglob("*")) if p.is_file() and p.suffix != ".mp4"]
    assert Path("annotations/gt_tubes.pkl") in names and Path("manifest.json") in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # The rendered frames are identical; this FFmpeg/x264 build does not always encode them to the same
    # bytes (seen even single-threaded), so the videos are compared decoded.
    from detection.video import FrameStream

    for vid in ("syn_s11_000", "syn_s11_001"):
        with FrameStream(a / "videos" / f"{vid}.mp4") as sa, FrameStream(b / "videos" / f"{vid}.mp4") as sb:
            for fa, fb in zip(sa, sb, strict=True):
                assert np.abs(fa.image.astype(np.int16) - fb.image).mean() < 2
    for name in ("annotations/train.csv", "annotations/val_predicted_boxes.csv", "annotations/gt_tubes.pkl"):
        assert (a / name).read_bytes() != (c / name).read_bytes()


def test_another_spec_replaces_the_dataset(tmp_path):
    first = SyntheticSpec(videos=2, seconds=4.0, seed=3, frames=True)
    generate_dataset(tmp_path, first)
    assert (tmp_path / "frames" / "syn_s3_001").is_dir()
    second = SyntheticSpec(videos=1, seconds=4.0, seed=4, frames=False)
    manifest = generate_dataset(tmp_path, second)
    assert manifest["spec"]["seed"] == 4
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["syn_s4_000.mp4"]
    assert not (tmp_path / "frames" / "syn_s3_001").exists()
    assert read_frame_list(tmp_path / "frame_lists" / "train.csv") == []


def test_an_interrupted_run_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    spec = SyntheticSpec(videos=3, seconds=4.0, seed=5, frames=False)
    clean = tmp_path / "clean"
    generate_dataset(clean, spec)

    root = tmp_path / "resumed"
    real = synthetic._render_video
    calls = []

    def flaky(scene, *args, **kwargs):
        calls.append(scene.video_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(scene, *args, **kwargs)

    monkeypatch.setattr(synthetic, "_render_video", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(root, spec)
    assert not (root / "manifest.json").exists()
    first_video = root / "videos" / "syn_s5_000.mp4"
    stamp = first_video.stat().st_mtime_ns
    generate_dataset(root, spec)
    assert calls[2:] == ["syn_s5_001", "syn_s5_002"]  # the finished video was kept
    assert first_video.stat().st_mtime_ns == stamp
    assert (root / "videos" / "syn_s5_002.mp4").is_file()
    for name in ("manifest.json", "annotations/train.csv", "annotations/gt_tubes.pkl"):
        assert (root / name).read_bytes() == (clean / name).read_bytes(), name


# --------------------------------------------------------------------------------------------------
# Boxes match the pixels


def test_boxes_are_tight_around_rasterised_figures():
    scene = SyntheticScene(SyntheticSpec(videos=3, seconds=12.0, seed=2), 1)
    size = np.array([scene.width, scene.height] * 2)
    checked = partial = 0
    for f in range(0, scene.num_frames, 2):
        for person in scene.people(f):
            coverage = scene.person_mask(f, person.person_id)
            box = person.box.astype(np.float64) * size
            solid, faint = _bbox(coverage >= 0.5), _bbox(coverage >= 0.15)
            # The box holds every pixel that is at least half covered and does not reach past the
            # anti-aliased fringe, within 1 px.
            assert (box[:2] <= solid[:2] + 1).all() and (box[2:] >= solid[2:] - 1).all(), (f, person)
            assert (box[:2] >= faint[:2] - 1).all() and (box[2:] <= faint[2:] + 1).all(), (f, person)
            checked += 1
            partial += person.visible_fraction < 1
    assert checked > 300 and partial > 10  # figures cut by the frame edge are checked too


def test_boxes_contain_the_figure_in_the_full_frame():
    scene = SyntheticScene(SyntheticSpec(videos=1, seconds=12.0, seed=3), 0)
    size = np.array([scene.width, scene.height] * 2)
    for f in range(0, scene.num_frames, 15):
        full = scene.render(f).astype(np.int16)
        for person in scene.people(f):
            others = [i for i in scene.person_ids if i != person.person_id]
            changed = np.abs(full - scene.render(f, people=others)).max(axis=2) > 60
            if not changed.any():
                continue  # hidden behind nearer people
            drawn, box = _bbox(changed), person.box * size
            assert (drawn[:2] >= box[:2] - 1.5).all() and (drawn[2:] <= box[2:] + 1.5).all(), (f, person)
        alone = scene.render(f, background=False)
        assert alone.any() == bool(scene.people(f))


def test_presence_and_visible_fraction(scenes):
    for scene, f, people in _frame_people(scenes[:3], step=3):
        everyone = scene.people(f, include_hidden=True)
        assert [p.person_id for p in people] == [p.person_id for p in everyone if p.visible_fraction >= 0.25]
        for p in people:
            assert isinstance(p, PersonState) and p.box.dtype == np.float32 and p.box.shape == (4,)
            assert (p.box >= 0).all() and (p.box <= 1).all() and (p.box[2:] > p.box[:2]).all()
            full = scene.pixel_box(f, p.person_id)
            clipped = np.clip(full, 0, [scene.width, scene.height] * 2)
            area = np.prod(full[2:] - full[:2])
            assert p.visible_fraction == pytest.approx(np.prod(clipped[2:] - clipped[:2]) / area, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# What happens in the videos


def test_classes_cooccurrence_entries_exits_and_occlusions(scenes):
    rows = [row for scene in scenes for row in annotate(scene).gt]
    per_class = {a: sum(r[2] == a for r in rows) for a, _ in SYNTHETIC_LABELS}
    assert min(per_class.values()) >= 0.05 * len(rows), per_class
    boxes_with_two = {(s, p) for s, _, a, p in rows if a == WAVE}
    assert boxes_with_two and all(any(r[0] == s and r[3] == p and r[2] in (STAND, WALK) for r in rows)
                                  for s, p in boxes_with_two)
    counts, entries, exits, occlusions = [], 0, 0, 0
    for scene in scenes:
        tracks = scene.label_tracks()
        for first, move, wave, present in tracks.values():
            entries += first > 0 and not present[0]
            exits += first + len(move) < scene.num_frames and not present[-1]
            assert set(np.unique(move)) <= {STAND, WALK, RUN, JUMP, BEND}  # exactly one movement
            assert not (wave & ~np.isin(move, [STAND, WALK])).any()
        for f in range(0, scene.num_frames, 5):
            people = scene.people(f)
            counts.append(len(people))
            boxes = np.array([p.box for p in people]).reshape(-1, 4)
            iou = box_iou(boxes, boxes)
            occlusions += int((iou[np.triu_indices(len(people), 1)] > 0.2).any())
        alive = np.zeros(scene.num_frames, int)
        for first, move, _, _ in tracks.values():
            alive[first:first + len(move)] += 1
        assert alive.max() <= scene.spec.max_people
    assert entries >= 10 and exits >= 10 and occlusions >= 20
    counts = np.bincount(counts, minlength=5)
    assert counts[2:5].sum() >= 0.75 * counts.sum()


def test_excluded_keyframes_are_heavy_overlaps(scenes):
    total = 0
    for scene in scenes:
        ann = annotate(scene)
        total += len(ann.excluded)
        for sec in scene.spec.keyframe_seconds():
            boxes = np.array([p.box for p in scene.people(sec * scene.fps)]).reshape(-1, 4)
            iou = box_iou(boxes, boxes)
            np.fill_diagonal(iou, 0)
            assert (sec in ann.excluded) == bool(len(boxes) > 1 and iou.max() > 0.6)
            assert (sec in ann.excluded) != any(r[0] == sec for r in ann.gt) or not len(boxes)
    assert 0 < total < 0.2 * len(scenes) * len(STATS_SPEC.keyframe_seconds())


def test_proposals_look_like_a_detector(scenes):
    matched_scores, false_scores, found, people = [], [], 0, 0
    keyframes_with_proposals = set()
    for scene in scenes:
        ann = annotate(scene)
        keyframes_with_proposals |= {(scene.video_id, s) for s, _, _ in ann.proposals}
        for sec in scene.spec.keyframe_seconds():
            truth = np.array([p.box for p in scene.people(sec * scene.fps)]).reshape(-1, 4)
            mine = [(b, s) for t, b, s in ann.proposals if t == sec]
            boxes = np.array([b for b, _ in mine]).reshape(-1, 4)
            iou = box_iou(truth, boxes)
            people += len(truth)
            found += int((iou >= 0.5).any(axis=1).sum()) if len(boxes) else 0
            best = iou.max(axis=0) if len(truth) else np.zeros(len(boxes))
            matched_scores += [s for (_, s), v in zip(mine, best, strict=True) if v >= 0.5]
            false_scores += [s for (_, s), v in zip(mine, best, strict=True) if v < 0.3]
    assert 0.85 <= found / people <= 0.97  # some people are missed
    assert len(false_scores) >= 0.05 * len(matched_scores)
    assert np.median(matched_scores) > 0.85 and np.median(false_scores) < 0.4
    assert np.std(matched_scores) > 0.02  # varied, not a constant
    excluded = {(s.video_id, sec) for s in scenes for sec in annotate(s).excluded}
    assert excluded <= keyframes_with_proposals  # excluded keyframes get proposals too


def test_poses_change_smoothly(scenes):
    for scene in scenes[:5]:
        for pid in scene.person_ids:
            first, _ = scene.pose_track(pid)
            _, move, _, _ = scene.label_tracks()[pid]
            joints = np.stack([scene.joints(first + i, pid) for i in range(len(move))])
            step = np.linalg.norm(np.diff(joints, axis=0), axis=2).max() / scene.person_height(pid)
            assert step < 0.3, (scene.video_id, pid, step)  # body heights per frame: no pops


def test_one_frame_does_not_tell_the_action(scenes):
    """Per-frame pose features of the other classes mostly fall inside the range that standing covers."""

    def features(scene: SyntheticScene, f: int, pid: int) -> np.ndarray:
        j = scene.joints(f, pid) / scene.person_height(pid)
        torso = j[sr.NECK] - j[sr.PELVIS]
        return np.array([
            abs(j[sr.FOOT_N, 0] - j[sr.FOOT_F, 0]),  # stride
            np.degrees(np.arctan2(abs(torso[0]), -torso[1])),  # torso pitch
            max(j[sr.SHOULDER, 1] - j[sr.HAND_N, 1], j[sr.SHOULDER, 1] - j[sr.HAND_F, 1]),  # hand height
            np.linalg.norm(j[sr.FOOT_N] - j[sr.PELVIS]),  # leg reach: knee bend
        ])

    per_class: dict[int, list[np.ndarray]] = {a: [] for a, _ in SYNTHETIC_LABELS}
    for scene, f, people in _frame_people(scenes, step=3):
        for p in people:
            per_class[WAVE if WAVE in p.actions else p.actions[0]].append(features(scene, f, p.person_id))
    stand = np.array(per_class[STAND])
    lo, hi = stand.min(axis=0), stand.max(axis=0)
    for action in (WALK, RUN, JUMP, BEND, WAVE):
        frames = np.array(per_class[action])
        inside = ((frames >= lo) & (frames <= hi)).all(axis=1).mean()
        assert inside >= 0.35, (action, inside)


def test_figures_look_alike_whatever_they_do(scenes):
    """Colours and sizes are drawn per person, independently of the actions."""
    heights: dict[int, list[float]] = {a: [] for a in (STAND, WALK, RUN, JUMP, BEND)}
    for scene in scenes:
        for pid, (_, move, _, present) in scene.label_tracks().items():
            for action, frames in heights.items():  # one entry per frame shown doing it
                frames += [scene.person_height(pid) / scene.height] * int((present & (move == action)).sum())
    means = [np.mean(h) for h in heights.values()]
    assert max(means) - min(means) < 0.06, means


def test_rendering_is_deterministic_and_textured():
    scene = SyntheticScene(SyntheticSpec(seed=9), 2)
    again = SyntheticScene(SyntheticSpec(seed=9), 2)
    assert np.array_equal(scene.render(45), again.render(45))
    background = scene.background(45).astype(np.float64)
    assert background.std() > 8  # texture, not a flat colour
    later = scene.background(scene.num_frames - 1).astype(np.float64)
    assert np.abs(background - later).mean() > 2  # the camera pans
    spread = background.max(axis=2) - background.min(axis=2)
    assert spread.max() <= 70  # washed-out colours only; the figures are saturated
