"""``actdet prep ava proposals``: person boxes on every keyframe of each split, through ``actdet detect``.

For each split (``train``, ``val`` by default) the videos are those of ``ROOT/frame_lists/<split>.csv`` (the
lists step's output; without it, the videos named by the split's ground truth). Each video is read from
its frames folder ``ROOT/frames/<vid>/`` (at ``fps``) or, without one, from ``ROOT/videos_15min/<vid>.*``.
:func:`detection.persons.detect_job.run_detect` runs the detector on the AVA keyframe schedule (one per
second, timestamps ``time_offset + k``: 900, 901, ... for the 15-minute clips) and writes
``ROOT/annotations/ava_<split>_predicted_boxes.csv``: PySlowFast's name (DATASET.md), which its config's
``TRAIN_PREDICT_BOX_LISTS`` / ``TEST_PREDICT_BOX_LISTS`` and our dataset read. ``name`` changes it (the
synthetic generator writes ``{split}_predicted_boxes.csv``); rows are AVA-format detections,
``video_id,timestamp,x1,y1,x2,y2,,score``.

Resumable: ``run_detect`` keeps each finished video of an interrupted run (same detector and settings), so
a rerun only does the rest; a video that cannot be read is reported and retried by the next run. The
detector (torch) is imported only here, when the step runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from data_prep.ava.report import StepReport

if TYPE_CHECKING:
    from detection.config import DetectorConfig

__all__ = ["DEFAULT_NAME", "make_proposals", "proposals_path", "split_videos"]

DEFAULT_NAME = "ava_{split}_predicted_boxes.csv"  # PySlowFast's names (DATASET.md)


def proposals_path(root: str | os.PathLike, split: str, name: str = DEFAULT_NAME) -> Path:
    """``ROOT/annotations/<name with {split} filled in>``; ValueError for a name without ``{split}``."""
    if "{split}" not in name or "/" in name or "\\" in name:
        raise ValueError(f"proposals name {name!r} must contain '{{split}}' and no folder, "
                         f"e.g. {DEFAULT_NAME!r}")
    return Path(root) / "annotations" / name.format(split=split)


def split_videos(root: str | os.PathLike, split: str) -> tuple[list[str], str]:
    """The video ids of a split and where they came from: its frame list, else its ground truth.

    Raises FileNotFoundError when neither exists.
    """
    from data_prep.ava.annotations import find_annotations
    from detection.formats.ava import check_ava_csv, read_frame_list

    root = Path(root)
    frame_list = root / "frame_lists" / f"{split}.csv"
    if frame_list.is_file():
        return list(dict.fromkeys(e.original_video_id for e in read_frame_list(frame_list))), f"frame_lists/{split}.csv"
    gt = find_annotations(root).groundtruth.get(split)
    if gt is None:
        raise FileNotFoundError(f"{split}: neither {frame_list} nor a ground-truth CSV in {root / 'annotations'}; "
                                f"run the lists step first")
    ids = sorted(set(check_ava_csv(gt, "groundtruth").table.video_ids.tolist()))
    return ids, gt.relative_to(root).as_posix()


def _input_of(root: Path, video_id: str) -> tuple[Path, str] | None:
    """(path, kind) of a video's input: its frames folder, else its clip in videos_15min; None if neither."""
    from detection.persons.detect_job import validate_video_id

    validate_video_id(video_id, "proposals")
    folder = root / "frames" / video_id
    if folder.is_dir():
        return folder, "frames"
    clips = root / "videos_15min"
    if clips.is_dir():
        for entry in sorted(clips.iterdir()):
            if entry.is_file() and entry.stem == video_id and not entry.name.startswith("."):
                return entry, "video"
    return None


def make_proposals(
    root: str | os.PathLike,
    detector: DetectorConfig | None = None,
    splits: Sequence[str] = ("train", "val"),
    resume: bool = True,
    progress: bool = False,
    *,
    name: str = DEFAULT_NAME,
    fps: float = 30.0,
    time_offset: float = 900.0,
    keyframes: str = "ava",
) -> StepReport:
    """Detect people on the keyframes of each split's videos and write one proposals CSV per split.

    ``detector``: the person detector's config (default: :class:`DetectorConfig`'s, torchvision Faster R-CNN
    with its COCO weights). ``name``: the output file name pattern under ``ROOT/annotations`` (``{split}``
    is replaced). ``fps``: frame rate of the frame folders; ``time_offset``: the AVA timestamp of each
    clip's first frame; ``keyframes``: the schedule (``ava``: every whole second). ``resume``: keep the
    videos an interrupted run finished. Items of the report are video ids (``skipped``: resumed from an
    earlier run); ``failed``: videos without input or that cannot be read, and a split without videos.
    ``details``: per split the output file, its source, videos and rows; the detector config. Raises
    what building the detector raises (missing weights offline, an unknown model) and the detector's own
    errors.
    """
    from detection.config import DetectorConfig, config_to_dict
    from detection.persons import factory
    from detection.persons.detect_job import DetectInput, detector_fingerprint, run_detect
    from detection.persons.keyframes import parse_keyframes

    began = time.monotonic()
    root = Path(root)
    cfg = detector if detector is not None else DetectorConfig()
    section = config_to_dict(cfg)
    schedule = parse_keyframes(keyframes)
    report = StepReport("proposals", details={"detector": section, "name": name, "keyframes": str(schedule),
                                              "fps": fps, "time_offset": time_offset, "splits": {}})
    jobs: list[tuple[str, Path, list[DetectInput], str]] = []
    for split in splits:
        out = proposals_path(root, split, name)
        try:
            ids, source = split_videos(root, split)
        except FileNotFoundError as err:
            report.failed[split] = str(err)
            continue
        inputs: list[DetectInput] = []
        for vid in ids:
            try:
                found = _input_of(root, vid)
            except ValueError as err:
                report.failed[vid] = str(err)
                continue
            if found is None:
                report.failed[vid] = f"no frames (frames/{vid}) and no clip (videos_15min/{vid}.*)"
                continue
            inputs.append(DetectInput(vid, *found))
        if not inputs:
            report.failed.setdefault(split, f"no videos to run on ({source})")
            continue
        jobs.append((split, out, inputs, source))
    if not jobs:
        report.seconds = time.monotonic() - began
        return report

    built = factory.build_detector(cfg, progress=progress)
    for split, out, inputs, source in jobs:
        summary = run_detect(inputs, out, built, schedule, time_offset=time_offset, folder_fps=fps,
                             fingerprint=detector_fingerprint(section), resume=resume, progress=progress)
        report.failed.update(summary.failed)
        report.skipped += summary.resumed
        report.done += [vid for vid in summary.done if vid not in summary.resumed]
        report.details["splits"][split] = {
            "file": out.relative_to(root).as_posix(),
            "source": source,
            "videos": len(summary.done),
            "rows": summary.rows,
            "keyframes": summary.keyframes,
        }
    report.seconds = time.monotonic() - began
    return report
