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
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ["fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn", "keypointrcnn_resnet50_fpn"]
WIDTH, HEIGHT = 1280, 720


def _rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _frames(count: int) -> list:
    """``count`` 720p frames of a synthetic scene (figures on a textured backdrop)."""
    from data_prep.synthetic import SyntheticScene, SyntheticSpec

    scene = SyntheticScene(SyntheticSpec(videos=1, seconds=2, fps=10, width=WIDTH, height=HEIGHT, seed=0), 0)
    return [scene.render(5 * i % scene.num_frames) for i in range(count)]


def worker(name: str, device: str, batch: int, iters: int, people: int) -> dict:
    """Time one (model, device, batch) in this process and return the figures."""
    import torch

    from detection.persons.base import DetectorSettings
    from detection.persons.torchvision_backend import TorchvisionDetector

    torch.manual_seed(0)
    settings = DetectorSettings(score_threshold=0.0, max_people=people, batch_size=batch, device=device)
    detector = TorchvisionDetector(name, "random", settings)
    frames = _frames(batch)
    cuda = device == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    base_rss = _rss_mib()  # model and frames loaded
    detector.detect(frames)  # warm-up (allocator, cuDNN autotuning)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iters):
        found = detector.detect(frames)
    sync()
    seconds = (time.perf_counter() - start) / iters
    return {
        "model": name,
        "device": device,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "frames_per_s": batch / seconds,
        "s_per_batch": seconds,
        "people_per_frame": sum(len(f) for f in found) / len(found),
        "peak_rss_mib": _rss_mib(),
        "rss_growth_mib": _rss_mib() - base_rss,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


def run_worker(name: str, device: str, batch: int, iters: int, people: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, device, str(batch), "--iters", str(iters),
           "--people", str(people)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{name} on {device}, batch {batch} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


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

    import torch

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            print("no CUDA device", file=sys.stderr)
            return 1
        devices.remove("cuda")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU: {torch.cuda.get_device_name()}" if "cuda" in devices else ", no GPU"))
    print(f"{WIDTH}x{HEIGHT} frames, resized by the model to 750x1333; random init, {args.people} people kept per "
          f"frame; mean of {args.iters} iterations after one warm-up; CUDA in bf16 autocast, CPU in fp32\n")
    header = f"{'model':<34} {'device':<6} {'batch':>5} {'frames/s':>9} {'ms/batch':>9} {'peak MiB':>9} {'+MiB':>7}"
    print(header)
    print("-" * len(header))
    for device in devices:
        for name in args.models:
            for batch in args.batch_sizes:
                r = run_worker(name, device, batch, args.iters, args.people)
                peak = r["peak_cuda_mib"] if device == "cuda" else r["peak_rss_mib"]
                growth = "" if device == "cuda" else f"{r['rss_growth_mib']:7.0f}"
                print(f"{name:<34} {device:<6} {batch:>5} {r['frames_per_s']:>9.2f} {1000 * r['s_per_batch']:>9.0f} "
                      f"{peak:>9.0f} {growth:>7}", flush=True)
    print("\npeak MiB: CPU = peak RSS of the process (model included), +MiB = its growth during inference "
          "(over the loaded model and frames); CUDA = torch.cuda.max_memory_allocated during the timed iterations.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
