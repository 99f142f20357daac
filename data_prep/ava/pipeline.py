"""The AVA preparation chain: run one step, run them all (resuming), verify a prepared tree.

Steps, each reading the previous one's folder under the dataset root (PySlowFast's DATASET.md layout):

==============  =========================================  ===========================================
step            reads                                      writes
==============  =========================================  ===========================================
``download``    a video list, the annotation zip (URLs)    ``videos/``, ``annotations/``
``cut``         ``videos/``                                ``videos_15min/``
``frames``      ``videos_15min/``                          ``frames/<vid>/``
``lists``       ``frames/``, ground truth                  ``frame_lists/{train,val[,test]}.csv``
``annotations`` ``annotations/``, ``frames/``              nothing (checks, statistics)
``proposals``   ``frame_lists/``, ``frames/``              ``annotations/ava_{split}_predicted_boxes.csv``
==============  =========================================  ===========================================

Every run of a step is recorded in ``ROOT/prep_manifest.json`` (:mod:`data_prep.ava.manifest`) with the
options that shape its output and a fingerprint of what it produced (sizes and modification times of files,
frame counts of folders). :func:`run_all` skips a step whose last run is complete, with the same options,
and whose fingerprint still matches; once a step runs, every later step runs too (its input may have
changed; each step skips the work already done). A step with failures stops the chain unless
``keep_going``. :func:`verify` checks a prepared tree against its lists, frames and annotations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep.ava.manifest import json_safe, record_step, step_record
from data_prep.ava.report import StepReport

if TYPE_CHECKING:
    from detection.config import DetectorConfig

__all__ = ["STEPS", "PrepOptions", "RunAllResult", "run_all", "run_step", "step_options", "verify"]

STEPS = ("download", "cut", "frames", "lists", "annotations", "proposals")


@dataclass
class PrepOptions:
    """The options of every step (each step uses its own; ``None`` means the step's default).

    Seconds for times, frames per second for rates. ``names``: restrict download / cut / frames to these
    videos (file names or ids). ``time_offset``: the AVA timestamp of a clip's first frame (900 for the
    15-minute clips cut at 900 s). ``detector``: the person detector of the proposals step.
    """

    # download
    video_list: str | None = None  # file or URL; None: AVA's official trainval list
    base_url: str | None = None  # None: AVA's official video folder
    annotations: bool = True  # also fetch and extract the annotation zip
    annotations_url: str | None = None  # None: AVA v2.2's zip
    names: list[str] | None = None
    retries: int = 3
    timeout_s: float = 30.0
    # cut
    start_s: float = 900.0
    end_s: float = 1800.0
    # frames
    naming: str = "pyslowfast"
    frames_source: str = "videos_15min"  # the folder of videos the frames come from (converted datasets: videos)
    fps: float = 30.0
    quality: int = 1
    # lists
    allow_missing: bool = False
    # annotations, proposals
    label_map: str | None = None
    time_offset: float = 900.0
    detector: DetectorConfig | None = None
    splits: tuple[str, ...] = ("train", "val")
    proposals_name: str = "ava_{split}_predicted_boxes.csv"
    # every step
    jobs: int | None = None  # None: each step's default
    progress: bool = False


def _jobs(options: PrepOptions) -> dict[str, int]:
    return {} if options.jobs is None else {"jobs": options.jobs}


def step_options(step: str, options: PrepOptions) -> dict[str, Any]:
    """The options that shape ``step``'s output, as the manifest records them (defaults filled in)."""
    _check_step(step)
    o = options
    if step == "download":
        from data_prep.ava.download import OFFICIAL_ANNOTATIONS, OFFICIAL_VIDEO_LIST, OFFICIAL_VIDEO_URL

        return {"video_list": o.video_list or OFFICIAL_VIDEO_LIST, "base_url": o.base_url or OFFICIAL_VIDEO_URL,
                "annotations": o.annotations,
                "annotations_url": (o.annotations_url or OFFICIAL_ANNOTATIONS) if o.annotations else None,
                "names": o.names}
    if step == "cut":
        return {"start_s": o.start_s, "end_s": o.end_s, "names": o.names}
    if step == "frames":
        return {"naming": o.naming, "fps": o.fps, "quality": o.quality, "names": o.names, "source": o.frames_source}
    if step == "lists":
        return {"naming": o.naming, "allow_missing": o.allow_missing}
    if step == "annotations":
        return {"label_map": o.label_map, "naming": o.naming, "fps": o.fps, "time_offset": o.time_offset}
    from detection.config import DetectorConfig, config_to_dict
    from detection.persons.detect_job import detector_fingerprint

    # Batch size and device give the same boxes; the size and time of a weights or box file are kept.
    detector = detector_fingerprint(config_to_dict(o.detector if o.detector is not None else DetectorConfig()))
    return json_safe({"detector": detector, "splits": list(o.splits), "name": o.proposals_name, "fps": o.fps,
                       "time_offset": o.time_offset, "naming": o.naming})


def _check_step(step: str) -> None:
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; the steps are {', '.join(STEPS)}")


def _merge_download(videos: StepReport, annotations: StepReport | None) -> StepReport:
    """One ``download`` report: the videos' items, then the annotation files' as ``annotations/<name>``."""
    report = StepReport("download", list(videos.done), list(videos.skipped), dict(videos.failed),
                        {"videos": videos.details}, videos.seconds)
    if annotations is not None:
        report.done += [f"annotations/{n}" for n in annotations.done]
        report.skipped += [f"annotations/{n}" for n in annotations.skipped]
        report.failed.update({f"annotations/{n}": why for n, why in annotations.failed.items()})
        report.details["annotations"] = annotations.details
        report.seconds += annotations.seconds
    return report


def _run(root: Path, step: str, o: PrepOptions) -> StepReport:
    if step == "download":
        from data_prep.ava import download

        extra = {k: v for k, v in (("video_list", o.video_list), ("base_url", o.base_url)) if v is not None}
        videos = download.download_videos(root, names=o.names, retries=o.retries, timeout_s=o.timeout_s,
                                          progress=o.progress, **extra, **_jobs(o))
        annotations = None
        if o.annotations:
            extra = {"url": o.annotations_url} if o.annotations_url is not None else {}
            annotations = download.download_annotations(root, timeout_s=o.timeout_s, retries=o.retries,
                                                        progress=o.progress, **extra)
        return _merge_download(videos, annotations)
    if step == "cut":
        from data_prep.ava.cut import cut_videos

        return cut_videos(root, start_s=o.start_s, end_s=o.end_s, names=o.names, progress=o.progress, **_jobs(o))
    if step == "frames":
        from data_prep.ava.frames import extract_frames

        return extract_frames(root, naming=o.naming, fps=o.fps, quality=o.quality, names=o.names,
                              source_dir=o.frames_source, progress=o.progress, **_jobs(o))
    if step == "lists":
        from data_prep.ava.lists import write_frame_lists

        return write_frame_lists(root, naming=o.naming, progress=o.progress, allow_missing=o.allow_missing)
    if step == "annotations":
        from data_prep.ava.annotations import check_annotations

        return check_annotations(root, label_map=o.label_map, naming=o.naming, fps=o.fps, time_offset=o.time_offset)
    from data_prep.ava.proposals import make_proposals

    return make_proposals(root, o.detector, splits=o.splits, progress=o.progress, name=o.proposals_name, fps=o.fps,
                          time_offset=o.time_offset)


def run_step(root: str | os.PathLike, step: str, options: PrepOptions | None = None) -> StepReport:
    """Run one step over ``root`` and record its report in the manifest.

    A step that cannot start for a reason of the tree or the tools (a missing input folder, no ffmpeg,
    detector weights that cannot be had offline) returns a report with ``failed[step]`` saying why, which
    is recorded as well. Raises ValueError for an unknown step or invalid options (nothing is recorded).
    """
    _check_step(step)
    options = options or PrepOptions()
    root = Path(root)
    began = time.monotonic()
    try:
        report = _run(root, step, options)
    except (OSError, RuntimeError, ImportError) as err:  # includes FFmpegError, missing weights, no detectron2
        report = StepReport(step, failed={step: f"{type(err).__name__}: {err}"}, seconds=time.monotonic() - began)
    record_step(root, report, step_options(step, options), fingerprint(root, step, report, options.naming))
    return report


# -- fingerprints: what a step produced, to tell later whether it is still there ------------------------------


def _file_state(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _frame_count(root: Path, video_id: str, naming: str) -> int:
    from data_prep.ava.frames import count_frames

    try:
        return count_frames(root, video_id, naming)
    except ValueError:
        return 0


def _clip_of(root: Path, folder: str, video_id: str) -> Path | None:
    base = root / folder
    if not base.is_dir():
        return None
    return next((p for p in sorted(base.iterdir()) if p.is_file() and p.stem == video_id), None)


def fingerprint(root: str | os.PathLike, step: str, report: StepReport, naming: str = "pyslowfast") -> dict[str, Any]:
    """What ``report``'s step produced (read), keyed by path relative to root: ``[size, mtime_ns]`` of a
    file, the frame count of a ``frames/<vid>`` folder. Items that failed are left out."""
    root = Path(root)
    items = [*report.done, *report.skipped]
    out: dict[str, Any] = {}
    if step == "download":
        for item in items:
            rel = item if item.startswith("annotations/") else f"videos/{item}"
            out[rel] = _file_state(root / rel)
    elif step == "cut":
        for vid in items:
            clip = _clip_of(root, "videos_15min", vid)
            if clip is not None:
                out[f"videos_15min/{clip.name}"] = _file_state(clip)
    elif step == "frames":
        out = {f"frames/{vid}": _frame_count(root, vid, naming) for vid in items}
    elif step == "lists":
        out = {split["file"]: _file_state(root / split["file"]) for split in report.details.get("splits", {}).values()}
        out.update({f"frames/{vid}": n for vid, n in report.details.get("frame_counts", {}).items()})
    elif step == "annotations":
        # Its inputs, less the proposals: the proposals step rewrites those after this one.
        written_later = {p for paths in report.details.get("files", {}).get("proposals", {}).values() for p in paths}
        out = {rel: _file_state(root / rel) for rel in report.done + list(report.failed)
               if rel not in written_later and (root / rel).is_file()}
    elif step == "proposals":
        for split in report.details.get("splits", {}).values():
            out[split["file"]] = _file_state(root / split["file"])
    return out


def changed_outputs(root: str | os.PathLike, recorded: dict[str, Any], naming: str = "pyslowfast") -> list[str]:
    """The entries of a recorded fingerprint that no longer match the tree (missing, rewritten, recounted)."""
    root = Path(root)
    changed = []
    for rel, value in recorded.items():
        if rel.startswith("frames/"):
            now: Any = _frame_count(root, rel.split("/", 1)[1], naming)
        else:
            now = _file_state(root / rel)
        if now != value:
            changed.append(rel)
    return changed


@dataclass
class RunAllResult:
    """What :func:`run_all` did: one report per step it reached (skipped steps too), and why it stopped."""

    reports: list[StepReport] = field(default_factory=list)
    stopped_after: str | None = None  # the failed step that stopped the chain
    message: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)


def run_all(
    root: str | os.PathLike,
    options: PrepOptions | None = None,
    start: str | None = None,
    stop: str | None = None,
    *,
    keep_going: bool = False,
    on_start: Callable[[str], None] | None = None,
    on_report: Callable[[StepReport], None] | None = None,
) -> RunAllResult:
    """Run the steps from ``start`` to ``stop`` (inclusive; default: all), continuing where an earlier run
    stopped (see the module's notes for when a step is skipped).

    A skipped step's report has ``details["up_to_date"]`` and lists the recorded items as ``skipped``.
    ``on_start(step)`` / ``on_report(report)`` are called as steps begin and end. Raises ValueError for an
    unknown step or ``start`` after ``stop``.
    """
    options = options or PrepOptions()
    first = STEPS.index(start) if start is not None else 0
    last = STEPS.index(stop) if stop is not None else len(STEPS) - 1
    for name in (start, stop):
        if name is not None:
            _check_step(name)
    if first > last:
        raise ValueError(f"--from {start} comes after --to {stop} (order: {', '.join(STEPS)})")
    result = RunAllResult()
    rerun = False  # once a step ran, the later ones run too
    for step in STEPS[first : last + 1]:
        record = step_record(root, step)
        wanted = json_safe(step_options(step, options))
        if (not rerun and record is not None and record.complete and record.options == wanted
                and not changed_outputs(root, record.get("outputs", {}), options.naming)):
            previous = record.report
            report = StepReport(step, skipped=previous.done + previous.skipped,
                                details={"up_to_date": True, "finished_at": record.get("finished_at")})
        else:
            if on_start is not None:
                on_start(step)
            report = run_step(root, step, options)
            rerun = True
        result.reports.append(report)
        if on_report is not None:
            on_report(report)
        if not report.ok and not keep_going:
            result.stopped_after = step
            later = STEPS[STEPS.index(step) + 1 : last + 1]
            result.message = (f"stopped after '{step}': {len(report.failed)} item(s) failed"
                              + (f"; not run: {', '.join(later)}" if later else "")
                              + ". Fix the cause and rerun (complete steps are skipped), or pass --keep-going.")
            break
    return result


# -- verify ---------------------------------------------------------------------------------------------------


def verify(root: str | os.PathLike, naming: str | None = None, *, splits: Sequence[str] | None = None) -> StepReport:
    """Check a prepared tree; returns a report of step ``"verify"``.

    Checks: each frame list of ``ROOT/frame_lists`` parses, lists each video's frames 0..N-1 with ``N`` the
    count the manifest's ``lists`` step recorded and the count on disk, and every listed path exists; the
    annotations pass :func:`~data_prep.ava.annotations.check_annotations` (with the manifest's options);
    each split has its proposals file. ``naming``: the frame naming (default: the manifest's, else
    ``pyslowfast``). ``splits``: the splits that need proposals (default: the manifest's proposals splits,
    else those with a ground-truth file). Items: ``frame_lists/<split>.csv``, ``frames/<vid>``, annotation
    files, proposals files; ``failed`` names each with what is wrong.
    """
    from data_prep.ava.annotations import check_annotations, find_annotations
    from data_prep.ava.proposals import proposals_path
    from detection.formats.ava import read_frame_list

    began = time.monotonic()
    root = Path(root)
    report = StepReport("verify")
    lists_record = step_record(root, "lists")
    recorded_counts: dict[str, int] = {}
    if lists_record is not None:
        recorded_counts = lists_record.report.details.get("frame_counts", {})
        naming = naming or lists_record.options.get("naming")
    naming = naming or "pyslowfast"

    # Frame lists and frames.
    list_files = sorted((root / "frame_lists").glob("*.csv")) if (root / "frame_lists").is_dir() else []
    if not list_files:
        report.failed["frame_lists"] = f"no frame lists in {root / 'frame_lists'}: run the lists step"
    listed_total: dict[str, int] = {}
    for path in list_files:
        rel = path.relative_to(root).as_posix()
        try:
            entries = read_frame_list(path)
        except (OSError, ValueError) as err:
            report.failed[rel] = str(err)
            continue
        per_video: dict[str, list] = {}
        for e in entries:
            per_video.setdefault(e.original_video_id, []).append(e)
        problems = []
        for position, (vid, rows) in enumerate(per_video.items()):
            if [e.frame_index for e in rows] != list(range(len(rows))) or {e.video_index for e in rows} != {position}:
                problems.append(f"{vid}: frame ids are not 0..{len(rows) - 1} with video id {position}")
            if vid in recorded_counts and recorded_counts[vid] != len(rows):
                problems.append(f"{vid}: {len(rows)} frames listed, the lists step recorded {recorded_counts[vid]} "
                                f"(truncated or edited list)")
            listed_total[vid] = len(rows)
        if not entries:
            problems.append("no frames listed")
        if problems:
            more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
            report.failed[rel] = "; ".join(problems[:5]) + more
        else:
            report.done.append(rel)
        for vid, rows in per_video.items():
            _verify_frames(root, vid, rows, naming, recorded_counts.get(vid), report)

    # Annotations, with the options the annotations step last ran with.
    annotations_record = step_record(root, "annotations")
    opts = annotations_record.options if annotations_record is not None else {}
    checked = check_annotations(root, label_map=opts.get("label_map"), naming=naming, fps=opts.get("fps", 30.0),
                                time_offset=opts.get("time_offset", 900.0))
    report.done += checked.done
    report.failed.update(checked.failed)
    report.details["annotations"] = {"errors": checked.details.get("errors", {}),
                                     "counts": checked.details.get("counts", {})}

    # Proposals.
    proposals_record = step_record(root, "proposals")
    name = proposals_record.options.get("name") if proposals_record is not None else None
    if splits is None:
        splits = (proposals_record.options.get("splits") if proposals_record is not None
                  else [s for s in ("train", "val") if s in find_annotations(root).groundtruth])
    for split in splits:
        candidates = [proposals_path(root, split, name)] if name else []
        candidates += [p for p in find_annotations(root).proposals.get(split, []) if p not in candidates]
        present = next((p for p in candidates if p.is_file() and p.stat().st_size > 0), None)
        if present is None:
            wanted = (candidates[0] if candidates else proposals_path(root, split)).relative_to(root).as_posix()
            report.failed[wanted] = "missing or empty: run the proposals step (or put a proposals file there)"
        else:
            report.done.append(present.relative_to(root).as_posix())
    report.details.update(naming=naming, videos=len(listed_total), frames=sum(listed_total.values()))
    report.seconds = time.monotonic() - began
    return report


def _verify_frames(root: Path, video_id: str, rows: list, naming: str, recorded: int | None,
                   report: StepReport) -> None:
    """Every listed frame of one video exists, and the folder holds as many as listed."""
    item = f"frames/{video_id}"
    if item in report.failed or item in report.done:
        return
    folder = root / "frames" / video_id
    try:
        on_disk = {e.name for e in os.scandir(folder)}
    except OSError:
        report.failed[item] = f"{folder} is missing"
        return
    missing = [e.path for e in rows if e.path.split("/", 1)[-1] not in on_disk or not e.path.startswith(video_id + "/")]
    counted = _frame_count(root, video_id, naming)
    if missing:
        report.failed[item] = f"{len(missing)} listed frames are missing, e.g. {missing[0]}"
    elif counted != len(rows) or (recorded is not None and counted != recorded):
        report.failed[item] = (f"{counted} frames on disk, {len(rows)} listed"
                               + (f", {recorded} recorded by the lists step" if recorded is not None else ""))
    else:
        report.done.append(item)


def options_dict(options: PrepOptions) -> dict[str, Any]:
    """All options as plain JSON values (for printing)."""
    return json_safe(asdict(options))
