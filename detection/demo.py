"""`actdet demo`: the main job on the built-in default, offline.

Today it prepares the synthetic AVA-format dataset named by the config and renders a preview video of
every validation clip with its ground truth drawn (boxes and action names on every frame, from the
ground-truth tubes). Later stages (train → run → link → evaluate) extend this same entry point.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from data_prep.synthetic import generate_dataset
from tqdm import tqdm

from detection.config import Config, save_config
from detection.formats.act import ActGroundTruth, read_act_groundtruth
from detection.sinks.annotated_video import draw_people
from detection.video import FrameStream, VideoWriter

__all__ = ["DemoReport", "run_demo", "render_groundtruth_preview"]


@dataclass
class DemoReport:
    """What the demo produced, with paths a user can open."""

    output_dir: Path
    dataset_root: Path
    config_path: Path
    previews: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"actdet demo finished in {self.seconds:.1f} s",
            f"  dataset (AVA layout):  {self.dataset_root}",
            f"  resolved config:       {self.config_path}",
        ]
        lines += [f"  ground-truth preview:  {p}" for p in self.previews]
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


def run_demo(cfg: Config, quiet: bool = False) -> DemoReport:
    """Prepare the configured dataset and write the ground-truth previews under ``cfg.output_dir``."""
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

    gt = read_act_groundtruth(root / "annotations" / "gt_tubes.pkl")
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    val_videos = gt.test_videos[0] if gt.test_videos else []
    report = DemoReport(output_dir=out_dir, dataset_root=root, config_path=config_path)
    for video in tqdm(val_videos, desc="previews", unit="video", disable=quiet):
        src = root / "videos" / f"{video}.mp4"
        report.previews.append(render_groundtruth_preview(src, gt, video, out_dir / "preview" / f"{video}.mp4"))
    report.seconds = time.perf_counter() - start
    (out_dir / "demo.json").write_text(
        json.dumps(
            {
                "dataset_root": str(root),
                "config": str(config_path),
                "previews": [str(p) for p in report.previews],
                "dataset_counts": manifest.get("counts", {}),
                "seconds": round(report.seconds, 2),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return report
