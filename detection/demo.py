"""`actdet demo`: the main job on the built-in default, offline, end to end.

1. Prepare the synthetic AVA-format dataset named by the config (reused when it is there).
2. Train the config's model on its train split (``<out>/train``; a finished run with the same config is
   reused, an interrupted one resumed).
3. ``actdet run`` on the held-out validation videos: person boxes from the dataset's detector-like
   proposals (no detector weights to download), the trained action model, online tube linking, every
   output file (detections CSV, tubes JSON, MOT tracks, CVAT XML, annotated MP4, run.json).
4. Evaluate those files against the ground truth: frame-mAP (the official AVA protocol) of the CSV and
   video-mAP (ACT protocol) of the tubes, and render ground-truth previews to compare with.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_prep.synthetic import generate_dataset
from detection.config import Config, RunConfig, save_config
from detection.formats.act import ActGroundTruth, read_act_groundtruth
from detection.sinks.annotated_video import draw_people
from detection.video import FrameStream, VideoWriter

__all__ = ["DemoReport", "run_demo", "render_groundtruth_preview"]


@dataclass
class DemoReport:
    """What the demo produced, with paths a user can open, and what it measured."""

    output_dir: Path
    dataset_root: Path
    config_path: Path
    checkpoint: Path | None = None
    train_steps: int = 0
    train_reused: bool = False
    run_dirs: list[Path] = field(default_factory=list)
    previews: list[Path] = field(default_factory=list)
    frame_map: float | None = None  # official AVA protocol, on the run's detections.csv
    video_map: dict[str, float | None] = field(default_factory=dict)  # ACT protocol, on the run's tubes.json
    realtime_factor: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{100 * x:.1f} %"

        trained = "reused" if self.train_reused else f"{self.timings.get('train', 0.0):.0f} s"
        lines = [
            f"actdet demo finished in {self.seconds:.0f} s",
            f"  dataset (AVA layout):   {self.dataset_root}",
            f"  model:                  {self.checkpoint} ({self.train_steps} steps, training {trained})",
            f"  frame-mAP (AVA protocol, val):      {pct(self.frame_map)}",
            f"  video-mAP@0.5 (ACT protocol, val):  {pct(self.video_map.get('0.5'))}"
            f"   (@0.2 {pct(self.video_map.get('0.2'))})",
        ]
        if self.realtime_factor is not None:
            lines.append(f"  actdet run speed:       {self.realtime_factor:.2f}x real time")
        for run_dir in self.run_dirs:
            lines += [
                f"  annotated video:        {run_dir / 'annotated.mp4'}",
                f"  tubes:                  {run_dir / 'tubes.json'}",
                f"  CVAT for review:        {run_dir / 'cvat.xml'}",
                f"  detections:             {run_dir / 'detections.csv'}",
            ]
        lines += [f"  ground-truth preview:   {p}" for p in self.previews]
        lines.append(f"  resolved config:        {self.config_path}")
        return "\n".join(lines)


def _frame_annotations(gt: ActGroundTruth, video: str) -> dict[int, list[tuple[tuple[float, ...], str]]]:
    """Frame (0-based) → list of (pixel box, label name) from the ground-truth tubes of ``video``."""
    per_frame: dict[int, list[tuple[tuple[float, ...], str]]] = defaultdict(list)
    for label_index, tubes in gt.gttubes.get(video, {}).items():
        name = gt.labels[label_index]
        for tube in tubes:
            for row in np.asarray(tube):
                per_frame[int(row[0]) - 1].append((tuple(np.round(row[1:5], 2).tolist()), name))
    return per_frame


def render_groundtruth_preview(video_path: Path, gt: ActGroundTruth, video: str, out_path: Path) -> Path:
    """Write ``out_path`` (H.264 MP4): the video with its ground-truth people and actions drawn."""
    height, width = gt.resolution[video]
    per_frame = _frame_annotations(gt, video)
    with FrameStream(video_path) as stream, VideoWriter(out_path, stream.info.fps, width, height) as writer:
        for frame in stream:
            # One person carries one box per label: merge identical boxes into one caption list.
            people: dict[tuple[float, ...], list[str]] = defaultdict(list)
            for box, name in per_frame.get(frame.index, []):
                people[box].append(name)
            boxes = np.array(list(people), dtype=np.float32).reshape(-1, 4)
            boxes /= np.array([width, height, width, height], dtype=np.float32)
            writer.write(draw_people(frame.image, boxes, [sorted(v) for v in people.values()]))
    return out_path


def _trained_checkpoint(cfg: Config, train_dir: Path, quiet: bool) -> tuple[Path, int, bool]:
    """Train ``cfg`` into ``train_dir``, or reuse / resume the run there; (checkpoint, steps, reused)."""
    from detection.engine.trainer import train
    from detection.models.zoo import read_actdet_checkpoint

    last = train_dir / "last.pt"
    result, done_before = None, None
    if last.is_file():
        try:
            done_before = int(read_actdet_checkpoint(last).get("train_state", {}).get("step", -1))
            result = train(cfg, train_dir, resume=True, device="cpu", quiet=quiet)
        except ValueError:  # unreadable, or another config trained there: start over
            shutil.rmtree(train_dir)
    if result is None:
        done_before = None
        result = train(cfg, train_dir, device="cpu", quiet=quiet)
    reused = done_before == result.step  # the earlier run had finished: nothing was trained now
    return result.best_checkpoint or result.last_checkpoint, result.step, reused


def _merge_csvs(paths: list[Path], out: Path) -> Path:
    out.write_text("".join(p.read_text(encoding="utf-8") for p in paths), encoding="utf-8")
    return out


def run_demo(cfg: Config, quiet: bool = False) -> DemoReport:
    """Prepare data, train, run on the held-out videos and evaluate, all under ``cfg.output_dir``."""
    from detection.formats.tubes import read_tubes_json, write_tubes_json
    from detection.models.zoo import load_checkpoint
    from detection.persons.factory import build_detector
    from detection.pipeline import run_videos
    from eval.frame_map import evaluate_frame_map_files
    from eval.video_map import VIDEO_AP_KEYS, evaluate_video_map_files

    start = time.perf_counter()
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = save_config(cfg, out_dir / "config.yaml")
    root = Path(cfg.data.root)
    if cfg.data.synthetic is None:
        if not (root / "manifest.json").is_file():
            raise FileNotFoundError(f"{root}: no prepared dataset (manifest.json) and no synthetic spec to build one")
    else:
        generate_dataset(root, cfg.data.synthetic, progress=not quiet)
    report = DemoReport(output_dir=out_dir, dataset_root=root, config_path=config_path)
    clock = time.perf_counter()
    report.timings["data"] = clock - start

    report.checkpoint, report.train_steps, report.train_reused = _trained_checkpoint(cfg, out_dir / "train", quiet)
    report.timings["train"] = time.perf_counter() - clock
    clock = time.perf_counter()

    gt_path = root / "annotations" / "gt_tubes.pkl"
    gt = read_act_groundtruth(gt_path)
    val_videos = list(gt.test_videos[0]) if gt.test_videos else []
    model = load_checkpoint(report.checkpoint)
    # The dataset's detector-like proposals stand in for a person detector: nothing to download.
    detector_cfg = replace(cfg.detector, backend="precomputed", model=str(root / cfg.data.val_proposals), weights=None)
    detector = build_detector(detector_cfg, progress=False)
    run_cfg = RunConfig(keyframes="ava", time_offset=cfg.data.time_offset, device="cpu")
    summary = run_videos([root / "videos" / f"{v}.mp4" for v in val_videos], model, detector, out_dir / "run",
                         run=run_cfg, linker=cfg.tubes, progress=not quiet)
    if not summary.ok:
        failed = "; ".join(f"{v.video_id}: {v.error}" for v in summary.failed)
        raise RuntimeError(f"actdet run failed on the demo videos: {failed}")
    report.run_dirs = [Path(v.out_dir) for v in summary.videos]
    report.realtime_factor = summary.realtime_factor
    report.timings["run"] = time.perf_counter() - clock
    clock = time.perf_counter()

    detections = _merge_csvs([d / "detections.csv" for d in report.run_dirs], out_dir / "run" / "detections_val.csv")
    exclusions = root / cfg.data.val_exclusions if cfg.data.val_exclusions else None
    frame = evaluate_frame_map_files(root / cfg.data.val_annotations, detections, root / cfg.data.label_map,
                                     exclusions if exclusions and exclusions.is_file() else None)
    report.frame_map = float(frame.mAP)
    tubes = [t for d in report.run_dirs for t in read_tubes_json(d / "tubes.json")]
    tubes_path = out_dir / "run" / "tubes_val.json"
    write_tubes_json(tubes_path, tubes)
    video = evaluate_video_map_files(gt_path, tubes_path, protocol="act")
    report.video_map = {key: video.video_map(key) for key in VIDEO_AP_KEYS}
    for v in tqdm(val_videos, desc="previews", unit="video", disable=quiet):
        src = root / "videos" / f"{v}.mp4"
        report.previews.append(render_groundtruth_preview(src, gt, v, out_dir / "preview" / f"{v}.mp4"))
    report.timings["evaluate"] = time.perf_counter() - clock
    report.seconds = time.perf_counter() - start
    (out_dir / "demo.json").write_text(
        json.dumps(
            {
                "dataset_root": str(root),
                "config": str(config_path),
                "checkpoint": str(report.checkpoint),
                "train_steps": report.train_steps,
                "frame_map": report.frame_map,
                "video_map": report.video_map,
                "realtime_factor": report.realtime_factor,
                "runs": [str(d) for d in report.run_dirs],
                "previews": [str(p) for p in report.previews],
                "timings_s": {k: round(v, 2) for k, v in report.timings.items()},
                "seconds": round(report.seconds, 2),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return report
