"""Speed and memory of the AVA frame-mAP evaluator (`eval.frame_map`) at the scale of AVA val.

Writes a synthetic AVA-val-sized ground truth and detection file (64 videos x 897 keyframes, ~1.5 people
per keyframe with 1-3 actions each, 50 detections per keyframe: ~2.9 M detection rows, boxes with 3
decimals and scores with 4 as PySlowFast writes them), then evaluates them in a fresh process and prints
the CSV reading time, the evaluation time, the total and the peak RSS of that process.

Goals (2-core machine): total <= 10 s, peak RSS <= 3 GiB.

Usage: python benchmarks/frame_map.py [--scale 1.0] [--protocol activitynet] [--data DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LABEL_MAP = ROOT / "configs" / "ava" / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"


def _label_ids() -> np.ndarray:
    from detection.structures import LabelMap

    return np.asarray(LabelMap.from_pbtxt(LABEL_MAP).ids, dtype=np.int64)


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    centre = rng.uniform(0.15, 0.85, (n, 2))
    size = rng.uniform(0.1, 0.5, (n, 2)) * np.array([0.6, 1.0])
    return np.clip(np.concatenate([centre - size / 2, centre + size / 2], axis=1), 0.0, 1.0)


def _write_rows(path: Path, keys: list[str], boxes: np.ndarray, labels: np.ndarray, last: list[str]) -> None:
    b = np.round(boxes, 3).tolist()
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(
            f"{k},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{a},{s}\n"
            for k, (x1, y1, x2, y2), a, s in zip(keys, b, labels.tolist(), last, strict=True)
        )


def make_dataset(out: Path, videos: int = 64, keyframes: int = 897, per_keyframe: int = 50, seed: int = 0) -> None:
    """Write ``gt.csv``, ``det.csv`` and ``excluded.csv`` (1% of the keyframes) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = _label_ids()
    names = [f"{v:03d}" + "".join(rng.choice(list("abcdefghijkLMNOPQ-_0123456789"), 8)) for v in range(videos)]
    frame_keys = [f"{v},{t:04d}" for v in names for t in range(902, 902 + keyframes)]
    num_frames = len(frame_keys)

    # Ground truth: 1 or 2 people per keyframe (mean 1.5), 1-3 distinct actions each.
    people = rng.integers(1, 3, num_frames)
    person_frame = np.repeat(np.arange(num_frames), people)
    person_boxes = _random_boxes(rng, len(person_frame))
    actions = rng.integers(1, 4, len(person_frame))
    gt_person = np.repeat(np.arange(len(person_frame)), actions)
    gt_labels = np.concatenate([rng.choice(ids, k, replace=False) for k in actions.tolist()])
    person_index = np.arange(len(person_frame)) - np.repeat(np.cumsum(people) - people, people)
    _write_rows(
        out / "gt.csv",
        [frame_keys[i] for i in person_frame[gt_person].tolist()],
        person_boxes[gt_person],
        gt_labels,
        [str(p) for p in person_index[gt_person].tolist()],
    )

    # Detections: each true person found with some jitter plus one false box, each box with a share of
    # the 50 rows; true actions score higher on true boxes.
    det_boxes_per_frame = people + 1
    box_frame = np.repeat(np.arange(num_frames), det_boxes_per_frame)
    first_box = np.cumsum(det_boxes_per_frame) - det_boxes_per_frame
    box_rank = np.arange(len(box_frame)) - first_box[box_frame]
    true_box = box_rank < people[box_frame]
    boxes = _random_boxes(rng, len(box_frame))
    person_of_box = np.cumsum(people)[box_frame] - people[box_frame] + np.minimum(box_rank, people[box_frame] - 1)
    jitter = rng.normal(0, 0.03, (len(box_frame), 4))
    boxes[true_box] = np.clip(person_boxes[person_of_box[true_box]] + jitter[true_box], 0, 1)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.01)
    det_frame = np.repeat(np.arange(num_frames), per_keyframe)
    slot = np.tile(np.arange(per_keyframe), num_frames)
    det_box = first_box[det_frame] + slot % det_boxes_per_frame[det_frame]
    det_labels = rng.choice(ids, len(det_frame))
    scores = rng.beta(1.0, 6.0, len(det_frame))
    hit = np.flatnonzero(true_box[det_box] & (rng.random(len(det_frame)) < 0.3))
    person = person_of_box[det_box[hit]]
    first_label = np.cumsum(actions) - actions
    det_labels[hit] = gt_labels[first_label[person] + rng.integers(0, actions[person])]
    scores[hit] = rng.beta(4.0, 2.0, len(hit))
    _write_rows(
        out / "det.csv",
        [frame_keys[i] for i in det_frame.tolist()],
        boxes[det_box],
        det_labels,
        [f"{s:.4f}" for s in scores.tolist()],
    )
    excluded = rng.choice(num_frames, max(1, num_frames // 100), replace=False)
    (out / "excluded.csv").write_text("".join(frame_keys[i] + "\n" for i in sorted(excluded.tolist())))


def measure(data: Path, protocol: str) -> None:
    """Evaluate the files in ``data`` and print the figures (run in a fresh process for a clean RSS)."""
    from detection.formats.ava import read_ava_table, read_exclusions
    from detection.structures import LabelMap
    from eval.frame_map import evaluate_frame_map

    t0 = time.perf_counter()
    label_map = LabelMap.from_pbtxt(LABEL_MAP)
    gt = read_ava_table(data / "gt.csv", kind="groundtruth")
    det = read_ava_table(data / "det.csv", kind="detections")
    exclusions = read_exclusions(data / "excluded.csv")
    t1 = time.perf_counter()
    result = evaluate_frame_map(gt, det, label_map, exclusions, protocol=protocol)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"detection rows      {len(det):>12,d}   ground-truth rows {len(gt):,d}")
    print(f"protocol            {protocol:>12s}   mAP {100 * result.mAP:.4f}")
    print(f"read CSVs           {t1 - t0:>10.2f} s")
    print(f"evaluate            {t2 - t1:>10.2f} s")
    print(f"total               {t2 - t0:>10.2f} s   (goal <= 10 s)")
    print(f"peak RSS            {rss:>10.2f} GiB (goal <= 3 GiB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of AVA val's 64 videos (default 1)")
    parser.add_argument("--protocol", choices=["activitynet", "pyslowfast"], default="activitynet")
    parser.add_argument("--data", type=Path, help="keep the generated files here (reused when present)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # internal: the timed child process
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.protocol)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp)
        if not (data / "det.csv").exists():
            t0 = time.perf_counter()
            make_dataset(data, videos=max(1, round(64 * args.scale)))
            print(f"generated {data} in {time.perf_counter() - t0:.1f} s")
        cmd = [sys.executable, __file__, "--measure", str(data), "--protocol", args.protocol]
        return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
