"""Identity quality of the tracker on real pedestrian tracks (MOTChallenge TUD-Stadtmitte and TUD-Campus).

The ground truth ships with ``motmetrics`` (``motmetrics/data/<seq>/gt.txt``, 640x480, 25 fps). A detector
is simulated from it with a fixed seed: each person is missed with probability 20 %, found boxes are
jittered (every coordinate by a normal with sigma = 5 % of the box's width or height) and scored
``clip(N(0.75, 0.15))``; false positives (5 % of the true boxes, Poisson) are boxes of a size taken from
the frame's people, anywhere in the image, scored ``U(0.05, 0.7)``. The tracker (through the tube linker,
which interpolates every frame between keyframes) sees every frame, or every 5th frame; its tracks are
written as MOTChallenge txt and scored against the whole ground truth by ``motmetrics`` (IoU >= 0.5):
IDF1, MOTA, identity switches. One config for everything (the defaults of ``LinkerConfig``).

Usage: python benchmarks/tubes_mot.py [--seed 0] [--strides 1,5] [--seeds 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if not hasattr(np, "asfarray"):  # motmetrics 1.4.0 calls np.asfarray, removed in NumPy 2
    np.asfarray = lambda a, dtype=np.float64: np.asarray(a, dtype=dtype)  # noqa: NPY201

import motmetrics as mm  # noqa: E402

from detection.config import apply_overrides, config_from_dict  # noqa: E402
from detection.structures import KeyframeDetections, LabelMap  # noqa: E402
from detection.tubes.io import MotWriter, read_mot_txt  # noqa: E402
from detection.tubes.linker import LinkerConfig, TubeLinker  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 480, 25.0
SEQUENCES = ("TUD-Stadtmitte", "TUD-Campus")
GOAL_IDF1 = 0.85  # TUD-Stadtmitte, every frame


def simulate_detector(gt, rng: np.random.Generator, miss: float = 0.2, jitter: float = 0.05,
                      false_positives: float = 0.05) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per 0-based frame: (normalized xyxy boxes (N, 4), scores (N,)), as a noisy detector would give."""
    out = {}
    for frame in range(int(gt.frames.max()) + 1):
        sel = gt.frames == frame
        boxes = gt.boxes[sel].astype(np.float64)
        size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        found = rng.random(len(boxes)) >= miss
        det = boxes[found] + rng.normal(0.0, jitter, (int(found.sum()), 4)) * size[found]
        scores = np.clip(rng.normal(0.75, 0.15, len(det)), 0.05, 1.0)
        num_fp = rng.poisson(false_positives * len(boxes))
        if num_fp and len(boxes):
            wh = (boxes[:, 2:] - boxes[:, :2])[rng.integers(len(boxes), size=num_fp)]
            xy = rng.uniform(0.0, 1.0, (num_fp, 2)) * (1.0 - wh)
            det = np.concatenate([det, np.concatenate([xy, xy + wh], axis=1)])
            scores = np.concatenate([scores, rng.uniform(0.05, 0.7, num_fp)])
        det = np.concatenate([np.minimum(det[:, :2], det[:, 2:]), np.maximum(det[:, :2], det[:, 2:])], axis=1)
        out[frame] = (det.astype(np.float32), scores.astype(np.float32))
    return out


def track(detections: dict, stride: int, config: LinkerConfig, out_path: Path) -> None:
    """Run the linker (class-agnostic: no action classes) on every ``stride``-th frame; write MOT txt."""
    linker = TubeLinker(LabelMap((), ()), FPS, keyframe_stride=stride, config=config, keep_tracks=True)
    with MotWriter(out_path, WIDTH, HEIGHT) as writer:
        for frame in range(0, len(detections), stride):
            boxes, scores = detections[frame]
            linker.update(KeyframeDetections("seq", frame, frame / FPS, boxes, scores, np.zeros((len(boxes), 0))))
            for piece in linker.pop_track_pieces():
                writer.write(piece)
        linker.finish()
        for piece in linker.pop_track_pieces():
            writer.write(piece)


def evaluate(gt_path: Path, hyp_path: Path) -> dict[str, float]:
    gt = mm.io.loadtxt(str(gt_path), fmt="mot15-2D", min_confidence=1)
    hyp = mm.io.loadtxt(str(hyp_path), fmt="mot15-2D")
    acc = mm.utils.compare_to_groundtruth(gt, hyp, "iou", distth=0.5)
    mh = mm.metrics.create()
    summary = mh.compute(acc, metrics=["idf1", "mota", "num_switches", "num_false_positives", "num_misses",
                                       "num_unique_objects", "mostly_tracked"], name="seq")
    return {k: float(v) for k, v in summary.loc["seq"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="first detector-simulation seed")
    parser.add_argument("--seeds", type=int, default=5, help="simulations per sequence (mean and range reported)")
    parser.add_argument("--strides", default="1,5", help="keyframe strides, comma-separated (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="LinkerConfig fields, e.g. max_gap_s=1")
    args = parser.parse_args()
    config = config_from_dict(LinkerConfig, apply_overrides({}, args.overrides))
    fields = args.overrides
    data = Path(mm.__file__).parent / "data"
    print(f"tracker on simulated detections (20 % missed, 5 % false positives, 5 % box jitter), "
          f"{args.seeds} seeds; config overrides: {fields or 'none'}")
    print(f"{'sequence':<16}{'stride':>7}{'IDF1':>8}{'(min-max)':>14}{'MOTA':>8}{'ID sw':>7}{'FP':>7}{'FN':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for seq in SEQUENCES:
            gt_path = data / seq / "gt.txt"
            gt = read_mot_txt(gt_path, WIDTH, HEIGHT)
            for stride in [int(x) for x in args.strides.split(",")]:
                results = []
                for seed in range(args.seed, args.seed + args.seeds):
                    detections = simulate_detector(gt, np.random.default_rng(seed))
                    hyp = Path(tmp) / f"{seq}_{stride}_{seed}.txt"
                    track(detections, stride, config, hyp)
                    results.append(evaluate(gt_path, hyp))
                idf1 = [r["idf1"] for r in results]
                mean = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
                print(f"{seq:<16}{stride:>7}{mean['idf1']:>8.3f}{f'({min(idf1):.3f}-{max(idf1):.3f})':>14}"
                      f"{mean['mota']:>8.3f}{mean['num_switches']:>7.1f}{mean['num_false_positives']:>7.0f}"
                      f"{mean['num_misses']:>7.0f}")
    print(f"goal: IDF1 >= {GOAL_IDF1} on TUD-Stadtmitte")


if __name__ == "__main__":
    main()
