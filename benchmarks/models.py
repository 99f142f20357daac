"""Inference speed and memory of the AVA action models (random init), and the RoI head's share of the time.

For each model (default: ``ava/mvit_v1_b_16x4`` and ``ava/mvit_v2_s_16x4`` at 16x224x224, stride 16) and
batch size, prints:
- clips/s of the whole model (backbone + RoI head, 5 boxes per clip), no gradients;
- peak memory: on the CPU the peak RSS of a fresh process and its growth over the loaded model; on CUDA
  ``torch.cuda.max_memory_allocated`` (inference in bf16 autocast, as ``ActionModel.predict`` runs);
- the RoI head's time as a share of the backbone's (goal: under 5 %).

Each (model, device, batch) runs in its own process so that peak figures do not leak into each other.

Usage: python benchmarks/models.py [--device auto|cpu|cuda] [--batch-sizes 1 8] [--iters 3]
       [--models ava/mvit_v2_s_16x4 ...] [--boxes 5]
``auto`` runs on the CPU, and on CUDA too when a GPU is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import rss_mib, run_worker, select_devices, timed  # noqa: E402

MODELS = ["ava/mvit_v1_b_16x4", "ava/mvit_v2_s_16x4"]


def worker(name: str, device: str, batch: int, iters: int, boxes_per_clip: int) -> dict:
    """Time one (model, device, batch) in this process and return the figures."""
    import torch

    from detection.models.zoo import build_model

    model = build_model(name, pretrained=False).eval().to(device)
    t, h, w = model.input_spec.num_frames, *model.input_spec.size
    gen = torch.Generator().manual_seed(0)
    clips = torch.randn(batch, 3, t, h, w, generator=gen).to(device)
    # (B, n, corner, xy) sorted over the two corners: rows read x1, y1, x2, y2 with x1 <= x2 and y1 <= y2
    corners = torch.rand(batch, boxes_per_clip, 2, 2, generator=gen).sort(dim=2).values
    boxes = [c.reshape(-1, 4).to(device) for c in corners]
    cuda = device == "cuda"

    base_rss = rss_mib()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        whole, _ = timed(lambda: model(clips, boxes), iters, cuda)
        peak_cuda = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        features = model.backbone(clips)
        backbone, _ = timed(lambda: model.backbone(clips), iters, cuda)
        head, _ = timed(lambda: model.head(features, boxes, (h, w)), max(10, 5 * iters), cuda)
    return {
        "model": name,
        "device": device,
        "batch": batch,
        "input": [t, h, w],
        "boxes_per_clip": boxes_per_clip,
        "threads": torch.get_num_threads(),
        "clips_per_s": batch / whole,
        "s_per_batch": whole,
        "backbone_s": backbone,
        "head_s": head,
        "head_share": head / backbone,
        "peak_rss_mib": rss_mib(),
        "rss_growth_mib": rss_mib() - base_rss,
        "peak_cuda_mib": peak_cuda,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up (default: 3)")
    parser.add_argument("--models", nargs="+", default=MODELS, help="zoo names or configs (default: the AVA MViTs)")
    parser.add_argument("--boxes", type=int, default=5, help="person boxes per clip (default: 5)")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "DEVICE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        name, device, batch = args.worker
        print(json.dumps(worker(name, device, int(batch), args.iters, args.boxes)))
        return 0

    devices = select_devices(args.device)
    if devices is None:
        return 1
    print(f"inference, no grad, random init, {args.boxes} boxes per clip, mean of {args.iters} iterations "
          f"after one warm-up; CUDA in bf16 autocast, CPU in fp32\n")
    header = (f"{'model':<22} {'device':<6} {'batch':>5} {'clips/s':>8} {'ms/batch':>9} {'peak MiB':>9} "
              f"{'+MiB':>7} {'head ms':>8} {'head/backbone':>14}")
    print(header)
    print("-" * len(header))
    for device in devices:
        for name in args.models:
            for batch in args.batch_sizes:
                r = run_worker(__file__, [name, device, batch, "--iters", args.iters, "--boxes", args.boxes],
                               f"{name} on {device}, batch {batch}")
                peak = r["peak_cuda_mib"] if device == "cuda" else r["peak_rss_mib"]
                growth = "" if device == "cuda" else f"{r['rss_growth_mib']:7.0f}"
                print(f"{name:<22} {device:<6} {batch:>5} {r['clips_per_s']:>8.2f} {1000 * r['s_per_batch']:>9.1f} "
                      f"{peak:>9.0f} {growth:>7} {1000 * r['head_s']:>8.2f} {100 * r['head_share']:>13.2f}%",
                      flush=True)
    print("\npeak MiB: CPU = peak RSS of the process (model included), +MiB = its growth during inference; "
          "CUDA = torch.cuda.max_memory_allocated. head/backbone: RoI head time over backbone time (goal < 5 %).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
