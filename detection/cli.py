"""The ``actdet`` command line. Each subcommand parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from detection import __version__


def _quiet(args: argparse.Namespace) -> bool:
    """Progress bars only for a person watching a terminal."""
    return bool(args.quiet) or not sys.stderr.isatty()


def _cmd_demo(args: argparse.Namespace) -> int:
    from detection.config import load_config
    from detection.demo import run_demo

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"output_dir={args.out}")
    cfg = load_config(args.config, overrides)
    report = run_demo(cfg, quiet=_quiet(args))
    print(report.summary())
    return 0


def _cmd_prep_synthetic(args: argparse.Namespace) -> int:
    from data_prep.synthetic import SyntheticSpec, generate_dataset

    spec = SyntheticSpec(
        videos=args.videos,
        seconds=args.seconds,
        fps=args.fps,
        width=args.width,
        height=args.height,
        seed=args.seed,
        max_people=args.max_people,
        val_videos=args.val_videos,
        time_offset=args.time_offset,
        frames=not args.no_frames,
    )
    generate_dataset(args.out, spec, progress=not _quiet(args))
    print(f"synthetic AVA-format dataset in {args.out} ({args.videos} videos × {args.seconds:g} s, seed {args.seed})")
    return 0


def _cmd_eval_frame_map(args: argparse.Namespace) -> int:
    from eval.frame_map import evaluate_frame_map_files

    result = evaluate_frame_map_files(
        args.gt, args.det, args.labelmap, exclusions_path=args.exclusions, protocol=args.protocol
    )
    if args.out:
        result.write_report(args.out, pr_classes=args.pr_classes)
        print(f"report written to {args.out}")
    print(result.table())
    return 0


def _cmd_eval_video_map(args: argparse.Namespace) -> int:
    from eval.video_map import evaluate_video_map_files

    result = evaluate_video_map_files(
        args.gt, args.tubes, frame_dets_path=args.frame_dets, protocol=args.protocol, split=args.split
    )
    if args.out:
        result.write_report(args.out)
        print(f"report written to {args.out}")
    print(result.table())
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate detections", description="Evaluate detections against ground truth.")
    ev_sub = ev.add_subparsers(dest="eval_command", metavar="METRIC", required=True)
    fm = ev_sub.add_parser(
        "frame-map",
        help="AVA frame-mAP, as the official ActivityNet evaluator computes it",
        description=(
            "Frame-mAP at IoU 0.5 over AVA-format CSVs. --protocol activitynet reproduces the official "
            "evaluator (top 50 detections per keyframe); pyslowfast reproduces PySlowFast's variant."
        ),
    )
    fm.add_argument("--gt", required=True, help="ground-truth CSV (video_id,sec,x1,y1,x2,y2,action_id[,person_id])")
    fm.add_argument("--det", required=True, help="detections CSV (video_id,sec,x1,y1,x2,y2,action_id,score)")
    fm.add_argument("--labelmap", required=True, help="label map .pbtxt: the evaluated classes")
    fm.add_argument("--exclusions", help="excluded timestamps CSV (video_id,sec)")
    fm.add_argument("--protocol", choices=["activitynet", "pyslowfast"], default="activitynet")
    fm.add_argument("--out", help="write metrics.json, per_class.csv, table.txt and plots here")
    fm.add_argument("--pr-classes", nargs="+", type=int, metavar="ID", help="label ids for the PR-curve plot")
    fm.set_defaults(func=_cmd_eval_frame_map)

    vm = ev_sub.add_parser(
        "video-map",
        help="video-mAP and frame-AP of action tubes (UCF101-24, JHMDB, MultiSports)",
        description="Video-mAP at tube IoU 0.2/0.5/0.75 and 0.5:0.95, and frame-AP, with a named protocol.",
    )
    vm.add_argument("--gt", required=True, help="ground-truth tubes, ACT pickle layout")
    vm.add_argument("--tubes", required=True, help="detected tubes: the project's tubes JSON, or the standard pickle")
    vm.add_argument("--frame-dets", help="frame detections N×8 (.npy, or a pickle of it) for frame-AP")
    vm.add_argument("--protocol", choices=["act", "multisports"], default="act")
    vm.add_argument("--split", type=int, default=0, help="which test split of the ground truth (default: 0)")
    vm.add_argument("--out", help="write metrics.json, per_class.csv, table.txt and a plot here")
    vm.set_defaults(func=_cmd_eval_video_map)


def _model_errors() -> tuple[type[BaseException], ...]:
    """Errors a model command reports in one line (weights that cannot be fetched, unknown names)."""
    from detection.models.weights import WeightsUnavailableError

    return KeyError, WeightsUnavailableError


def _message(err: BaseException) -> str:
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)  # KeyError quotes its text


def _cmd_model_list(args: argparse.Namespace) -> int:
    from detection.models.zoo import ZOO

    if args.json:
        import json

        print(json.dumps([entry.to_dict() for entry in ZOO.values()], indent=2))
        return 0
    for entry in ZOO.values():
        metric = f"{entry.metric.name}: {entry.metric.value:g}" if entry.metric else f"no metric ({entry.metric_note})"
        print(f"{entry.name}\n  {entry.description}\n  weights: {entry.weights}\n  trained on: {entry.trained_on}"
              f"\n  input: {entry.input_spec.describe()}\n  {metric}")
        if entry.metric:
            print(f"  source: {entry.metric.source}")
    return 0


def _cmd_model_info(args: argparse.Namespace) -> int:
    from detection.models.zoo import model_info

    try:
        info = model_info(args.model)
    except _model_errors() as err:
        print(f"actdet model info: error: {_message(err)}", file=sys.stderr)
        return 2
    if args.json:
        import json

        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in info.items()))
    return 0


def _cmd_model_convert(args: argparse.Namespace) -> int:
    from detection.models.zoo import convert

    try:
        result = convert(args.source, args.out, config=args.config, progress=not _quiet(args))
    except _model_errors() as err:
        print(f"actdet model convert: error: {_message(err)}", file=sys.stderr)
        return 2
    if result.load_report is not None:
        print(result.load_report.summary())
    print(f"wrote {result.path} ({len(result.model.label_map)} classes)")
    return 0


def _add_model(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser(
        "model",
        help="list, inspect and convert models",
        description="The model zoo: named models with their weights, input contract and reported metric.",
    )
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    ls = model_sub.add_parser("list", help="the zoo's models and their metadata", description="List the model zoo.")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_cmd_model_list)

    info = model_sub.add_parser(
        "info",
        help="parameters, GFLOPs per clip, input size and feature stride of a model",
        description="Build a model without downloading weights and report its size and cost (fvcore, one box).",
    )
    info.add_argument("model", metavar="CONFIG|NAME", help="zoo name, config name/path or actdet checkpoint")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=_cmd_model_info)

    conv = model_sub.add_parser(
        "convert",
        help="turn zoo weights or a torchvision/pytorchvideo/PySlowFast checkpoint into an actdet checkpoint",
        description=(
            "Write an actdet-1 checkpoint. SOURCE: a zoo name (its pretrained weights), an actdet checkpoint, "
            "pytorchvideo's AVA .pyth (with --config pytorchvideo/NAME), or backbone weights ('torchvision', "
            "'pytorchvideo:mvit_base_16x4', a checkpoint file) with --config naming the MViT config."
        ),
    )
    conv.add_argument("source", metavar="SOURCE", help="zoo name, weights name or checkpoint file")
    conv.add_argument("--config", help="config name/path (or pytorchvideo/NAME) the weights belong to")
    conv.add_argument("--out", required=True, help="checkpoint file to write")
    conv.add_argument("--quiet", action="store_true", help="no download progress bar")
    conv.set_defaults(func=_cmd_model_convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actdet",
        description="Spatio-temporal action detection: who does what, where and when in video.",
    )
    parser.add_argument("--version", action="version", version=f"actdet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the main job on the built-in synthetic default (offline)",
        description="Prepare the synthetic AVA-format dataset and write ground-truth preview videos.",
    )
    demo.add_argument("--config", default="synthetic/tiny", help="config name or YAML path (default: %(default)s)")
    demo.add_argument("--out", help="output folder (default: the config's output_dir)")
    demo.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.synthetic.videos=2"
    )
    demo.set_defaults(func=_cmd_demo)

    prep = sub.add_parser("prep", help="prepare datasets", description="Prepare datasets in the AVA layout.")
    prep_sub = prep.add_subparsers(dest="prep_command", metavar="DATASET", required=True)
    syn = prep_sub.add_parser(
        "synthetic",
        parents=[common],
        help="render a synthetic AVA-format dataset",
        description=(
            "Render videos of articulated figures whose actions differ only in motion, with AVA-format "
            "ground truth, label map, exclusions, frame lists, person proposals and ACT ground-truth tubes."
        ),
    )
    syn.add_argument("--out", required=True, help="dataset root to write")
    syn.add_argument("--videos", type=int, default=4, help="number of videos (default: %(default)s)")
    syn.add_argument("--seconds", type=float, default=12.0, help="length of each video (default: %(default)s)")
    syn.add_argument("--seed", type=int, default=0, help="random seed; same seed, same dataset (default: %(default)s)")
    syn.add_argument("--fps", type=int, default=30, help="frame rate (default: %(default)s)")
    syn.add_argument("--width", type=int, default=320, help="frame width in pixels (default: %(default)s)")
    syn.add_argument("--height", type=int, default=240, help="frame height in pixels (default: %(default)s)")
    syn.add_argument("--max-people", type=int, default=4, help="most people on screen at once (default: %(default)s)")
    syn.add_argument("--val-videos", type=int, default=None, help="videos in the val split (default: a quarter)")
    syn.add_argument(
        "--time-offset",
        type=int,
        default=900,
        help="AVA timestamp of each video's first frame (default: %(default)s, like AVA's 15-min clips)",
    )
    syn.add_argument("--no-frames", action="store_true", help="skip writing JPEG frames")
    syn.set_defaults(func=_cmd_prep_synthetic)

    _add_eval(sub)
    _add_model(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``actdet`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from detection.config import ConfigError
    from detection.video import VideoReadError

    try:
        return args.func(args)
    except (ConfigError, VideoReadError, FileNotFoundError, ValueError) as err:
        print(f"actdet {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
