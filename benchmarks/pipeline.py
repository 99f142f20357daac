"""``actdet run`` memory and speed: peak RSS against video length, pipeline overhead, real-time factors.

    python -m benchmarks.pipeline [--short-min 1] [--long-min 10] [--height 720] [--keyframes ava]

1. Generates 720p videos (textured background, moving rectangles as people) of ``--short-min`` and
   ``--long-min`` minutes once into a temp folder, and runs the tiny config (random weights) with a cheap
   blob detector over each in a fresh process: peak RSS of each and their ratio (goal: <= 1.1).
2. Overhead: the end-to-end wall time of the short run against the detector + action model alone on the
   same keyframes and clips (decoded beforehand, same batches; goal: within 10 %).
3. Real-time factors (video seconds per wall second) on this machine for the tiny config and, on a short
   clip, the AVA MViTv2-S 16x4 config with random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def make_video(path: Path, seconds: float, height: int, fps: int = 30) -> Path:
    from detection.video import VideoWriter

    if path.exists():
        return path
    width = (height * 16 // 9) // 2 * 2
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    with VideoWriter(path, fps, width, height, preset="ultrafast", threads=2) as writer:
        for i in range(int(seconds * fps)):
            image = background.copy()
            for p in range(3):
                x = int((50 + 300 * p + i * (2 + p)) % (width - 100))
                y = height // 5 + p * height // 6
                image[y : y + height // 3, x : x + height // 8] = (230, 200, 90)
            writer.write(image)
    return path


_CHILD = """
import json, resource, sys, time, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
torch.manual_seed(0)
from detection.config import RunConfig, load_config
from detection.models.zoo import build_model
from detection.pipeline import run_videos
from pipeline import BlobDetector
model = build_model({config!r}).eval()
run = RunConfig(keyframes={keyframes!r}, batch_size=4, video={video!r})
t = time.perf_counter()
summary = run_videos([{path!r}], model, BlobDetector(), {out!r}, run=run)
wall = time.perf_counter() - t
v = summary.videos[0]
print(json.dumps({{"status": v.status, "error": v.error, "wall_s": wall, "video_s": v.video_s, "timings": v.timings,
                  "keyframes": v.keyframes, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run_child(path: Path, out: Path, config: str, keyframes: str, video: bool) -> dict:
    code = _CHILD.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), config=config, keyframes=keyframes,
                         video=video, path=str(path), out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _blob_detector():
    import cv2

    from detection.persons.base import DetectorSettings, PersonDetector

    class BlobDetector(PersonDetector):
        """People are the bright rectangles of the generated videos."""

        name = "blobs"

        def __init__(self) -> None:
            super().__init__(DetectorSettings(score_threshold=0.5, batch_size=4))

        def _detect_pixels(self, frames):
            out = []
            for frame in frames:
                small = frame[::4, ::4]
                mask = (small.max(axis=2) > 128).astype(np.uint8)
                _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
                boxes = [[4 * x, 4 * y, 4 * (x + w), 4 * (y + h)] for x, y, w, h, a in stats[1:].tolist() if a > 8]
                out.append((np.asarray(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32),
                            None))
            return out

    return BlobDetector


def compute_only(path: Path, config: str, keyframes: str) -> float:
    """Detector + action model alone on the keyframes the pipeline would use, inputs decoded beforehand."""
    import cv2
    import torch

    from detection.data.ava_dataset import clip_indices
    from detection.models.zoo import build_model
    from detection.persons.keyframes import parse_keyframes
    from detection.pipeline import _Classifier, _even_size
    from detection.video import FrameStream

    torch.manual_seed(0)
    model = build_model(config).eval()
    spec = model.input_spec
    detector = _blob_detector()()
    schedule = parse_keyframes(keyframes)
    with FrameStream(path) as stream:
        info = stream.info
        size = _even_size(spec.short_side, info.width, info.height)
        frames, full = [], {}
        picks = dict(schedule.frame_indices(info.num_frames, info.fps))
        for f in stream:
            frames.append(cv2.resize(f.image, size, interpolation=cv2.INTER_AREA))
            if f.index in picks:
                full[f.index] = f.image
    last = len(frames) - 1
    keys = sorted(full)
    clips = [np.stack([frames[i] for i in clip_indices(k, spec.num_frames, spec.sampling_rate, last + 1)])
             for k in keys]
    classify = _Classifier(model, torch.device("cpu"))
    t = time.perf_counter()
    people = []
    for s in range(0, len(keys), 4):
        people += detector.detect([full[k] for k in keys[s : s + 4]])
    todo = [(c, p.boxes) for c, p in zip(clips, people, strict=True) if len(p)]
    for s in range(0, len(todo), 4):
        batch = todo[s : s + 4]
        classify([c for c, _ in batch], [b for _, b in batch])
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-min", type=float, default=1.0)
    parser.add_argument("--long-min", type=float, default=10.0)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--keyframes", default="ava")
    parser.add_argument("--ava-seconds", type=float, default=4.0, help="clip length for the AVA config (0: skip)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "actdet_bench_pipeline"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    short = make_video(work / f"short_{args.short_min:g}m_{args.height}p.mp4", args.short_min * 60, args.height)
    long = make_video(work / f"long_{args.long_min:g}m_{args.height}p.mp4", args.long_min * 60, args.height)
    print(f"videos generated in {time.perf_counter() - clock:.0f} s ({work})")
    results = {}
    for name, path in (("short", short), ("long", long)):
        results[name] = r = run_child(path, work / f"out_{name}", "synthetic/tiny", args.keyframes, True)
        print(f"{name}: {r['video_s']:.0f} s of {args.height}p, {r['keyframes']} keyframes: "
              f"peak RSS {r['maxrss_mb']:.0f} MB, "
              f"wall {r['wall_s']:.1f} s, {r['video_s'] / r['wall_s']:.2f}x real time; timings {r['timings']}")
    print(f"peak RSS long / short: {results['long']['maxrss_mb'] / results['short']['maxrss_mb']:.3f} (goal <= 1.1)")
    no_video = run_child(short, work / "out_short_novideo", "synthetic/tiny", args.keyframes, False)
    alone = compute_only(short, "synthetic/tiny", args.keyframes)
    print(f"overhead (short video, no annotated.mp4): end-to-end {no_video['wall_s']:.2f} s vs detector + model "
          f"alone {alone:.2f} s: {100 * (no_video['wall_s'] / alone - 1):+.1f} % (goal <= +10 %)")
    print(f"real-time factor, tiny config, {args.height}p, {args.keyframes}: "
          f"{no_video['video_s'] / no_video['wall_s']:.2f}x without video output, "
          f"{results['short']['video_s'] / results['short']['wall_s']:.2f}x with annotated.mp4")
    if args.ava_seconds > 0:
        clip = make_video(work / f"ava_{args.ava_seconds:g}s_{args.height}p.mp4", args.ava_seconds, args.height)
        r = run_child(clip, work / "out_ava", "ava/mvit_v2_s_16x4", args.keyframes, False)
        print(f"real-time factor, AVA MViTv2-S 16x4 (random weights), {args.ava_seconds:g} s {args.height}p, "
              f"{args.keyframes}: {r['video_s'] / r['wall_s']:.3f}x ({r['keyframes']} keyframes, "
              f"timings {r['timings']})")


def __getattr__(name: str):  # pragma: no cover - module attribute for the child script
    if name == "BlobDetector":
        return _blob_detector()
    raise AttributeError(name)


if __name__ == "__main__":
    main()
