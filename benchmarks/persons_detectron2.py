"""Speed and memory of the Detectron2 person detectors on 720p frames (random init).

For each model-zoo config (default: Faster R-CNN R50-FPN 3x, PySlowFast's demo detector, and Keypoint
R-CNN R50-FPN 3x) and batch size, prints frames/s and peak memory of ``Detectron2Detector.detect`` at
1280x720 with the config's test-time resize (short side 800, long side at most 1333: 750x1333), fp32:
- on the CPU: peak RSS of a fresh process (model included) and its growth during inference;
- on CUDA: ``torch.cuda.max_memory_allocated``.

Random weights find no people, so the box head is set to call every proposal a person at the proposal's
own box and ``--people`` (default 5) of them per frame go on (``TEST.DETECTIONS_PER_IMAGE``), as a scene
with that many people would: the keypoint head then does its real amount of work (its last layer is zeroed:
random heatmaps overflow in Detectron2's keypoint decoding). The backbone, the RPN
and the box head do the same work whatever the weights. Each (model, device, batch) runs in its own process.

Needs Detectron2 (``make detectron2``).

Usage: python benchmarks/persons_detectron2.py [--device auto|cpu|cuda] [--batch-sizes 1 4] [--iters 2]
       [--models COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml ...] [--people 5]
``auto`` runs on the CPU, and on CUDA too when a GPU is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import print_detector_table, select_devices, synthetic_frames, time_detector  # noqa: E402

MODELS = ["COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml", "COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml"]
WIDTH, HEIGHT = 1280, 720


def worker(name: str, device: str, batch: int, iters: int, people: int) -> dict:
    """Time one (model, device, batch) in this process and return the figures."""
    import torch

    from detection.persons.detectron2_backend import Detectron2Detector

    torch.manual_seed(0)
    detector = Detectron2Detector(
        model=name, weights="random", device=device, score_threshold=0.0, max_people=people, batch_size=batch,
        opts=["TEST.DETECTIONS_PER_IMAGE", people],
    )  # fmt: skip
    predictor = detector.model.roi_heads.box_predictor
    with torch.no_grad():  # every proposal is a person (softmax ~0.65) at its own box
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.zero_()
        predictor.cls_score.bias[0] = 5.0
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
        if hasattr(detector.model.roi_heads, "keypoint_head"):
            # Random heatmaps overflow in Detectron2's keypoint decoding (an assertion fails); flat ones do not.
            detector.model.roi_heads.keypoint_head.score_lowres.weight.zero_()
            detector.model.roi_heads.keypoint_head.score_lowres.bias.zero_()
    frames = synthetic_frames(batch, WIDTH, HEIGHT)
    figures = time_detector(detector, frames, device, iters)
    shape = detector.resize.get_transform(frames[0]).apply_image(frames[0]).shape[:2]
    return {"model": name, "input": list(shape), **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iters", type=int, default=2, help="timed iterations after one warm-up (default: 2)")
    parser.add_argument("--models", nargs="+", default=MODELS, metavar="CONFIG",
                        help=f"model-zoo config names (default: {', '.join(MODELS)})")
    parser.add_argument("--people", type=int, default=5, help="people kept per frame (default: 5)")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "DEVICE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        name, device, batch = args.worker
        print(json.dumps(worker(name, device, int(batch), args.iters, args.people)))
        return 0

    from detection.persons.detectron2_backend import detectron2_available

    if not detectron2_available():
        print("Detectron2 is not installed: run `make detectron2` first", file=sys.stderr)
        return 1
    devices = select_devices(args.device)
    if devices is None:
        return 1
    print(f"{WIDTH}x{HEIGHT} frames, resized by the config to 750x1333; random init, {args.people} people per "
          f"frame; mean of {args.iters} iterations after one warm-up; fp32\n")
    print_detector_table(__file__, args.models, devices, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
