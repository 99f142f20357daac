"""Speed and memory of the torchvision person detectors on 720p frames (random init).

For each model (Faster R-CNN ResNet-50 FPN v2, Faster R-CNN MobileNetV3-Large FPN, Keypoint R-CNN ResNet-50
FPN) and batch size, prints frames/s and peak memory of ``TorchvisionDetector.detect`` at 1280x720, with
torchvision's default resize (short side 800, long side at most 1333):
- on the CPU in fp32: peak RSS of a fresh process (model included) and its growth during inference;
- on CUDA in bf16 autocast (as the detector runs there): ``torch.cuda.max_memory_allocated``.

Random weights give no real people, so the score threshold is 0 and ``--people`` (default 5) boxes per
frame go on to the keypoint head, as a scene with that many people would. The RPN's proposals and the box
head's work do not depend on the weights. Each (model, device, batch) runs in its own process.

Usage: python benchmarks/persons.py [--device auto|cpu|cuda] [--batch-sizes 1 4] [--iters 2]
       [--models fasterrcnn_resnet50_fpn_v2 ...] [--people 5]
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

MODELS = ["fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn", "keypointrcnn_resnet50_fpn"]
WIDTH, HEIGHT = 1280, 720


def worker(name: str, device: str, batch: int, iters: int, people: int) -> dict:
    """Time one (model, device, batch) in this process and return the figures."""
    import torch

    from detection.persons.base import DetectorSettings
    from detection.persons.torchvision_backend import TorchvisionDetector

    torch.manual_seed(0)
    settings = DetectorSettings(score_threshold=0.0, max_people=people, batch_size=batch, device=device)
    detector = TorchvisionDetector(name, "random", settings)
    figures = time_detector(detector, synthetic_frames(batch, WIDTH, HEIGHT), device, iters)
    return {"model": name, **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iters", type=int, default=2, help="timed iterations after one warm-up (default: 2)")
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS, metavar="MODEL",
                        help=f"torchvision detectors (default: all of {', '.join(MODELS)})")
    parser.add_argument("--people", type=int, default=5, help="boxes kept per frame (default: 5)")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "DEVICE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        name, device, batch = args.worker
        print(json.dumps(worker(name, device, int(batch), args.iters, args.people)))
        return 0

    devices = select_devices(args.device)
    if devices is None:
        return 1
    print(f"{WIDTH}x{HEIGHT} frames, resized by the model to 750x1333; random init, {args.people} people kept per "
          f"frame; mean of {args.iters} iterations after one warm-up; CUDA in bf16 autocast, CPU in fp32\n")
    print_detector_table(__file__, args.models, devices, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
