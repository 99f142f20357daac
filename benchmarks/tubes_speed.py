"""Speed and memory of the tube linker on long videos, from in-memory keyframe detections.

The scene: ``--people`` people (20) walk back and forth in overlapping lanes at different speeds, so they
cross each other all the time; each one's actions (``--classes``, 10) switch on and off every few
seconds; the detector jitters the boxes, misses 3 % of the people and scores them 0.4-1.0. Keyframes on
every frame at 30 fps. The detections are made on the fly, a chunk at a time, and only the linker's
``update``/``finish`` calls are timed; each size runs in its own process pinned to one core
(``taskset -c 0``, one BLAS/OpenMP thread), so its peak RSS is its own.

Prints, per size: the seconds of ``--repeats`` runs (the sizes alternate, each run a fresh process), the
median's microseconds per keyframe, tubes, peak RSS; then the ratio of the two medians (goal: 8x the
keyframes cost at most 9x the time) and the time of reading such detections from
an AVA-style CSV (``--csv-keyframes`` keyframes, every class of every person a row, written by
``write_ava_csv``: 3-decimal boxes, timestamps in fractional seconds), measured separately.

Usage: python benchmarks/tubes_speed.py [--keyframes 108000 --base 13500 --people 20 --classes 10]
                                        [--repeats 3] [--csv-keyframes 13500] [--no-csv]

This machine is a shared VM: the same run varies by up to 2x from one minute to the next (a 27,000-keyframe
run took 4.5-9.5 s in six runs on either core), hence the repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detection.structures import KeyframeDetections, LabelMap  # noqa: E402
from detection.tubes.linker import LinkerConfig, TubeLinker  # noqa: E402

GOAL_S = 20.0
FPS = 30.0


class Scene:
    """People walking in lanes and switching actions; :meth:`chunk` makes the next keyframes."""

    def __init__(self, people: int, classes: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        n = people
        self.height = self.rng.uniform(0.25, 0.45, n)
        self.width = self.height * self.rng.uniform(0.3, 0.45, n)
        self.y = self.rng.uniform(0.3, 0.7, n)  # lanes overlap: people pass in front of each other
        self.x = self.rng.uniform(0.1, 0.9, n)
        self.speed = self.rng.uniform(0.02, 0.12, n) * self.rng.choice([-1, 1], n)  # frame widths / s
        self.actions = self.rng.random((n, classes)) < 0.2
        self.switch_p = 1.0 / (FPS * self.rng.uniform(3, 10, (n, classes)))  # mean run 3-10 s
        self.frame = 0

    def chunk(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(frames (k,), boxes (k, n, 4), person scores (k, n), action scores (k, n, C), seen (k, n))."""
        rng, n = self.rng, len(self.x)
        boxes = np.empty((count, n, 4), np.float32)
        acts = np.empty((count, n) + self.actions.shape[1:], np.float32)
        for k in range(count):
            self.x += self.speed / FPS
            bounce = (self.x < 0.05) | (self.x > 0.95)
            self.speed[bounce] *= -1
            flip = rng.random(self.actions.shape) < self.switch_p
            self.actions ^= flip
            boxes[k, :, 0] = self.x - self.width / 2
            boxes[k, :, 2] = self.x + self.width / 2
            boxes[k, :, 1] = self.y - self.height / 2
            boxes[k, :, 3] = self.y + self.height / 2
            acts[k] = np.where(self.actions, 0.75, 0.1)
        size = np.stack([self.width, self.height, self.width, self.height], axis=1)
        boxes += rng.normal(0, 0.02, boxes.shape).astype(np.float32) * size
        boxes = np.clip(boxes, 0, 1)
        acts = np.clip(acts + rng.normal(0, 0.12, acts.shape), 0, 1).astype(np.float32)
        scores = rng.uniform(0.4, 1.0, (count, n)).astype(np.float32)
        seen = rng.random((count, n)) > 0.03
        frames = np.arange(self.frame, self.frame + count)
        self.frame += count
        return frames, boxes, scores, acts, seen


def keyframes(scene: Scene, total: int, chunk: int = 2000):
    """KeyframeDetections one by one (made a chunk at a time, never all at once)."""
    done = 0
    while done < total:
        frames, boxes, scores, acts, seen = scene.chunk(min(chunk, total - done))
        for k in range(len(frames)):
            s = seen[k]
            yield KeyframeDetections("bench", int(frames[k]), frames[k] / FPS, boxes[k, s], scores[k, s], acts[k, s])
        done += len(frames)


def run_child(args: argparse.Namespace) -> dict:
    label_map = LabelMap.from_pairs([(i + 1, f"action {i + 1}") for i in range(args.classes)])
    linker = TubeLinker(label_map, FPS, keyframe_stride=1, config=LinkerConfig())
    scene = Scene(args.people, args.classes)
    spent = 0.0
    tubes = 0
    peak = {}
    for kf in keyframes(scene, args.keyframes):
        t0 = time.perf_counter()
        tubes += len(linker.update(kf))
        spent += time.perf_counter() - t0
        if kf.frame_index % 997 == 0:
            for key, value in linker.stats().items():
                peak[key] = max(peak.get(key, 0), value)
    t0 = time.perf_counter()
    tubes += len(linker.finish())
    spent += time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"keyframes": args.keyframes, "seconds": spent, "tubes": tubes, "peak_rss_mb": rss_mb, "state": peak}


def run_csv(args: argparse.Namespace) -> dict:
    """Write ``--csv-keyframes`` keyframes as an AVA detections CSV, then time reading and grouping it."""
    from detection.formats.ava import AvaRows, write_ava_csv
    from detection.tubes.io import keyframes_from_rows, read_detections_csv

    label_map = LabelMap.from_pairs([(i + 1, f"action {i + 1}") for i in range(args.classes)])
    scene = Scene(args.people, args.classes, seed=1)
    frames, boxes, scores, acts, seen = scene.chunk(args.csv_keyframes)
    f_idx, p_idx = np.nonzero(seen)
    n, c = len(f_idx), args.classes
    rows = AvaRows.build(
        np.full(n * c, "bench"),
        np.repeat(frames[f_idx] / FPS, c),
        np.repeat(boxes[f_idx, p_idx], c, axis=0),
        np.tile(np.arange(1, c + 1), n),
        scores=acts[f_idx, p_idx].reshape(-1),
    )
    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / "det.csv"
        write_ava_csv(path, rows)
        size_mb = path.stat().st_size / 2**20
        t0 = time.perf_counter()
        back = read_detections_csv(path)
        t1 = time.perf_counter()
        table = keyframes_from_rows(back, label_map, FPS)
        t2 = time.perf_counter()
    finally:
        shutil.rmtree(folder)
    return {"rows": len(back), "keyframes": sum(len(v) for v in table.keyframes.values()), "mb": size_mb,
            "read_s": t1 - t0, "group_s": t2 - t1}


def spawn(argv: list[str]) -> dict:
    cmd = [sys.executable, __file__, *argv, "--child"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keyframes", type=int, default=108_000)
    parser.add_argument("--base", type=int, default=13_500, help="the smaller size for the scaling ratio")
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--csv-keyframes", type=int, default=13_500)
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; medians are reported")
    parser.add_argument("--no-csv", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--csv-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_csv(args) if args.csv_child else run_child(args)))
        return
    common = ["--people", str(args.people), "--classes", str(args.classes)]
    print(f"tube linker, {args.people} people, {args.classes} classes, keyframes on every frame at 30 fps, one core, "
          f"{args.repeats} runs per size (alternating sizes)")
    runs: dict[int, list[dict]] = {args.base: [], args.keyframes: []}
    for _ in range(args.repeats):
        for size in runs:
            runs[size].append(spawn(["--keyframes", str(size), *common]))
    median: dict[int, float] = {}
    for size, rs in runs.items():
        secs = sorted(r["seconds"] for r in rs)
        median[size] = statistics.median(secs)
        r = rs[0]
        print(f"  {size:>7} keyframes ({size / FPS / 60:.1f} min): {', '.join(f'{x:.2f}' for x in secs)} s; median "
              f"{median[size]:.2f} s ({1e6 * median[size] / size:.0f} us/keyframe), {r['tubes']} tubes, peak RSS "
              f"{max(x['peak_rss_mb'] for x in rs):.0f} MB, state {r['state']}")
    ratio = median[args.keyframes] / median[args.base]
    scale = args.keyframes / args.base
    print(f"  {scale:g}x the keyframes: {ratio:.2f}x the time, medians (goal <= {scale * 9 / 8:g}x); "
          f"{args.keyframes} keyframes in {median[args.keyframes]:.1f} s median, "
          f"{min(r['seconds'] for r in runs[args.keyframes]):.1f} s best (goal <= {GOAL_S:g} s at 108,000 x 20)")
    if not args.no_csv:
        r = spawn(["--keyframes", "0", "--csv-keyframes", str(args.csv_keyframes), "--csv-child", *common])
        per_row = (r["read_s"] + r["group_s"]) / r["rows"]
        full = per_row * r["rows"] * args.keyframes / max(args.csv_keyframes, 1)
        print(f"  CSV: {r['rows']} rows ({r['mb']:.0f} MB, {r['keyframes']} keyframes): read {r['read_s']:.2f} s, "
              f"grouped into keyframes {r['group_s']:.2f} s ({1e9 * per_row:.0f} ns/row; "
              f"about {full:.0f} s for {args.keyframes} keyframes)")


if __name__ == "__main__":
    main()
