"""``actdet run`` on a GPU: real-time factor at 1080p30 with MViTv2-S 16x4 and Faster R-CNN.

    python -m benchmarks.pipeline_gpu [--seconds 60] [--height 1080] [--people 5] [--keyframes ava]

Generates a ``--seconds`` long 30 fps video (``benchmarks.pipeline.make_video``), then runs
``detection.pipeline.run_videos`` over it with the AVA MViTv2-S 16x4 config and torchvision's
``fasterrcnn_resnet50_fpn_v2``, both with random weights (nothing can be downloaded on the GPU machine;
the time does not depend on the weights). The detector keeps its ``--people`` best boxes per keyframe at
score threshold 0, so the action model classifies that many people per keyframe. Prints the real-time
factor (video seconds per wall second) without and with annotated.mp4, and the pipeline's stage timings.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.pipeline import make_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--people", type=int, default=5)
    parser.add_argument("--keyframes", default="ava")
    parser.add_argument("--config", default="ava/mvit_v2_s_16x4")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "actdet_bench_pipeline_gpu"))
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")

    from detection.config import RunConfig
    from detection.models.zoo import build_model
    from detection.persons.base import DetectorSettings
    from detection.persons.torchvision_backend import TorchvisionDetector
    from detection.pipeline import run_videos

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    video = make_video(work / f"gpu_{args.seconds:g}s_{args.height}p.mp4", args.seconds, args.height)
    print(f"video generated in {time.perf_counter() - clock:.0f} s; "
          f"{torch.cuda.get_device_name() if cuda else 'CPU'}")
    torch.manual_seed(0)
    model = build_model(args.config).eval().to(args.device)
    settings = DetectorSettings(score_threshold=0.0, max_people=args.people, batch_size=4, device=args.device)
    detector = TorchvisionDetector("fasterrcnn_resnet50_fpn_v2", weights="random", settings=settings)
    # Warm-up on a short piece: CUDA context, cuDNN autotuning and allocator growth stay out of the figure.
    warmup = RunConfig(keyframes=args.keyframes, end_s=4.0, video=False, device=args.device)
    run_videos([video], model, detector, work / "warmup", run=warmup)
    for with_video in (False, True):
        run = RunConfig(keyframes=args.keyframes, batch_size=8, video=with_video, cvat=with_video,
                        device=args.device)
        start = time.perf_counter()
        summary = run_videos([video], model, detector, work / f"out_video{int(with_video)}", run=run)
        wall = time.perf_counter() - start
        v = summary.videos[0]
        if v.status != "done":
            raise SystemExit(f"run failed: {v.status} {v.error}")
        print(f"{args.config}, {args.height}p30, {args.keyframes} keyframes ({v.keyframes}), "
              f"{args.people} people each, "
              f"annotated.mp4 {'on' if with_video else 'off'}: {v.video_s:.0f} s of video in {wall:.1f} s = "
              f"{v.video_s / wall:.1f}x real time; timings {v.timings}")
    if cuda:
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
