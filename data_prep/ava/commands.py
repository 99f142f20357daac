"""``actdet prep ava {download,cut,frames,lists,annotations,proposals,all,verify} --root DIR``.

Each step subcommand runs :func:`data_prep.ava.pipeline.run_step` and prints the step's summary; ``all``
runs the chain with :func:`~data_prep.ava.pipeline.run_all` (complete steps are skipped, ``--from`` /
``--to`` pick a stretch, ``--keep-going`` goes past a failed step); ``verify`` checks a prepared tree.
Exit status: 0 when nothing failed, 1 when some item failed, 2 on bad usage, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_ava_parser"]

_DETECTOR_FLAGS = ("backend", "model", "weights", "score_threshold", "batch_size", "device")


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _detector(args: argparse.Namespace):
    """The detector config of the proposals options, or None (the default detector) when none is given."""
    if getattr(args, "detector_config", None) is None and all(getattr(args, k, None) is None for k in _DETECTOR_FLAGS):
        return None
    from detection.config import DetectorConfig, config_from_dict, config_to_dict, load_config

    base = load_config(args.detector_config).detector if args.detector_config else DetectorConfig()
    section = config_to_dict(base)
    section.update({k: getattr(args, k) for k in _DETECTOR_FLAGS if getattr(args, k, None) is not None})
    return config_from_dict(DetectorConfig, section, prefix="detector")


def _options(args: argparse.Namespace):
    from data_prep.ava.pipeline import PrepOptions

    values: dict[str, Any] = {}
    for name in ("video_list", "base_url", "annotations_url", "names", "retries", "timeout_s", "start_s", "end_s",
                 "naming", "frames_source", "fps", "quality", "allow_missing", "label_map", "time_offset",
                 "proposals_name", "jobs"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if getattr(args, "no_annotations", False):
        values["annotations"] = False
    if getattr(args, "splits", None):
        values["splits"] = tuple(args.splits)
    return PrepOptions(**values, detector=_detector(args), progress=_progress(args))


def _print_report(report) -> None:
    from data_prep.ava.annotations import format_statistics

    if report.details.get("up_to_date"):
        print(f"{report.step}: up to date ({len(report.skipped)} items, recorded {report.details.get('finished_at')})")
        return
    print(report.summary())
    if report.step == "annotations":
        text = format_statistics(report)
        if text:
            print(text)


def _cmd_step(args: argparse.Namespace) -> int:
    from data_prep.ava.pipeline import run_step

    report = run_step(args.root, args.ava_step, _options(args))
    _print_report(report)
    return 0 if report.ok else 1


def _cmd_all(args: argparse.Namespace) -> int:
    from data_prep.ava.pipeline import run_all

    result = run_all(args.root, _options(args), start=args.start_step, stop=args.stop_step,
                     keep_going=args.keep_going, on_start=lambda step: print(f"== {step}", flush=True),
                     on_report=_print_report)
    if result.message:
        print(result.message, file=sys.stderr)
    return 0 if result.ok else 1


def _cmd_verify(args: argparse.Namespace) -> int:
    from data_prep.ava.pipeline import verify

    report = verify(args.root, naming=args.naming, splits=args.splits)
    print(report.summary())
    for file, messages in report.details.get("annotations", {}).get("errors", {}).items():
        print(f"{len(messages)} errors in {file}, first: {messages[0]}")
    if report.ok:
        print(f"verified: {report.details['videos']} videos, {report.details['frames']} frames")
    return 0 if report.ok else 1


def _interruptible(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except KeyboardInterrupt:
            print(f"actdet prep ava {args.ava_step}: interrupted; what is finished is kept, rerun to continue",
                  file=sys.stderr)
            return 130
    return run


# -- the parser ----------------------------------------------------------------------------------------------


def _add_download(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("download")
    g.add_argument("--video-list", help="file or URL listing the video file names (default: AVA's trainval list)")
    g.add_argument("--base-url", help="URL of the folder holding the videos (default: AVA's)")
    g.add_argument("--annotations-url", help="URL or path of the annotation zip (default: AVA v2.2's)")
    g.add_argument("--no-annotations", action="store_true", help="do not fetch the annotation zip")
    g.add_argument("--retries", type=int, help="further attempts per file (default: 3)")
    g.add_argument("--timeout", dest="timeout_s", type=float, help="seconds to connect and per read (default: 30)")


def _add_names(p: argparse.ArgumentParser) -> None:
    p.add_argument("--names", nargs="+", metavar="NAME", help="only these videos (file names or ids)")


def _add_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, help="videos processed at once (default: the step's)")


def _add_cut(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cut")
    g.add_argument("--start", dest="start_s", type=float, help="first second kept (default: 900)")
    g.add_argument("--end", dest="end_s", type=float, help="last second kept, inclusive (default: 1800)")


def _add_naming(p: argparse.ArgumentParser) -> None:
    p.add_argument("--naming", choices=["pyslowfast", "mmaction2"],
                   help="frame file names: <vid>/<vid>_000001.jpg (pyslowfast, default) or <vid>/img_00001.jpg")


def _add_fps(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fps", type=float, help="frames per second of the frame folders (default: 30)")


def _add_frames(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality", type=int, help="JPEG quality, ffmpeg -q:v 1 (best) .. 31 (default: 1)")
    p.add_argument("--source", dest="frames_source", metavar="FOLDER",
                   help="folder under ROOT holding the videos (default: videos_15min; converted datasets: videos)")


def _add_lists(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-missing", action="store_true", default=None,
                   help="ground-truth videos without frames are a note, not a failure (partial download)")


def _add_time(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-offset", type=float, help="AVA timestamp of a clip's first frame (default: 900)")


def _add_annotations(p: argparse.ArgumentParser) -> None:
    p.add_argument("--label-map", help="full class list (.pbtxt) to check action ids against (default: found in "
                   "ROOT/annotations)")


def _add_proposals(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("proposals (person detector)")
    g.add_argument("--detector-config", help="config name or YAML whose detector section is used")
    g.add_argument("--backend", choices=["torchvision", "detectron2", "precomputed"], help="detector backend")
    g.add_argument("--model", help="detector model (torchvision name, Detectron2 config, or a box file for "
                   "precomputed)")
    g.add_argument("--weights", help="'default' (published COCO weights, downloaded) or a local weights file")
    g.add_argument("--score-threshold", type=float, help="keep people scoring at least this")
    g.add_argument("--batch-size", type=int, help="keyframes per forward pass")
    g.add_argument("--device", help="auto, cpu or cuda[:k]")
    g.add_argument("--splits", nargs="+", metavar="SPLIT", help="splits to detect on (default: train val)")
    g.add_argument("--proposals-name", help="output name under ROOT/annotations, with {split} "
                   "(default: ava_{split}_predicted_boxes.csv, PySlowFast's)")


_STEP_HELP = {
    "download": ("download the videos and the annotation zip", "Fetch the listed videos into ROOT/videos "
                 "(resumed, verified, skipped when complete) and extract the annotation zip into ROOT/annotations."),
    "cut": ("cut the annotated 15 minutes", "Cut ROOT/videos/* to ROOT/videos_15min/ (seconds --start to --end, "
            "inclusive) with the pinned ffmpeg."),
    "frames": ("extract JPEG frames", "Extract --fps frames per second of ROOT/videos_15min/* into "
               "ROOT/frames/<vid>/ with the pinned ffmpeg."),
    "lists": ("write PySlowFast's frame lists", "Write ROOT/frame_lists/{train,val}.csv (and test.csv for videos "
              "in no ground truth) from the frames on disk; the ground truth decides the split."),
    "annotations": ("check the annotations and print statistics", "Check the ground truth, exclusions, "
                    "proposals and label maps of ROOT/annotations (every problem as file:line) and print "
                    "statistics per split."),
    "proposals": ("person boxes for every keyframe", "Run the person detector (actdet detect) on every keyframe "
                  "of each split's videos and write ROOT/annotations/ava_{split}_predicted_boxes.csv."),
}


def add_ava_parser(prep_sub: argparse._SubParsersAction) -> None:
    """Register ``actdet prep ava ...`` under the ``prep`` subcommands."""
    ava = prep_sub.add_parser(
        "ava", help="prepare AVA (download, cut, frames, lists, annotations, proposals)",
        description="Prepare AVA in PySlowFast's layout under --root: videos/, videos_15min/, frames/, "
                    "frame_lists/, annotations/. Each step reads the previous step's folder; "
                    "ROOT/prep_manifest.json records what each step did.")
    steps = ava.add_subparsers(dest="ava_step", metavar="STEP", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, help="dataset root")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    adders = {
        "download": [_add_download, _add_names, _add_jobs],
        "cut": [_add_cut, _add_names, _add_jobs],
        "frames": [_add_naming, _add_fps, _add_frames, _add_names, _add_jobs],
        "lists": [_add_naming, _add_lists],
        "annotations": [_add_naming, _add_fps, _add_time, _add_annotations],
        "proposals": [_add_naming, _add_fps, _add_time, _add_proposals],
    }
    for step, funcs in adders.items():
        short, long = _STEP_HELP[step]
        p = steps.add_parser(step, parents=[common], help=short, description=long)
        for add in funcs:
            add(p)
        p.set_defaults(func=_interruptible(_cmd_step))

    from data_prep.ava.pipeline import STEPS

    every = steps.add_parser(
        "all", parents=[common], help="run every step, continuing where the last run stopped",
        description="Run download, cut, frames, lists, annotations and proposals in order. A step whose last "
                    "run is complete, with the same options and outputs that are still there, is skipped; a "
                    "step with failures stops the chain unless --keep-going.")
    every.add_argument("--from", dest="start_step", choices=STEPS, help="first step to run (default: download)")
    every.add_argument("--to", dest="stop_step", choices=STEPS, help="last step to run (default: proposals)")
    every.add_argument("--keep-going", action="store_true", help="go on after a step with failures")
    for add in (_add_download, _add_names, _add_jobs, _add_cut, _add_naming, _add_fps, _add_frames, _add_lists,
                _add_time, _add_annotations, _add_proposals):
        add(every)
    every.set_defaults(func=_interruptible(_cmd_all))

    ver = steps.add_parser(
        "verify", parents=[common], help="check a prepared tree",
        description="Check that every frame list parses and its frames exist with the counts the lists step "
                    "recorded, that the annotations pass their checks and that each split has proposals.")
    _add_naming(ver)
    ver.add_argument("--splits", nargs="+", metavar="SPLIT", help="splits that need proposals (default: the "
                     "proposals step's, else those with ground truth)")
    ver.set_defaults(func=_interruptible(_cmd_verify))
