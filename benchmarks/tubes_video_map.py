"""Video-mAP of linked tubes on the synthetic dataset's ground-truth tubes (ACT protocol).

The dataset: ``data_prep.synthetic.generate_dataset`` (default 4 videos x 20 s, all in the val split; the
ground-truth tubes are its ``annotations/gt_tubes.pkl``). The keyframe detections are simulated from the
scene with a fixed seed, as a decent detector + action model would give them: each present person is
missed with probability 10 %, boxes are jittered (sigma = 5 % of the box size per coordinate) and scored
``clip(N(0.85, 0.1))``; the person's true classes score ``clip(N(0.75, 0.15))`` and the others
``clip(|N(0, 0.12)|)``, except that a movement class is confused with another one 10 % of the time (the
wrong one scores high, the right one low); false-positive boxes (0.2 per keyframe) score low. Keyframes
at 1 Hz (every 30th frame) and on every 6th frame. Linked by ``TubeLinker`` with the default
``LinkerConfig``, written as the tubes JSON, read back and evaluated by
``eval.video_map.evaluate_video_map`` (protocol ``act``). Rows: the default, without the half-interval
extension, offline labelling, and perfect detections (the truth at the keyframes: what tracking and
keyframe sampling alone cost).

Usage: python benchmarks/tubes_video_map.py [--data outputs/bench/synthetic_tubes] [--videos 4 --seconds 20]
                                            [--seed 0] [KEY=VALUE config overrides]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_prep.synthetic import SyntheticScene, SyntheticSpec, generate_dataset, synthetic_label_map  # noqa: E402
from detection.config import apply_overrides, config_from_dict, config_to_dict  # noqa: E402
from detection.formats.act import read_act_groundtruth  # noqa: E402
from detection.formats.tubes import VideoTubes, write_tubes_json  # noqa: E402
from detection.structures import KeyframeDetections, LabelMap  # noqa: E402
from detection.tubes.linker import LinkerConfig, TubeLinker  # noqa: E402
from eval.tube_inputs import read_detected_tubes  # noqa: E402
from eval.video_map import evaluate_video_map  # noqa: E402

MOVES = (12, 14, 15, 16, 17)  # the mutually exclusive movement classes of the synthetic set (AVA ids)


def simulate(scene: SyntheticScene, stride: int, label_map: LabelMap, rng: np.random.Generator,
             perfect: bool = False) -> list[KeyframeDetections]:
    """Noisy keyframe detections of a scene on frames 0, stride, 2 * stride, ... (``perfect``: the truth)."""
    out = []
    c = len(label_map)
    move_cols = [label_map.index(i) for i in MOVES if i in label_map]
    for f in range(0, scene.num_frames, stride):
        boxes, person, scores = [], [], []
        if perfect:
            people = scene.people(f)
            truth = np.zeros((len(people), c), np.float32)
            for k, p in enumerate(people):
                truth[k, [label_map.index(a) for a in p.actions]] = 1.0
            out.append(KeyframeDetections(scene.video_id, f, f / scene.fps, np.array([p.box for p in people]).reshape(
                -1, 4), np.ones(len(people)), truth))
            continue
        for p in scene.people(f):
            if rng.random() < 0.1:
                continue
            size = np.tile(p.box[2:] - p.box[:2], 2)
            boxes.append(p.box + rng.normal(0, 0.05, 4) * size)
            person.append(np.clip(rng.normal(0.85, 0.1), 0.05, 1.0))
            s = np.abs(rng.normal(0.0, 0.12, c))
            true = [label_map.index(a) for a in p.actions]
            s[true] = rng.normal(0.75, 0.15, len(true))
            if rng.random() < 0.1:  # a movement confused with another
                right = [k for k in true if k in move_cols]
                wrong = rng.choice([k for k in move_cols if k not in right])
                s[wrong], s[right] = s[right][0] if right else 0.75, np.abs(rng.normal(0.0, 0.12, len(right)))
            scores.append(np.clip(s, 0.0, 1.0))
        for _ in range(rng.poisson(0.2)):
            w, h = rng.uniform(0.05, 0.2), rng.uniform(0.2, 0.5)
            x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            boxes.append(np.array([x, y, x + w, y + h]))
            person.append(rng.uniform(0.1, 0.7))
            scores.append(np.clip(np.abs(rng.normal(0.0, 0.2, c)), 0, 1))
        b = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, 1)
        b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], axis=1)
        out.append(KeyframeDetections(scene.video_id, f, f / scene.fps, b, np.asarray(person),
                                      np.asarray(scores, np.float32).reshape(-1, c)))
    return out


def run(spec: SyntheticSpec, gt, videos: list[str], stride: int, config: LinkerConfig, seed: int,
        offline: bool = False, perfect: bool = False) -> dict[str, float]:
    label_map = synthetic_label_map()
    labels = dict(zip(label_map.ids, label_map.names, strict=True))
    out = []
    for index in range(spec.videos):
        scene = SyntheticScene(spec, index)
        if scene.video_id not in videos:
            continue
        rng = np.random.default_rng([seed, index, stride])
        linker = TubeLinker(label_map, spec.fps, stride, config, num_frames=spec.num_frames, offline=offline)
        tubes = []
        for kf in simulate(scene, stride, label_map, rng, perfect):
            tubes += linker.update(kf)
        tubes += linker.finish()
        out.append(VideoTubes(scene.video_id, float(spec.fps), spec.width, spec.height, labels, tubes))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tubes.json"
        write_tubes_json(path, out)
        result = evaluate_video_map(gt, read_detected_tubes(path, gt), protocol="act")
    return {key: result.video_map(key) for key in ("0.2", "0.5", "0.75")} | {
        "tubes": sum(len(v.tubes) for v in out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "outputs" / "bench" / "synthetic_tubes"))
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the dataset and of the simulated detections")
    parser.add_argument("--strides", default="30,6", help="keyframe strides, comma-separated (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="only the default configuration")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="LinkerConfig fields, e.g. lag=4")
    args = parser.parse_args()
    spec = SyntheticSpec(videos=args.videos, seconds=args.seconds, seed=args.seed, val_videos=args.videos,
                         frames=False)
    manifest = generate_dataset(args.data, spec)
    gt = read_act_groundtruth(Path(args.data) / "annotations" / "gt_tubes.pkl")
    videos = manifest["splits"]["val"]
    config = config_from_dict(LinkerConfig, apply_overrides(config_to_dict(LinkerConfig()), args.overrides))
    num_gt = sum(len(t) for v in videos for t in gt.gttubes[v].values())
    print(f"synthetic: {len(videos)} videos x {args.seconds:g} s, {num_gt} ground-truth tubes; video-mAP (act)")
    print(f"{'keyframes':<18}{'variant':<22}{'@0.2':>7}{'@0.5':>7}{'@0.75':>7}{'tubes':>7}")
    variants = [("default", config, False, False)]
    if not args.quick:
        no_ext = config_from_dict(LinkerConfig, {**config_to_dict(config), "extend": False})
        variants += [("no extension", no_ext, False, False), ("offline labelling", config, True, False),
                     ("perfect detections", config, False, True)]
    for stride in [int(x) for x in args.strides.split(",")]:
        name = "1 Hz" if stride == spec.fps else f"every {stride}th frame"
        for label, cfg, offline, perfect in variants:
            r = run(spec, gt, videos, stride, cfg, args.seed, offline, perfect)
            print(f"{name:<18}{label:<22}{100 * r['0.2']:>7.1f}{100 * r['0.5']:>7.1f}{100 * r['0.75']:>7.1f}"
                  f"{r['tubes']:>7}")


if __name__ == "__main__":
    main()
