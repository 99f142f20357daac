"""The streaming tube linker: tracks + temporal labels → contiguous action tubes."""

import numpy as np
import pytest

from data_prep.synthetic import SyntheticScene, SyntheticSpec, annotate, synthetic_label_map
from detection.formats.act import ActGroundTruth
from detection.formats.tubes import VideoTubes, write_tubes_json
from detection.structures import KeyframeDetections, LabelMap, Tube
from detection.tubes.linker import LinkerConfig, TubeLinker, link_offline, spatiotemporal_iou, tube_score
from eval.tube_inputs import read_detected_tubes
from eval.video_map import evaluate_video_map

LABELS = LabelMap.from_pairs([(3, "talk"), (7, "walk"), (11, "wave")])


def _kf(frame: int, boxes, scores, fps: float = 30.0, person=None, track_ids=None, video="v") -> KeyframeDetections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    person = np.full(len(boxes), 0.9) if person is None else person
    scores = np.asarray(scores, np.float32).reshape(len(boxes), -1 if len(boxes) else len(LABELS))
    return KeyframeDetections(video, frame, frame / fps, boxes, person, scores, track_ids)


def _box(cx, cy=0.5, w=0.08, h=0.3):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _link(keyframes, config=None, fps=30.0, **kwargs) -> list[Tube]:
    linker = TubeLinker(LABELS, fps, config=config or LinkerConfig(), **kwargs)
    tubes = []
    for kf in keyframes:
        tubes += linker.update(kf)
    return tubes + linker.finish()


def _two_people(stride=1, frames=300):
    """Person A talks all along and walks in the first half; person B waves from frame 100 on."""
    out = []
    for f in range(0, frames, stride):
        a = [0.05, 0.9 if f < 150 else 0.1, 0.02]
        b = [0.05, 0.03, 0.9 if f >= 100 else 0.1]
        a[0] = 0.9
        out.append(_kf(f, [_box(0.1 + 0.6 * f / frames), _box(0.75 - 0.6 * f / frames, 0.52)], [a, b]))
    return out


@pytest.mark.parametrize("stride", [1, 6, 30])
def test_two_people_several_actions(stride):
    tubes = _link(_two_people(stride))
    got = sorted((t.track_id, t.label) for t in tubes)
    assert got == [(1, 3), (1, 7), (2, 11)]  # two simultaneous actions of one person: two tubes, one track
    for t in tubes:
        assert t.is_contiguous and len(t.boxes) == len(t.frames) == len(t.scores)
    walk = next(t for t in tubes if t.label == 7)
    last_walk_keyframe = max(f for f in range(0, 300, stride) if f < 150)
    assert walk.start_frame == 0 and walk.end_frame == min(last_walk_keyframe + stride // 2, 299 + stride // 2)


def test_extension_and_clipping():
    kfs = [_kf(f, [_box(0.5)], [[0.9, 0.1, 0.1]]) for f in range(0, 100, 10)]
    tube = _link(kfs, num_frames=95)[0]
    assert (tube.start_frame, tube.end_frame) == (0, 94)  # 90 + 5, clipped to the video
    tube = _link(kfs, LinkerConfig(extend=False))[0]
    assert (tube.start_frame, tube.end_frame) == (0, 90)
    tube = _link(kfs[3:], keyframe_stride=10)[0]
    assert (tube.start_frame, tube.end_frame) == (25, 95)


def test_occluded_person_is_interpolated_across_the_gap():
    kfs = []
    for f in range(0, 120, 4):
        seen = not 40 <= f < 72  # hidden for about a second
        kfs.append(_kf(f, [_box(0.2 + 0.004 * f)] if seen else np.zeros((0, 4)), [[0.9, 0.1, 0.1]] if seen else
                       np.zeros((0, 3))))
    tubes = _link(kfs, LinkerConfig(max_gap_s=1.5, extend=False))
    assert len(tubes) == 1
    tube = tubes[0]
    assert tube.is_contiguous and (tube.start_frame, tube.end_frame) == (0, 116)
    centre = (tube.boxes[:, 0] + tube.boxes[:, 2]) / 2
    np.testing.assert_allclose(centre, 0.2 + 0.004 * tube.frames, atol=1e-5)  # linear across the gap


def test_switch_penalty_suppresses_flicker():
    scores = np.full(40, 0.1)
    scores[[5, 17, 18]] = 0.9  # isolated blips
    scores[24:29] = 0.9  # a real run...
    scores[26] = 0.35  # with a dip
    kfs = [_kf(f, [_box(0.5)], [[s, 0.05, 0.05]], fps=1.0) for f, s in enumerate(scores)]  # 1 Hz
    strict = _link(kfs, LinkerConfig(switch_penalty=3.0, extend=False), fps=1.0)
    assert [(t.start_frame, t.end_frame) for t in strict] == [(24, 28)]
    loose = _link(kfs, LinkerConfig(switch_penalty=0.0, extend=False), fps=1.0)
    assert [(t.start_frame, t.end_frame) for t in loose] == [(5, 5), (17, 18), (24, 25), (27, 28)]


@pytest.mark.parametrize("rate", [1, 5, 30])
def test_switch_penalty_is_per_second_of_evidence(rate):
    """The same scores sampled at 1, 5 or 30 keyframes a second give the same action (in seconds)."""

    def score(t):
        if 2.4 <= t < 2.6:
            return 0.9  # a 0.2 s blip: noise
        if 5.0 <= t < 8.0:
            return 0.1 if 6.4 <= t < 6.6 else 0.9  # a 3 s action with a 0.2 s dip
        return 0.1

    fps = 30.0
    stride = int(fps) // rate
    kfs = [_kf(f, [_box(0.5)], [[score(f / fps), 0.05, 0.05]]) for f in range(0, 300, stride)]
    tubes = _link(kfs, LinkerConfig(switch_penalty=0.7, extend=False), fps=fps)
    assert [(t.start_frame / fps, (t.end_frame + stride) / fps) for t in tubes] == [(5.0, 8.0)]

def test_min_length_and_tube_scores():
    scores = [0.1] * 3 + [0.6, 0.9, 0.7, 0.8] + [0.1] * 3 + [0.95] + [0.1] * 3
    kfs = [_kf(f, [_box(0.5)], [[s, 0.05, 0.05]]) for f, s in enumerate(scores)]
    base = LinkerConfig(switch_penalty=0.0, extend=False)
    assert len(_link(kfs, base)) == 2
    kept = _link(kfs, LinkerConfig(switch_penalty=0.0, extend=False, min_frames=2))
    assert [(t.start_frame, t.end_frame) for t in kept] == [(3, 6)]
    for mode, expected in (("top-half", (0.9 + 0.8) / 2), ("mean", 0.75), ("max", 0.9)):
        cfg = LinkerConfig(switch_penalty=0.0, extend=False, min_frames=2, tube_score=mode)
        assert _link(kfs, cfg)[0].score == pytest.approx(expected)
    assert tube_score(np.array([0.1, 0.5, 0.9]), "top-half") == pytest.approx(0.7)  # best ceil(3/2) = 2
    with pytest.raises(ValueError, match="tube_score"):
        LinkerConfig(tube_score="median")


def test_tube_nms_keeps_the_best_of_duplicates():
    # A detector that fires twice on one person (shifted boxes, both high): two tracks, same action.
    kfs = []
    for f in range(0, 60, 2):
        boxes = [_box(0.3 + 0.002 * f), _box(0.305 + 0.002 * f), _box(0.8)]
        kfs.append(_kf(f, boxes, [[0.9, 0.1, 0.1], [0.7, 0.1, 0.1], [0.8, 0.1, 0.1]]))
    without = _link(kfs, LinkerConfig(match_iou=0.9, low_match_iou=0.9))
    assert len(without) == 3
    tubes = _link(kfs, LinkerConfig(match_iou=0.9, low_match_iou=0.9, nms_iou=0.5))
    assert sorted(round(t.score, 3) for t in tubes) == [0.8, 0.9]  # the 0.7 duplicate is gone, the other person stays
    a, b = without[0], without[1]
    assert spatiotemporal_iou(a, b) == pytest.approx(spatiotemporal_iou(b, a)) and spatiotemporal_iou(a, a) == 1.0


def test_nms_streams_like_the_end_result():
    rng = np.random.default_rng(5)
    kfs = []
    for f in range(0, 600, 3):
        boxes = [_box(0.2 + 0.0005 * f), _box(0.21 + 0.0005 * f), _box(0.7)]
        scores = np.clip(rng.normal([[0.8, 0.2, 0.5]] * 3, 0.2), 0, 1)
        kfs.append(_kf(f, boxes, scores))
    cfg = LinkerConfig(match_iou=0.95, low_match_iou=0.95, nms_iou=0.3, lag=4)
    linker = TubeLinker(LABELS, 30.0, config=cfg)
    streamed, when = [], []
    for kf in kfs:
        new = linker.update(kf)
        streamed += new
        when += [kf.frame_index] * len(new)
    streamed += linker.finish()
    assert any(w < 550 for w in when)  # tubes come out before the end
    # Fast NMS over everything at the end gives the same set.
    everything = _link(kfs, LinkerConfig(match_iou=0.95, low_match_iou=0.95, lag=4))
    keep = [t for i, t in enumerate(everything) if not any(
        o.label == t.label and (o.score > t.score or (o.score == t.score and j < i)) and spatiotemporal_iou(o, t) > 0.3
        for j, o in enumerate(everything))]
    key = sorted((t.label, t.track_id, t.start_frame, t.end_frame) for t in keep)
    assert sorted((t.label, t.track_id, t.start_frame, t.end_frame) for t in streamed) == key


def test_online_linker_equals_offline_when_the_lag_covers_every_track():
    rng = np.random.default_rng(1)
    kfs = []
    for f in range(0, 50):
        boxes = [_box(0.2 + 0.002 * f), _box(0.7 - 0.002 * f, 0.55)]
        kfs.append(_kf(f * 5, boxes, rng.random((2, 3))))
    offline = link_offline(kfs, LABELS, 30.0, config=LinkerConfig(switch_penalty=1.0))
    online = _link(kfs, LinkerConfig(switch_penalty=1.0, lag=63))
    assert len(offline) > 4
    key = [(t.track_id, t.label, t.start_frame, t.end_frame, t.score) for t in offline]
    assert sorted(key) == sorted((t.track_id, t.label, t.start_frame, t.end_frame, t.score) for t in online)


def test_streaming_state_stays_bounded():
    rng = np.random.default_rng(2)
    cfg = LinkerConfig(lag=6, max_gap_s=0.5)
    linker = TubeLinker(LABELS, 30.0, config=cfg, keep_tracks=True, keep_keyframes=True)
    peak: dict[str, int] = {}
    num_tubes = 0
    for k in range(6000):  # 100 min at 1 keyframe / s... no: 6000 keyframes, people come and go every 40
        f = 3 * k
        people = [(k // 40 + j) for j in range(3)]  # each person stays 120 keyframes
        boxes = [_box(0.15 + 0.3 * (p % 3) + 0.001 * (k % 40)) for p in people]
        scores = np.where(rng.random((3, 3)) < 0.1, 0.9, 0.05)
        scores[:, 0] = np.where((k // 15) % 2 == 0, 0.9, 0.1)  # actions start and stop
        num_tubes += len(linker.update(_kf(f, boxes, scores)))
        linker.pop_track_pieces()
        linker.pop_keyframes()
        for key, value in linker.stats().items():
            peak[key] = max(peak.get(key, 0), value)
    num_tubes += len(linker.finish())
    assert num_tubes > 500
    assert peak["live_tracks"] <= 8 and peak["slots"] <= 16 and peak["tracker_tracks"] <= 8
    assert peak["ring_length"] <= 64 and peak["recent_keyframes"] <= 2 and peak["kept_keyframes"] <= 8 * 64


def test_track_pieces_and_tracked_keyframes():
    kfs = _two_people(stride=3, frames=600)
    linker = TubeLinker(LABELS, 30.0, keep_tracks=True, keep_keyframes=True)
    pieces, tracked = [], []
    for kf in kfs:
        linker.update(kf)
        pieces += linker.pop_track_pieces()
        tracked += linker.pop_keyframes()
    linker.finish()
    pieces += linker.pop_track_pieces()
    tracked += linker.pop_keyframes()
    assert [kf.frame_index for kf in tracked] == [kf.frame_index for kf in kfs]
    assert all(kf.track_ids.tolist() == [1, 2] for kf in tracked)  # the first one backfilled
    for tid in (1, 2):
        frames = np.concatenate([p.frames for p in pieces if p.track_id == tid])
        np.testing.assert_array_equal(frames, np.arange(0, 598))  # contiguous, no overlap
    assert len(pieces) > 2  # handed out while the video goes on


def test_given_track_ids_are_kept():
    kfs = [_kf(f, [_box(0.3), _box(0.32)], [[0.9, 0.1, 0.1], [0.1, 0.9, 0.1]], track_ids=[5, 9])
           for f in range(0, 30, 3)]
    tubes = _link(kfs)
    assert sorted((t.track_id, t.label) for t in tubes) == [(5, 3), (9, 7)]


def test_default_lag_is_two_seconds_of_keyframes():
    for stride, lag in ((30, 2), (6, 10), (1, 60)):
        assert TubeLinker(LABELS, 30.0, keyframe_stride=stride).lag == lag
    linker = TubeLinker(LABELS, 30.0, config=LinkerConfig(lag=5))
    assert linker.update(_kf(0, [_box(0.3)], [[0.9, 0.1, 0.1]])) == []  # held until the stride is known
    linker.update(_kf(3, [_box(0.3)], [[0.9, 0.1, 0.1]]))
    assert linker.lag == 5 and linker.keyframe_stride is None
    assert len(linker.finish()) == 1


def test_bad_keyframes():
    linker = TubeLinker(LABELS, 30.0)
    linker.update(_kf(10, [_box(0.3)], [[0.9, 0.1, 0.1]]))
    with pytest.raises(ValueError, match="does not come after"):
        linker.update(_kf(10, [_box(0.3)], [[0.9, 0.1, 0.1]]))
    with pytest.raises(ValueError, match="call finish"):
        linker.update(_kf(20, [_box(0.3)], [[0.9, 0.1, 0.1]], video="w"))
    with pytest.raises(ValueError, match="label map has 3"):
        linker.update(_kf(20, [_box(0.3)], [[0.9, 0.1]]))
    linker.finish()
    linker.update(_kf(0, [_box(0.3)], [[0.9, 0.1, 0.1]], video="w"))  # another video after finish()
    with pytest.raises(ValueError, match="lag"):
        LinkerConfig(lag=64)


def test_perfect_detections_give_video_map_one(tmp_path):
    """Ground-truth boxes and labels on every frame of a synthetic video: tubes equal the ground truth."""
    spec = SyntheticSpec(videos=2, seconds=8.0, seed=3, val_videos=2, frames=False)
    label_map = synthetic_label_map()
    gttubes, videos = {}, []
    for index in range(spec.videos):
        scene = SyntheticScene(spec, index)
        gttubes[scene.video_id] = annotate(scene).tubes
        linker = TubeLinker(label_map, spec.fps, num_frames=spec.num_frames)
        tubes = []
        for f in range(spec.num_frames):
            people = scene.people(f)
            scores = np.zeros((len(people), len(label_map)), np.float32)
            for k, p in enumerate(people):
                scores[k, [label_map.index(a) for a in p.actions]] = 1.0
            boxes = np.array([p.box for p in people], np.float32).reshape(-1, 4)
            tubes += linker.update(KeyframeDetections(scene.video_id, f, f / spec.fps, boxes, np.ones(len(people)),
                                                      scores))
        tubes += linker.finish()
        assert all(t.is_contiguous for t in tubes)
        videos.append(VideoTubes(scene.video_id, spec.fps, spec.width, spec.height,
                                 dict(zip(label_map.ids, label_map.names, strict=True)), tubes))
    ids = list(gttubes)
    gt = ActGroundTruth(labels=list(label_map.names), gttubes=gttubes, nframes=dict.fromkeys(ids, spec.num_frames),
                        resolution=dict.fromkeys(ids, (spec.height, spec.width)), train_videos=[[]], test_videos=[ids])
    write_tubes_json(tmp_path / "tubes.json", videos)
    result = evaluate_video_map(gt, read_detected_tubes(tmp_path / "tubes.json", gt), protocol="act")
    assert result.video_map("0.5") == 1.0 and result.video_map("0.75") == 1.0
