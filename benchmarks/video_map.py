"""Speed of `eval.video_map`: video-mAP at every IoU threshold, and frame-AP, on a synthetic benchmark.

Default size: 500 test videos × 10 ground-truth tubes × 100 detected tubes, every tube 300 frames long, in
videos of 400 frames. Layout ``video-class`` (default, the heavy case): every video shows one action class,
so its 100 detections and 10 ground truths all meet in one class (ACT's tube NMS sees 100 tubes, the
matching 100 × 10 pairs per video); ``mixed``: each ground-truth tube has its own class among 24 and its 10
detections follow it. Detections are jittered copies of the ground truth (in time and space) plus
decoys, as float32 arrays like ACT's files. Prints the time of each part for both protocols; frame-AP
(one detection per tube frame: 15 M boxes at the default size) is timed separately.

Usage: python benchmarks/video_map.py [--videos 500 --gt-tubes 10 --det-tubes 100 --frames 300]
                                      [--layout video-class|mixed] [--no-frame-ap]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detection.formats.act import ActGroundTruth  # noqa: E402
from eval.video_map import evaluate_video_map  # noqa: E402

GOAL_S = 5.0


def random_walk_boxes(rng: np.random.Generator, n: int, width: int, height: int) -> np.ndarray:
    """(n, 4) pixel boxes drifting smoothly inside the image."""
    w, h = rng.uniform(40, width / 3), rng.uniform(60, height / 2)
    centre = np.array([rng.uniform(w, width - w), rng.uniform(h, height - h)])
    centre = centre + np.cumsum(rng.normal(0, 1.0, size=(n, 2)), axis=0)
    centre[:, 0] = np.clip(centre[:, 0], w / 2, width - w / 2)
    centre[:, 1] = np.clip(centre[:, 1], h / 2, height - h / 2)
    return np.column_stack([centre - [w / 2, h / 2], centre + [w / 2, h / 2]])


def make_benchmark(args: argparse.Namespace) -> tuple[ActGroundTruth, dict]:
    rng = np.random.default_rng(args.seed)
    width, height, nframes = 320, 240, args.frames + 100
    labels = [f"action {k}" for k in range(args.classes)]
    videos = [f"video{k:04d}" for k in range(args.videos)]
    gttubes: dict[str, dict[int, list[np.ndarray]]] = {}
    detections: dict[int, list] = {k: [] for k in range(args.classes)}
    per_gt = args.det_tubes // args.gt_tubes
    for v in videos:
        video_class = int(rng.integers(args.classes))
        gttubes[v] = {}
        for _ in range(args.gt_tubes):
            label = video_class if args.layout == "video-class" else int(rng.integers(args.classes))
            start = int(rng.integers(1, nframes - args.frames + 2))
            tube = np.empty((args.frames, 5), np.float32)
            tube[:, 0] = np.arange(start, start + args.frames)
            tube[:, 1:] = np.round(random_walk_boxes(rng, args.frames, width, height))
            gttubes[v].setdefault(label, []).append(tube)
            for k in range(per_gt):
                shift = int(rng.integers(-40, 41))
                s = int(np.clip(start + shift, 1, nframes - args.frames + 1))
                det = np.empty((args.frames, 6), np.float32)
                det[:, 0] = np.arange(s, s + args.frames)
                if k < per_gt - 2:  # jittered copies of the ground truth, clamped to its span
                    idx = np.clip(det[:, 0].astype(int) - start, 0, args.frames - 1)
                    det[:, 1:5] = tube[idx, 1:5] + rng.normal(0, 2 + 3 * k, size=(args.frames, 4))
                else:  # decoys elsewhere in the frame
                    det[:, 1:5] = random_walk_boxes(rng, args.frames, width, height)
                det[:, 3] = np.maximum(det[:, 3], det[:, 1])
                det[:, 4] = np.maximum(det[:, 4], det[:, 2])
                det[:, 5] = rng.uniform(0, 1, args.frames)
                detections[label].append((v, float(rng.uniform(0, 1)), det))
    gt = ActGroundTruth(
        labels=labels,
        gttubes=gttubes,
        nframes={v: nframes for v in videos},
        resolution={v: (height, width) for v in videos},
        train_videos=[[]],
        test_videos=[videos],
    )
    return gt, detections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=500)
    parser.add_argument("--gt-tubes", type=int, default=10, help="ground-truth tubes per video")
    parser.add_argument("--det-tubes", type=int, default=100, help="detected tubes per video")
    parser.add_argument("--frames", type=int, default=300, help="frames per tube")
    parser.add_argument("--classes", type=int, default=24)
    parser.add_argument("--layout", choices=["video-class", "mixed"], default="video-class")
    parser.add_argument("--no-frame-ap", action="store_true", help="skip the frame-AP timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    gt, detections = make_benchmark(args)
    print(
        f"{args.videos} videos × {args.gt_tubes} GT tubes × {args.det_tubes} detected tubes × {args.frames} frames"
        f" ({args.layout}); made in {time.perf_counter() - start:.1f} s"
    )
    # Frame-AP needs (N, 8) frame detections; an empty array makes the video-AP timing stand alone.
    no_frame_dets = np.zeros((0, 8), np.float32)
    for protocol in ("act", "multisports"):
        start = time.perf_counter()
        result = evaluate_video_map(gt, detections, no_frame_dets, protocol=protocol)
        total = time.perf_counter() - start
        t = result.timings
        parts = ", ".join(f"{k} {t[k]:.2f} s" for k in ("inputs", "nms", "tube_ious", "matching"))
        verdict = "within" if total <= GOAL_S else "OVER"
        print(
            f"{protocol:12s} video-mAP, 11 IoU thresholds: {total:.2f} s ({parts}); goal {GOAL_S:.0f} s: {verdict}"
            f"  [mAP@0.5 {100 * result.video_map('0.5'):.2f}]"
        )
    if args.no_frame_ap:
        return
    for protocol in ("act", "multisports"):
        start = time.perf_counter()
        result = evaluate_video_map(gt, detections, None, protocol=protocol)
        total = time.perf_counter() - start
        n = sum(c.num_frame_detections for c in result.classes)
        print(
            f"{protocol:12s} frame-AP from the tubes ({n / 1e6:.1f} M frame detections): "
            f"{result.timings['frame_ap']:.2f} s (whole call {total:.2f} s)  [frame-mAP {100 * result.frame_map:.2f}]"
        )


if __name__ == "__main__":
    main()
