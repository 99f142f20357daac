"""``actdet prep ava lists``: PySlowFast's frame lists, ``ROOT/frames/`` + ground truth -> ``ROOT/frame_lists/``.

A frame list is what PySlowFast's ``ava_helper.load_image_lists`` reads: a header line, then one line per
frame, ``original_vido_id video_id frame_id path labels`` separated by spaces, where ``video_id`` is the
video's 0-based position in the file, ``frame_id`` the 0-based frame index, ``path`` the frame's file
relative to ``ROOT/frames`` and ``labels`` is ``""`` (see :func:`detection.formats.ava.write_frame_list`).

Splits come from the ground truth: the videos named in the train ground-truth CSV go to ``train.csv``,
those in the val one to ``val.csv`` (files found as :func:`data_prep.ava.annotations.find_annotations`
says: AVA's ``ava_train_v2.2.csv`` / ``ava_val_v2.2.csv``, then v2.1, then our ``train.csv`` / ``val.csv``).
Videos with frames but in no ground-truth file (AVA's test videos, whose labels are not public) go to
``test.csv``, written only when there are some; PySlowFast reads train and val only, ``actdet`` can run
inference from ``test.csv``. Videos are listed in id order, each one's frames in frame order.

Every listed frame exists: each video's folder is read, and its frames must be numbered 1..N without a gap
(N is the count recorded in the report). A video with a gap, or named by the ground truth but without
frames, is a failure of this step (the lists leave it out); ``allow_missing`` turns the second into a note
(a partial download). Lists are written atomically, so an interrupted run leaves the previous lists or the
new ones, never half a file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from data_prep.ava.report import StepReport
from detection.formats.ava import FrameListEntry, check_ava_csv, write_frame_list

__all__ = ["LISTS_DIR", "list_videos", "write_frame_lists"]

LISTS_DIR = "frame_lists"
GROUNDTRUTH_SPLITS = ("train", "val")
TEST_SPLIT = "test"


def list_videos(root: str | os.PathLike) -> list[str]:
    """Names of the video folders under ``ROOT/frames`` (hidden and temporary folders left out), sorted."""
    frames_dir = Path(root) / "frames"
    if not frames_dir.is_dir():
        return []
    return sorted(e.name for e in os.scandir(frames_dir) if e.is_dir() and not e.name.startswith("."))


def _frames_of(root: Path, video_id: str, naming: str) -> tuple[list[str], str | None]:
    """(frame paths relative to ``ROOT/frames`` in frame order, None) or ([], what is wrong)."""
    from data_prep.ava.frames import frame_file_name, frame_files

    try:
        files = frame_files(root, video_id, naming)
    except ValueError as err:  # an id that cannot be a file name
        return [], str(err)
    if not files:
        return [], f"frames/{video_id} holds no frames named like {frame_file_name(video_id, 0, naming)} " \
                   f"({naming} naming)"
    names = [frame_file_name(video_id, i, naming) for i in range(len(files))]
    present = [p.relative_to(root / "frames").as_posix() for p in files]
    if present != names:
        first = next(n for n, p in zip(names, present, strict=True) if n != p)
        return [], f"frames/{video_id}: {len(files)} frames but {first} is missing (frames must be numbered " \
                   f"from 1 without gaps; rerun the frames step)"
    return names, None


def write_frame_lists(root: str | os.PathLike, naming: str = "pyslowfast", progress: bool = False, *,
                      allow_missing: bool = False) -> StepReport:
    """Write ``ROOT/frame_lists/{train,val}.csv`` (and ``test.csv``) from the frames on disk.

    ``naming``: the frame files' naming (``pyslowfast`` or ``mmaction2``, as the frames step wrote them).
    Items of the report are video ids (``done``: listed). ``failed``: videos whose frames are not complete
    (reason names the missing frame), videos of the ground truth without frames (unless ``allow_missing``),
    or the ground truth / frames folder when there is none. ``details``: per split the list file, the ground
    truth it came from, videos and frames; ``frame_counts`` (video id -> frames listed); ``missing`` (ground
    truth videos without frames, with ``allow_missing``).
    """
    from tqdm import tqdm

    from data_prep.ava.annotations import find_annotations

    began = time.monotonic()
    root = Path(root)
    report = StepReport("lists", details={"naming": naming, "output_dir": LISTS_DIR})
    if not (root / "frames").is_dir():
        report.failed["frames"] = f"{root / 'frames'} does not exist: run the frames step first"
        report.seconds = time.monotonic() - began
        return report
    found = find_annotations(root)
    split_ids: dict[str, list[str]] = {}
    for split in GROUNDTRUTH_SPLITS:
        gt = found.groundtruth.get(split)
        if gt is None:
            continue
        # The valid rows are enough to know the videos; the annotations step reports the bad ones.
        split_ids[split] = sorted(set(check_ava_csv(gt, "groundtruth").table.video_ids.tolist()))
    if not split_ids:
        report.failed["annotations"] = (f"no ground-truth CSV in {root / 'annotations'} (expected one of "
                                        f"{', '.join(found.expected_groundtruth())}): it decides the splits")
        report.seconds = time.monotonic() - began
        return report

    on_disk = list_videos(root)
    in_gt = {vid for ids in split_ids.values() for vid in ids}
    frames: dict[str, list[str]] = {}
    for vid in tqdm(on_disk, desc="lists", unit="video", disable=None if progress else True):
        names, problem = _frames_of(root, vid, naming)
        if problem is not None:
            report.failed[vid] = problem
        else:
            frames[vid] = names
    splits = dict(split_ids)
    test_ids = [vid for vid in on_disk if vid not in in_gt and vid in frames]
    if test_ids:
        splits[TEST_SPLIT] = test_ids

    missing: dict[str, list[str]] = {}
    summary: dict[str, dict] = {}
    lists_dir = root / LISTS_DIR
    for split, ids in splits.items():
        source = found.groundtruth.get(split)
        entries: list[FrameListEntry] = []
        listed: list[str] = []
        for vid in ids:
            if vid not in frames:
                if vid not in report.failed:
                    missing.setdefault(split, []).append(vid)
                    if not allow_missing:
                        report.failed[vid] = f"named in {source.relative_to(root)} but has no frames in frames/{vid}"
                continue
            entries += [FrameListEntry(vid, len(listed), i, path) for i, path in enumerate(frames[vid])]
            listed.append(vid)
        write_frame_list(lists_dir / f"{split}.csv", entries)
        summary[split] = {
            "file": f"{LISTS_DIR}/{split}.csv",
            "groundtruth": source.relative_to(root).as_posix() if source is not None else None,
            "videos": len(listed),
            "frames": len(entries),
        }
        report.done += [vid for vid in listed if vid not in report.done]
    if TEST_SPLIT not in splits:
        (lists_dir / f"{TEST_SPLIT}.csv").unlink(missing_ok=True)  # a test list of an earlier run is stale
    both = sorted(set(split_ids.get("train", ())) & set(split_ids.get("val", ())))
    report.details.update(
        splits=summary,
        frame_counts={vid: len(frames[vid]) for vid in report.done},
        missing=missing,
        in_train_and_val=both,
    )
    report.seconds = time.monotonic() - began
    return report
