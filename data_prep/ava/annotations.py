"""``actdet prep ava annotations``: check the files of ``ROOT/annotations/`` and count what they hold.

Files are found by name (the first name that exists wins; AVA's release names first, then ours):

- ground truth per split: ``ava_{split}_v2.2.csv``, ``ava_{split}_v2.1.csv``, ``{split}.csv``;
- excluded timestamps: ``ava_{split}_excluded_timestamps_v2.2.csv``, ``..._v2.1.csv``,
  ``{split}_excluded_timestamps.csv`` (also for ``test``);
- proposals (every one present is checked): ``ava_{split}_predicted_boxes.csv`` (PySlowFast's),
  ``{split}_predicted_boxes.csv`` (the synthetic generator's);
- label maps: the full class list ``ava_action_list_v2.2.pbtxt`` / ``ava_action_list_v2.1.pbtxt`` /
  ``label_map.pbtxt`` (or the one passed in), and the evaluated subset ``*_for_activitynet_*.pbtxt``.

What is an error (the file is in ``failed``; every one is reported as ``file:line: what``):
malformed rows (column count, a field that is not a number, non-finite values, an inverted box: the rules
of :func:`detection.formats.ava.read_ava_table`), text that is not UTF-8, a box outside [0, 1] or of zero
width or height, a ground-truth row without an action id, an action id outside the label map, an unsafe
video id, a keyframe after the last frame or before the first of its video (checked where
``ROOT/frames/<vid>`` exists, with ``fps`` and ``time_offset``), a proposal score outside [0, 1], and a
label map that does not parse.

Action ids: AVA's ground truth holds all 80 classes while the ActivityNet label map lists the 60 that are
evaluated. Ids are checked against the full list: the ``.pbtxt`` that is not an ActivityNet subset, else,
when only the ActivityNet subset is there, the 80-class list shipped in ``configs/ava`` (then an id among
the 80 but not the 60 is counted as "not evaluated", which the evaluator ignores, not an error).

What is a warning (reported the same way, the file still passes): exact duplicate rows, fractional
timestamps in ground truth (PySlowFast reads whole seconds), excluded keyframes that are annotated, video
ids with neither frames nor a video on disk (a partial download), ground truth without person ids.

Statistics per split (``details["statistics"]``, printed by :func:`format_statistics`): videos, keyframes,
person boxes, people, labels, labels per box, per-class counts, excluded keyframes, proposals.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.ava.report import StepReport
from detection.formats.ava import AvaCheck, AvaTable, Kind, check_ava_csv, check_exclusions
from detection.structures import LabelMap

__all__ = [
    "AnnotationFiles",
    "FULL_AVA_LABEL_MAP",
    "check_annotations",
    "find_annotations",
    "format_statistics",
]

ANNOTATIONS_DIR = "annotations"
SPLITS = ("train", "val", "test")
GROUNDTRUTH_NAMES = ("ava_{split}_v2.2.csv", "ava_{split}_v2.1.csv", "{split}.csv")
EXCLUSION_NAMES = (
    "ava_{split}_excluded_timestamps_v2.2.csv",
    "ava_{split}_excluded_timestamps_v2.1.csv",
    "{split}_excluded_timestamps.csv",
)
PROPOSAL_NAMES = ("ava_{split}_predicted_boxes.csv", "{split}_predicted_boxes.csv")
FULL_LABEL_MAP_NAMES = ("ava_action_list_v2.2.pbtxt", "ava_action_list_v2.1.pbtxt", "label_map.pbtxt")
FULL_AVA_LABEL_MAP = "ava/ava_action_list_v2.2.pbtxt"  # shipped in configs/: all 80 AVA classes
MAX_LISTED = 1000  # messages kept per file and kind in the report (all are counted)
TOP_CLASSES = 5  # classes shown at each end of the per-class counts


@dataclass
class AnnotationFiles:
    """The annotation files of a dataset root, by role (paths that exist)."""

    root: Path
    groundtruth: dict[str, Path] = field(default_factory=dict)  # split -> CSV
    exclusions: dict[str, Path] = field(default_factory=dict)  # split -> CSV
    proposals: dict[str, list[Path]] = field(default_factory=dict)  # split -> CSVs
    label_map: Path | None = None  # the full class list
    evaluated_map: Path | None = None  # the ActivityNet subset
    unused: list[Path] = field(default_factory=list)  # lower-ranked candidates of a role already filled

    def expected_groundtruth(self) -> list[str]:
        return [name.format(split=s) for name in GROUNDTRUTH_NAMES for s in ("train", "val")]

    def all_files(self) -> list[Path]:
        files = [*self.groundtruth.values(), *self.exclusions.values()]
        files += [p for paths in self.proposals.values() for p in paths]
        files += [p for p in (self.label_map, self.evaluated_map) if p is not None]
        return files


def find_annotations(root: str | os.PathLike, label_map: str | os.PathLike | None = None) -> AnnotationFiles:
    """The annotation files under ``ROOT/annotations`` (see the module's notes for the names).

    ``label_map``: a ``.pbtxt`` to use as the full class list instead of the one found (a path, or a name
    relative to ``ROOT/annotations``).
    """
    root = Path(root)
    folder = root / ANNOTATIONS_DIR
    found = AnnotationFiles(root)

    def first(names: tuple[str, ...], split: str) -> Path | None:
        present = [folder / n.format(split=split) for n in names if (folder / n.format(split=split)).is_file()]
        found.unused += present[1:]
        return present[0] if present else None

    for split in SPLITS:
        if split != "test" and (gt := first(GROUNDTRUTH_NAMES, split)) is not None:
            found.groundtruth[split] = gt
        if (ex := first(EXCLUSION_NAMES, split)) is not None:
            found.exclusions[split] = ex
        proposals = [folder / n.format(split=split) for n in PROPOSAL_NAMES]
        proposals = [p for p in proposals if p.is_file()]
        if proposals:
            found.proposals[split] = proposals
    pbtxt = sorted(folder.glob("*.pbtxt")) if folder.is_dir() else []
    subsets = [p for p in pbtxt if "for_activitynet" in p.name]
    found.evaluated_map = subsets[-1] if subsets else None  # the newest version sorts last
    if label_map is not None:
        given = Path(label_map)
        found.label_map = given if given.is_absolute() or given.exists() else folder / given
    else:
        full = [folder / n for n in FULL_LABEL_MAP_NAMES if (folder / n).is_file()]
        others = [p for p in pbtxt if p not in subsets and p not in full]
        candidates = full + others
        found.label_map = candidates[0] if candidates else None
    return found


@dataclass
class _Issues:
    """Problems of one file: (line, ``file:line: what``) errors and warnings."""

    path: Path
    errors: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[tuple[int, str]] = field(default_factory=list)
    bad_rows: set[int] = field(default_factory=set)  # rows (of the parsed table) with an error

    def add_messages(self, messages: list[str]) -> None:
        """Errors already written as ``file:line: what`` (by the readers of detection.formats.ava)."""
        for message in messages:
            line = message.split(": ", 1)[0].rsplit(":", 1)[-1]
            self.errors.append((int(line) if line.isdigit() else 0, message))

    def add(self, kind: str, line: int, what: str) -> None:
        (self.errors if kind == "error" else self.warnings).append((line, f"{self.path}:{line}: {what}"))

    def add_rows(self, kind: str, lines: np.ndarray, mask: np.ndarray, what: Callable[[int], str]) -> None:
        """One message per row where ``mask`` holds; ``what(i)`` says what is wrong with row ``i``."""
        for i in np.flatnonzero(mask).tolist():
            self.add(kind, int(lines[i]), what(i))
            if kind == "error":
                self.bad_rows.add(i)


def _row_text(table, i: int) -> str:
    box = ",".join(f"{v:g}" for v in table.boxes[i].tolist())
    action = "" if table.action_ids[i] < 0 else str(int(table.action_ids[i]))
    return f"{table.video_ids[i]},{table.timestamps[i]:g},{box},{action}"


def _safe_ids(ids: np.ndarray) -> dict[str, bool]:
    from detection.persons.detect_job import validate_video_id

    out = {}
    for vid in np.unique(ids).tolist():
        try:
            validate_video_id(vid, "")
            out[vid] = True
        except ValueError:
            out[vid] = False
    return out


def _codes(table, with_box: bool = False, extra: tuple[np.ndarray, ...] = ()) -> np.ndarray:
    """Row keys as one float64 matrix (video code, timestamp[, box][, extra columns]) for ``np.unique``."""
    _, video_code = np.unique(table.video_ids, return_inverse=True)
    cols = [video_code.astype(np.float64), table.timestamps]
    if with_box:
        cols += [table.boxes[:, k] for k in range(4)]
    cols += [np.nan_to_num(np.asarray(c, np.float64), nan=-1e300) for c in extra]
    return np.stack(cols, axis=1) if len(table) else np.zeros((0, len(cols)))


def _count_unique(matrix: np.ndarray) -> int:
    return int(len(np.unique(matrix, axis=0))) if len(matrix) else 0


@dataclass
class _Context:
    root: Path
    known_ids: np.ndarray | None  # ids allowed in ground truth (None: no label map, not checked)
    evaluated: np.ndarray | None  # ids the evaluator counts (None: all known)
    frame_counts: dict[str, int]  # video id -> frames on disk (videos with a frames folder)
    media: set[str] | None  # video ids with frames or a video file (None: no media on disk yet)
    fps: float
    time_offset: float


def _check_boxes(path: Path, kind: Kind, ctx: _Context, groundtruth: bool) -> tuple[AvaCheck, _Issues]:
    """Parse a box CSV and find every problem of its rows (see the module's notes)."""
    check = check_ava_csv(path, kind)
    issues = _Issues(path)
    issues.add_messages(check.problems)
    table, lines = check.table, check.lines
    if not len(table):
        return check, issues
    boxes = table.boxes
    outside = ((boxes < 0) | (boxes > 1)).any(axis=1)
    issues.add_rows("error", lines, outside, lambda i: f"box outside [0, 1] (normalized x1,y1,x2,y2 expected): "
                                                      f"{_row_text(table, i)}")
    empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    issues.add_rows("error", lines, empty, lambda i: f"empty box (zero width or height): {_row_text(table, i)}")
    safe = _safe_ids(table.video_ids)
    unsafe = np.array([not safe[v] for v in table.video_ids.tolist()])
    issues.add_rows("error", lines, unsafe, lambda i: f"video id {table.video_ids[i]!r} may only contain letters, "
                                                      f"digits, '_', '-' and '.' (not first)")
    if groundtruth:
        no_action = table.action_ids < 0
        issues.add_rows("error", lines, no_action, lambda i: f"no action id (ground truth needs one): "
                                                             f"{_row_text(table, i)}")
        if ctx.known_ids is not None:
            unknown = ~no_action & ~np.isin(table.action_ids, ctx.known_ids)
            issues.add_rows("error", lines, unknown, lambda i: f"action id {int(table.action_ids[i])} is not in the "
                                                               f"label map: {_row_text(table, i)}")
        fractional = table.timestamps != np.round(table.timestamps)
        issues.add_rows("warning", lines, fractional, lambda i: f"fractional timestamp {table.timestamps[i]:g} "
                                                                f"(PySlowFast reads whole seconds)")
        no_person = np.isnan(table.last)
        if no_person.any():
            issues.add("warning", int(lines[int(np.argmax(no_person))]),
                       f"{int(no_person.sum())} rows have no person id (7 columns), from this line on")
    else:
        scores = table.last
        bad_score = ~np.isnan(scores) & ((scores < 0) | (scores > 1))
        issues.add_rows("error", lines, bad_score, lambda i: f"score {table.last[i]:g} outside [0, 1]")
    # Keyframes outside the frames of their video.
    if ctx.frame_counts:
        counts = np.array([ctx.frame_counts.get(v, -1) for v in table.video_ids.tolist()], dtype=np.int64)
        index = np.round((table.timestamps - ctx.time_offset) * ctx.fps).astype(np.int64)
        outside_video = (counts >= 0) & ((index < 0) | (index >= counts))
        issues.add_rows("error", lines, outside_video, lambda i: (
            f"timestamp {table.timestamps[i]:g} is frame {int(index[i])} of {table.video_ids[i]}, which has "
            f"{int(counts[i])} frames (timestamps {ctx.time_offset:g} .. "
            f"{ctx.time_offset + (int(counts[i]) - 1) / ctx.fps:g} at {ctx.fps:g} fps)"))
    # Videos with nothing on disk: one warning at the first row of each.
    if ctx.media is not None:
        ids, first_rows = np.unique(table.video_ids, return_index=True)
        for vid, i in zip(ids.tolist(), first_rows.tolist(), strict=True):
            if vid not in ctx.media and safe[vid]:
                issues.add("warning", int(lines[i]), f"video {vid} has no frames (frames/{vid}) and no video file")
    # Exact duplicates.
    keys = _codes(table, with_box=True, extra=(table.action_ids, table.last))
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    duplicate = first[inverse] != np.arange(len(table))
    issues.add_rows("warning", lines, duplicate, lambda i: f"duplicate of line {int(lines[first[inverse[i]]])}")
    return check, issues


def _without(table: AvaTable, rows: set[int]) -> AvaTable:
    """``table`` less the given rows (the statistics count the rows without errors)."""
    if not rows:
        return table
    keep = np.ones(len(table), dtype=bool)
    keep[list(rows)] = False
    return AvaTable(table.video_ids[keep], table.timestamps[keep], table.boxes[keep], table.action_ids[keep],
                    table.last[keep])


def _groundtruth_stats(table, ctx: _Context, excluded: dict[tuple[str, int], int] | None) -> dict[str, Any]:
    labelled = table.action_ids >= 0
    boxes = _count_unique(_codes(table, with_box=True))
    labels = int(labelled.sum())
    people = None
    if len(table) and not np.isnan(table.last).any():
        people = _count_unique(_codes(table, extra=(table.last,))[:, [0, 2]])
    per_box = np.unique(_codes(table, with_box=True), axis=0, return_counts=True)[1] if len(table) else np.zeros(0)
    ids, counts = np.unique(table.action_ids[labelled], return_counts=True)
    classes = {int(i): int(c) for i, c in zip(ids.tolist(), counts.tolist(), strict=True)}
    stats: dict[str, Any] = {
        "videos": int(len(np.unique(table.video_ids))),
        "keyframes": _count_unique(_codes(table)),
        "boxes": boxes,
        "people": people,
        "labels": labels,
        "labels_per_box": round(labels / boxes, 3) if boxes else 0.0,
        "max_labels_per_box": int(per_box.max()) if len(per_box) else 0,
        "classes": classes,
    }
    if ctx.evaluated is not None:
        not_evaluated = ~np.isin(table.action_ids, ctx.evaluated) & labelled
        stats["labels_not_evaluated"] = int(not_evaluated.sum())
    if ctx.known_ids is not None:
        stats["classes_without_labels"] = [int(i) for i in ctx.known_ids.tolist() if int(i) not in classes]
    if excluded is not None:
        keys = set(zip(table.video_ids.tolist(), np.round(table.timestamps).astype(np.int64).tolist(), strict=True))
        stats["excluded_keyframes"] = len(excluded)
        stats["excluded_keyframes_annotated"] = len(keys & set(excluded))
    return stats


def _proposal_stats(table) -> dict[str, Any]:
    keyframes = _count_unique(_codes(table))
    scores = table.last[~np.isnan(table.last)]
    return {
        "videos": int(len(np.unique(table.video_ids))),
        "keyframes": keyframes,
        "boxes": len(table),
        "boxes_per_keyframe": round(len(table) / keyframes, 3) if keyframes else 0.0,
        "min_score": round(float(scores.min()), 4) if len(scores) else None,
    }


def _label_maps(found: AnnotationFiles, report: StepReport) -> tuple[np.ndarray | None, np.ndarray | None,
                                                                     dict[int, str]]:
    """(ids allowed in ground truth, evaluated ids, names) from the label maps; failures go to the report."""
    from detection.config import shipped_file

    def load(path: Path) -> LabelMap | None:
        try:
            return LabelMap.from_pbtxt(path)
        except (OSError, ValueError) as err:
            report.failed[_rel(found.root, path)] = str(err)
            return None

    full = load(found.label_map) if found.label_map is not None else None
    subset = load(found.evaluated_map) if found.evaluated_map is not None else None
    if full is None and subset is not None and found.label_map is None:
        full = LabelMap.from_pbtxt(shipped_file(FULL_AVA_LABEL_MAP))
        report.details["label_map_note"] = (f"only the evaluated subset {found.evaluated_map.name} is in annotations/; "
                                            f"ids are checked against the full list configs/{FULL_AVA_LABEL_MAP}")
    if full is None and subset is None:
        if found.label_map is None and found.evaluated_map is None:
            report.failed[f"{ANNOTATIONS_DIR}/*.pbtxt"] = f"no label map (.pbtxt) in {found.root / ANNOTATIONS_DIR}"
        return None, None, {}
    names = dict(full) if full is not None else {}
    if subset is not None:
        names.update({i: n for i, n in subset if i not in names})
    known = np.asarray(sorted(names), dtype=np.int64)
    evaluated = np.asarray(sorted(subset.ids), dtype=np.int64) if subset is not None else None
    return known, evaluated, names


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _media(root: Path, naming: str) -> tuple[dict[str, int], set[str] | None, list[str]]:
    """(frame counts of the video folders, ids with frames or a video file or None, folders without frames)."""
    from data_prep.ava.frames import count_frames
    from data_prep.ava.lists import list_videos

    counts: dict[str, int] = {}
    empty: list[str] = []
    for vid in list_videos(root):
        try:
            n = count_frames(root, vid, naming)
        except ValueError:
            continue
        if n:
            counts[vid] = n
        else:
            empty.append(vid)
    media = set(counts)
    for folder in ("videos_15min", "videos"):
        if (root / folder).is_dir():
            media |= {Path(e.name).stem for e in os.scandir(root / folder)
                      if e.is_file() and not e.name.startswith(".")}
    return counts, (media or None), empty


def check_annotations(root: str | os.PathLike, *, label_map: str | os.PathLike | None = None,
                      naming: str = "pyslowfast", fps: float = 30.0, time_offset: float = 900.0,
                      max_listed: int = MAX_LISTED) -> StepReport:
    """Check the annotation files of ``ROOT/annotations`` and count what they hold (see the module's notes).

    ``label_map``: the full class list to check action ids against (default: found by name). ``naming``,
    ``fps``, ``time_offset``: how a timestamp becomes a frame of ``ROOT/frames/<vid>`` (frame
    ``round((t - time_offset) * fps)``). Items of the report are file paths relative to ROOT: ``done``
    passed, ``failed`` has errors (reason: the first ones and the count). ``details``: ``files`` (role ->
    paths), ``errors`` / ``warnings`` (file -> ``file:line: what`` messages, at most ``max_listed`` each),
    ``counts`` (file -> numbers of errors and warnings), ``statistics`` (per split), ``frames_checked``.
    """
    began = time.monotonic()
    root = Path(root)
    report = StepReport("annotations")
    found = find_annotations(root, label_map)
    report.details["files"] = {
        "groundtruth": {s: _rel(root, p) for s, p in found.groundtruth.items()},
        "exclusions": {s: _rel(root, p) for s, p in found.exclusions.items()},
        "proposals": {s: [_rel(root, p) for p in ps] for s, ps in found.proposals.items()},
        "label_map": _rel(root, found.label_map) if found.label_map else None,
        "evaluated_label_map": _rel(root, found.evaluated_map) if found.evaluated_map else None,
        "not_used": [_rel(root, p) for p in found.unused],
    }
    if not found.groundtruth:
        report.failed[ANNOTATIONS_DIR] = (f"no ground-truth CSV in {root / ANNOTATIONS_DIR} (expected one of "
                                          f"{', '.join(found.expected_groundtruth())})")
    known, evaluated, names = _label_maps(found, report)
    frame_counts, media, empty = _media(root, naming)
    ctx = _Context(root, known, evaluated, frame_counts, media, fps, time_offset)
    report.details["frames_checked"] = len(frame_counts)
    if empty:
        report.details["frame_folders_without_frames"] = empty[:max_listed]

    errors: dict[str, list[str]] = {}
    warnings: dict[str, list[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    statistics: dict[str, dict[str, Any]] = {}

    def record(path: Path, issues: _Issues) -> None:
        rel = _rel(root, path)
        issues.errors.sort(key=lambda item: item[0])
        issues.warnings.sort(key=lambda item: item[0])
        counts[rel] = {"errors": len(issues.errors), "warnings": len(issues.warnings)}
        if issues.errors:
            errors[rel] = [m for _, m in issues.errors[:max_listed]]
            first = "; ".join(m for _, m in issues.errors[:3])
            report.failed[rel] = f"{len(issues.errors)} errors: {first}" + (" ..." if len(issues.errors) > 3 else "")
        elif rel not in report.failed:
            report.done.append(rel)
        if issues.warnings:
            warnings[rel] = [m for _, m in issues.warnings[:max_listed]]

    excluded: dict[str, dict[tuple[str, int], int]] = {}
    for split, path in found.exclusions.items():
        keys, problems = check_exclusions(path)
        excluded[split] = keys
        issues = _Issues(path)
        issues.add_messages(problems)
        record(path, issues)

    for split, path in found.groundtruth.items():
        check, issues = _check_boxes(path, "groundtruth", ctx, groundtruth=True)
        table = check.table
        if split in excluded and len(table):
            rel_ex = _rel(root, found.exclusions[split])
            seconds = np.round(table.timestamps).astype(np.int64).tolist()
            for i, key in enumerate(zip(table.video_ids.tolist(), seconds, strict=True)):
                if key in excluded[split]:
                    issues.add("warning", int(check.lines[i]), f"keyframe {key[0]},{key[1]:04d} is excluded "
                               f"({rel_ex}:{excluded[split][key]}); the evaluator skips it")
        statistics[split] = _groundtruth_stats(_without(table, issues.bad_rows), ctx, excluded.get(split))
        statistics[split]["file"] = _rel(root, path)
        record(path, issues)
    for split, paths in found.proposals.items():
        for path in paths:
            check, issues = _check_boxes(path, "detections", ctx, groundtruth=False)
            statistics.setdefault(split, {}).setdefault("proposals", {})[_rel(root, path)] = _proposal_stats(
                _without(check.table, issues.bad_rows))
            record(path, issues)
    for path in (found.label_map, found.evaluated_map):
        if path is not None and _rel(root, path) not in report.failed and path.is_file():
            report.done.append(_rel(root, path))
    report.details.update(errors=errors, warnings=warnings, counts=counts, statistics=statistics,
                          class_names={str(i): n for i, n in names.items()})
    report.seconds = time.monotonic() - began
    return report


def format_statistics(report: StepReport, max_messages: int = 20) -> str:
    """The annotations step's findings for a terminal: per split counts, class extremes, then problems."""
    details = report.details
    names = details.get("class_names", {})
    lines: list[str] = []
    for split, stats in details.get("statistics", {}).items():
        if "videos" in stats:
            people = stats["people"] if stats["people"] is not None else "n/a"
            lines.append(f"{split} ({stats['file']}): {stats['videos']} videos, {stats['keyframes']} keyframes, "
                         f"{stats['boxes']} person boxes, {people} people, {stats['labels']} labels "
                         f"({stats['labels_per_box']:g} per box, at most {stats['max_labels_per_box']})")
            if "labels_not_evaluated" in stats:
                lines.append(f"  {stats['labels_not_evaluated']} labels of classes that are not evaluated")
            if "excluded_keyframes" in stats:
                lines.append(f"  {stats['excluded_keyframes']} excluded keyframes, "
                             f"{stats['excluded_keyframes_annotated']} of them annotated")
            ranked = sorted(stats["classes"].items(), key=lambda kv: (-kv[1], int(kv[0])))

            def show(items: list) -> str:
                return ", ".join(f"{names.get(str(i), i)} ({i}): {c}" for i, c in items)

            if ranked:
                lines.append(f"  most labelled: {show(ranked[:TOP_CLASSES])}")
                if len(ranked) > TOP_CLASSES:
                    lines.append(f"  least labelled: {show(ranked[-TOP_CLASSES:][::-1])}")
            if stats.get("classes_without_labels"):
                lines.append(f"  {len(stats['classes_without_labels'])} classes of the label map have no label")
        for file, prop in stats.get("proposals", {}).items():
            lines.append(f"{split} proposals ({file}): {prop['boxes']} boxes on {prop['keyframes']} keyframes of "
                         f"{prop['videos']} videos ({prop['boxes_per_keyframe']:g} per keyframe)")
    for kind in ("errors", "warnings"):
        for file, messages in details.get(kind, {}).items():
            total = details.get("counts", {}).get(file, {}).get(kind, len(messages))
            lines.append(f"{total} {kind} in {file}:")
            lines += [f"  {m}" for m in messages[:max_messages]]
            if total > max_messages:
                lines.append(f"  ... and {total - max_messages} more (all in the manifest up to {MAX_LISTED})")
    return "\n".join(lines)
