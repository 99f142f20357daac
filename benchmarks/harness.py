"""What the benchmark scripts share: one process per measurement, device choice, memory and timing.

Each benchmark re-runs itself with ``--worker ...`` for every (model, device, batch), so peak figures of
one measurement never leak into another; the parent collects the JSON line each worker prints.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence


def rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(script: str, worker_args: Sequence[str], what: str) -> dict:
    """Run ``script --worker ...`` in a fresh interpreter and return the JSON dict it printed last."""
    out = subprocess.run([sys.executable, script, "--worker", *map(str, worker_args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def select_devices(choice: str) -> list[str] | None:
    """``auto`` → CPU, plus CUDA when present; ``cpu`` / ``cuda`` as asked. None (and a message) if CUDA is missing."""
    import torch

    devices = ["cpu", "cuda"] if choice == "auto" else [choice]
    if "cuda" in devices and not torch.cuda.is_available():
        if choice == "cuda":
            print("no CUDA device", file=sys.stderr)
            return None
        devices.remove("cuda")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", GPU: {torch.cuda.get_device_name()}" if "cuda" in devices else ", no GPU"))
    return devices


def synthetic_frames(count: int, width: int, height: int) -> list:
    """``count`` RGB frames of a synthetic scene (figures on a textured backdrop) at ``width`` × ``height``."""
    from data_prep.synthetic import SyntheticScene, SyntheticSpec

    scene = SyntheticScene(SyntheticSpec(videos=1, seconds=2, fps=10, width=width, height=height, seed=0), 0)
    return [scene.render(5 * i % scene.num_frames) for i in range(count)]


def drifting_texture_video(path, width: int, height: int, seconds: float, *, fps: int = 30, seed: int = 0,
                           cell: int = 16, drift: int = 3, block: int = 60) -> None:
    """Encode a test clip to ``path``: a coarse random texture drifting right, a white square moving across.

    Some detail, some motion, cheap to make. ``cell``: the texture's squares in pixels; ``drift``: pixels the
    texture moves a frame (modulo ``cell``); ``block``: the white square's side, moving 7 pixels a frame.
    ``round(seconds * fps)`` frames, libx264 ``ultrafast``.
    """
    import numpy as np

    from detection.video import VideoWriter

    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 255, (height // cell + 1, width // cell + 2, 3), dtype=np.uint8)
    texture = np.kron(texture, np.ones((cell, cell, 1), np.uint8))
    with VideoWriter(path, fps, width, height, preset="ultrafast") as writer:
        for k in range(round(seconds * fps)):
            shift = (drift * k) % cell
            frame = np.ascontiguousarray(texture[:height, shift:shift + width])
            x = (7 * k) % (width - block)
            frame[height // 3:height // 3 + block, x:x + block] = 255
            writer.write(frame)


def timed(
    fn: Callable[[], object], repeat: int, cuda: bool, after_warmup: Callable[[], None] | None = None
) -> tuple[float, object]:
    """Mean seconds per call over ``repeat`` calls after one warm-up call, and the last call's result.

    ``after_warmup`` runs between the warm-up and the timed calls (e.g. to reset CUDA's peak memory).
    """
    import torch

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    fn()
    sync()
    if after_warmup is not None:
        after_warmup()
    start = time.perf_counter()
    result = None
    for _ in range(repeat):
        result = fn()
    sync()
    return (time.perf_counter() - start) / repeat, result


def time_detector(detector, frames: list, device: str, iters: int) -> dict:
    """frames/s and memory of ``detector.detect(frames)`` (one batch), after one warm-up."""
    import torch

    cuda = device == "cuda"
    base_rss = rss_mib()  # model and frames loaded
    reset = torch.cuda.reset_peak_memory_stats if cuda else None
    seconds, found = timed(lambda: detector.detect(frames), iters, cuda, after_warmup=reset)
    return {
        "device": device,
        "batch": len(frames),
        "threads": torch.get_num_threads(),
        "frames_per_s": len(frames) / seconds,
        "s_per_batch": seconds,
        "people_per_frame": sum(len(f) for f in found) / len(found),
        "peak_rss_mib": rss_mib(),
        "rss_growth_mib": rss_mib() - base_rss,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }


def print_detector_table(script: str, models: Sequence[str], devices: Sequence[str], args) -> None:
    """Run the (model, device, batch) grid of a person-detector benchmark and print one row each."""
    width = max(len(m) for m in models) + 2
    header = (f"{'model':<{width}} {'device':<6} {'batch':>5} {'frames/s':>9} {'ms/batch':>9} "
              f"{'peak MiB':>9} {'+MiB':>7}")
    print(header)
    print("-" * len(header))
    for device in devices:
        for name in models:
            for batch in args.batch_sizes:
                r = run_worker(script, [name, device, batch, "--iters", args.iters, "--people", args.people],
                               f"{name} on {device}, batch {batch}")
                peak = r["peak_cuda_mib"] if device == "cuda" else r["peak_rss_mib"]
                growth = "" if device == "cuda" else f"{r['rss_growth_mib']:7.0f}"
                print(f"{name:<{width}} {device:<6} {batch:>5} {r['frames_per_s']:>9.2f} "
                      f"{1000 * r['s_per_batch']:>9.0f} {peak:>9.0f} {growth:>7}", flush=True)
    print("\npeak MiB: CPU = peak RSS of the process (model included), +MiB = its growth during inference "
          "(over the loaded model and frames); CUDA = torch.cuda.max_memory_allocated during the timed iterations.")
