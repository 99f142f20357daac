"""The ``actdet`` command line. Each subcommand parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _print_result(result, out: str | None, **report_options) -> int:
    """Every evaluator's ending: the report files when ``--out`` is given, then the table."""
    if out:
        result.write_report(out, **report_options)
        print(f"report written to {out}")
    print(result.table())
    return 0


def _cmd_eval_frame_map(args: argparse.Namespace) -> int:
    from eval.frame_map import evaluate_frame_map_files

    result = evaluate_frame_map_files(
        args.gt, args.det, args.labelmap, exclusions_path=args.exclusions, protocol=args.protocol
    )
    return _print_result(result, args.out, pr_classes=args.pr_classes)


def _cmd_eval_video_map(args: argparse.Namespace) -> int:
    from eval.video_map import evaluate_video_map_files

    result = evaluate_video_map_files(
        args.gt, args.tubes, frame_dets_path=args.frame_dets, protocol=args.protocol, split=args.split
    )
    return _print_result(result, args.out)


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

    pe = ev_sub.add_parser(
        "persons",
        help="person detection quality of a proposals CSV (COCO AP, AP50, recall@0.5)",
        description=(
            "Person boxes of an AVA proposals/detections CSV against AVA ground truth: COCO AP (IoU 0.50:0.95), "
            "AP50, AR and recall@0.5 (ground-truth people with a proposal at IoU >= 0.5), overall and per video."
        ),
    )
    pe.add_argument("--gt", required=True, help="ground-truth CSV (video_id,sec,x1,y1,x2,y2,action_id[,person_id])")
    pe.add_argument("--proposals", required=True, help="person boxes CSV (video_id,sec,x1,y1,x2,y2[,action_id,score])")
    pe.add_argument("--exclusions", help="excluded timestamps CSV (video_id,sec)")
    pe.add_argument("--max-dets", type=int, default=100, help="proposals per keyframe for AP/AR (default: 100)")
    pe.add_argument("--out", help="write metrics.json, per_video.csv and table.txt here")
    pe.set_defaults(func=_cmd_eval_persons)


def _cmd_eval_persons(args: argparse.Namespace) -> int:
    from eval.persons import evaluate_persons_files

    result = evaluate_persons_files(args.gt, args.proposals, exclusions_path=args.exclusions, max_dets=args.max_dets)
    return _print_result(result, args.out)


def _parse_size(text: str) -> tuple[int, int]:
    import re

    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1280x720, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _cmd_link(args: argparse.Namespace) -> int:
    from detection.config import apply_overrides, config_from_dict, config_to_dict, load_config
    from detection.structures import LabelMap
    from detection.tubes.io import link_csv
    from detection.tubes.linker import LinkerConfig

    base = load_config(args.config).tubes if args.config else LinkerConfig()
    data = config_to_dict(base)
    apply_overrides(data, [o[len("tubes."):] if o.startswith("tubes.") else o for o in args.overrides])
    config = config_from_dict(LinkerConfig, data, prefix="tubes")
    fps, size, num_frames = args.fps, args.size, None
    if args.video:
        from detection.video import probe

        info = probe(args.video)
        fps = fps or info.fps
        size = size or (info.width, info.height)
        num_frames = info.num_frames
    summary = link_csv(
        args.detections,
        LabelMap.load(args.labelmap),
        args.out,
        fps=fps or 30.0,
        time_offset=args.time_offset,
        config=config,
        tracks=args.tracks,
        detections_out=args.detections_out,
        size=size,
        num_frames=num_frames,
        progress=not _quiet(args),
    )
    print(f"{summary}; tubes written to {args.out}")
    return 0


def _add_link(sub: argparse._SubParsersAction) -> None:
    link = sub.add_parser(
        "link",
        help="link keyframe detections into person tracks and action tubes",
        description=(
            "Track people across keyframes (Kalman + two-pass assignment), label each track's actions over "
            "time (per-class Viterbi with a fixed lag) and write action tubes as the project's tubes JSON. "
            "Config overrides (KEY=VALUE) set LinkerConfig fields, e.g. lag=4 switch_penalty=2 nms_iou=0.5."
        ),
    )
    link.add_argument("--detections", required=True,
                      help="detections CSV: video_id,timestamp,x1,y1,x2,y2,action_id,score[,track_id]")
    link.add_argument("--labelmap", required=True, help="label map (.pbtxt or id/name list): the score columns")
    link.add_argument("--out", required=True, help="tubes JSON to write")
    link.add_argument("--fps", type=float, default=None, help="frame rate (default: the --video's, else 30)")
    link.add_argument("--time-offset", type=float, default=0.0,
                      help="seconds subtracted from timestamps before they become frames (AVA: 900; default: 0)")
    link.add_argument("--video", help="the video: its size, frame count and frame rate (one-video CSVs)")
    link.add_argument("--size", type=_parse_size, metavar="WxH",
                      help="frame size in pixels for --tracks and the JSON (default: the --video's, else unknown)")
    link.add_argument("--tracks", help="also write the tracks as MOTChallenge txt ({video} in the path for several)")
    link.add_argument("--detections-out", help="also write the detections with a track-id column")
    link.add_argument("--config", help="config name or YAML whose 'tubes' section is the starting point")
    link.add_argument("--quiet", action="store_true", help="no progress bars")
    link.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="LinkerConfig overrides, e.g. lag=4")
    link.set_defaults(func=_cmd_link)


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


def _cmd_detect(args: argparse.Namespace) -> int:
    from detection.config import DetectorConfig, config_from_dict, config_to_dict, load_config
    from detection.persons import factory
    from detection.persons.detect_job import collect_inputs, detector_fingerprint, run_detect
    from detection.persons.keyframes import parse_keyframes

    schedule = parse_keyframes(args.keyframes)
    inputs = collect_inputs(args.inputs)
    section = config_to_dict(load_config(args.config).detector if args.config else DetectorConfig())
    flags = {"backend": args.backend, "model": args.model, "weights": args.weights,
             "score_threshold": args.score_threshold, "min_box_size": args.min_box_size,
             "max_people": args.max_people, "batch_size": args.batch_size, "device": args.device}
    section.update({key: value for key, value in flags.items() if value is not None})
    cfg = config_from_dict(DetectorConfig, section, prefix="detector")
    quiet = _quiet(args)
    errors: tuple[type[BaseException], ...] = (factory.BackendUnavailableError,)
    if cfg.backend != "precomputed":  # box files need no torch
        from detection.models.weights import WeightsUnavailableError

        errors += (WeightsUnavailableError,)
    try:
        detector = factory.build_detector(cfg, progress=not quiet)
    except errors as err:
        print(f"actdet detect: error: {err}", file=sys.stderr)
        return 2

    def report(inp, message: str) -> None:
        print(f"actdet detect: {inp.video_id}: failed: {message}", file=sys.stderr)

    try:
        summary = run_detect(inputs, args.out, detector, schedule, time_offset=args.time_offset,
                             folder_fps=args.folder_fps, fingerprint=detector_fingerprint(section),
                             resume=args.resume, progress=not quiet, on_failure=report)
    except KeyboardInterrupt:
        print("actdet detect: interrupted; finished videos are kept, rerun with --resume to continue",
              file=sys.stderr)
        return 130
    if summary.restarted:
        print("note: an earlier unfinished run with other settings was discarded", file=sys.stderr)
    print(summary.text())
    return 0 if summary.ok else 1


def _add_detect(sub: argparse._SubParsersAction) -> None:
    det = sub.add_parser(
        "detect",
        help="person boxes on the keyframes of videos or frame folders, as an AVA-format CSV",
        description=(
            "Run a person detector on the keyframes of each INPUT (a video file, or a folder of JPEG frames named "
            "like <vid>_000001.jpg or img_00001.jpg) and write AVA-format proposals "
            "(video_id,timestamp,x1,y1,x2,y2,,score; normalized boxes). Resumable: a rerun of an interrupted job "
            "skips the finished videos and writes the same file. A video that cannot be read is reported, the "
            "others go on, and the exit status is 1."
        ),
    )
    det.add_argument("inputs", nargs="+", metavar="INPUT", help="video files or frame folders; the video id is the "
                     "file stem or folder name")
    det.add_argument("--out", required=True, help="proposals CSV to write")
    det.add_argument("--keyframes", default="ava", help="ava (1 Hz at whole seconds), every:N (frames) or fps:F "
                     "(default: %(default)s)")
    det.add_argument("--time-offset", type=float, default=0.0, help="seconds added to every timestamp (AVA's "
                     "15-minute clips: 900; default: %(default)s)")
    det.add_argument("--folder-fps", type=float, default=30.0, help="frame rate of frame-folder inputs "
                     "(default: %(default)s); videos use their own")
    det.add_argument("--config", help="config name or YAML path whose detector section is used (default: the "
                     "schema's defaults)")
    det.add_argument("--backend", choices=["torchvision", "detectron2", "precomputed"], help="detector backend")
    det.add_argument("--model", help="torchvision: fasterrcnn_resnet50_fpn_v2, fasterrcnn_mobilenet_v3_large_fpn, "
                     "keypointrcnn_resnet50_fpn; detectron2: a model-zoo config; precomputed: a box CSV or "
                     "mmaction2 proposal pickle")
    det.add_argument("--weights", help="'default' (published COCO weights, downloaded) or a local weights file")
    det.add_argument("--score-threshold", type=float, help="keep people scoring at least this")
    det.add_argument("--min-box-size", type=float, help="minimum box height, as a fraction of the frame height")
    det.add_argument("--max-people", type=int, help="at most this many people per keyframe, best first")
    det.add_argument("--batch-size", type=int, help="keyframes per forward pass")
    det.add_argument("--device", help="auto (CUDA when available), cpu or cuda[:k]")
    det.add_argument(
        "--resume", action="store_true", help="reuse the videos an interrupted run finished (same settings)"
    )
    det.add_argument("--quiet", action="store_true", help="no progress bars")
    det.set_defaults(func=_cmd_detect)


def _cmd_train(args: argparse.Namespace) -> int:
    import os

    from detection.config import load_config
    from detection.engine.checkpoint import NonFiniteLossError
    from detection.engine.trainer import train

    cfg = load_config(args.config, list(args.overrides) + [f"output_dir={args.out}"])
    try:
        result = train(cfg, args.out, resume=args.resume, device=args.device, quiet=_quiet(args))
    except (NonFiniteLossError, FileExistsError) as err:
        print(f"actdet train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"actdet train: interrupted; continue with --resume (from {args.out}/last.pt)", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 reports
        best = "none" if result.best_metric is None else f"{100 * result.best_metric:.2f}"
        print(f"trained {result.step}/{result.total_steps} steps in {result.seconds / 60:.1f} min; best val frame-mAP "
              f"{best}; checkpoints: {result.last_checkpoint}"
              + (f", {result.best_checkpoint}" if result.best_checkpoint else ""))
    return 0


def _cmd_test(args: argparse.Namespace) -> int:
    from detection.config import config_from_dict, load_config
    from detection.engine.distributed import init_distributed
    from detection.engine.evaluator import evaluate
    from detection.models.zoo import load_checkpoint, read_actdet_checkpoint

    if args.config:
        cfg = load_config(args.config, list(args.overrides))
    else:
        from detection.config import Config, apply_overrides

        saved = read_actdet_checkpoint(args.weights)["config"]
        cfg = config_from_dict(Config, apply_overrides(dict(saved), list(args.overrides)))
    model = load_checkpoint(args.weights)
    ctx = init_distributed(args.device)
    try:
        if cfg.data.synthetic is not None and ctx.is_main:
            from detection.engine.trainer import prepare_data

            prepare_data(cfg, quiet=_quiet(args))
        ctx.barrier()
        model = model.to(ctx.device)
        result = evaluate(model, cfg, args.split, args.out, ctx=ctx, batch_size=args.batch_size,
                          gt_tubes=args.gt_tubes, video_map=not args.no_video_map, protocol=args.protocol,
                          quiet=_quiet(args))
    finally:
        ctx.close()
    if ctx.is_main:
        print(result.summary())
        print(f"detections: {result.detections_csv}; report in {args.out}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "train",
        help="train an action model (one CPU, one GPU, or many processes under torchrun)",
        description=(
            "Train the config's action model on its dataset's train split, validating on val (AVA frame-mAP; "
            "video-mAP when ground-truth tubes exist). Writes OUT/last.pt and OUT/best.pt (actdet checkpoints "
            "with the training state), OUT/metrics.jsonl, OUT/tensorboard/ and OUT/eval/step_*/. Several "
            "processes: torchrun --nproc_per_node N -m detection.cli train ... (train.batch_size is global)."
        ),
    )
    tr.add_argument("--config", required=True, help="config name (e.g. synthetic/tiny) or YAML path")
    tr.add_argument("--out", required=True, help="output folder of the run")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    tr.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-3")
    tr.set_defaults(func=_cmd_train)

    te = sub.add_parser(
        "test",
        help="AVA-format detections of a split with a trained model, and their frame-mAP / video-mAP",
        description=(
            "Score every box of the split's keyframes with the checkpoint, write OUT/detections.csv (AVA format: "
            "one row per box and class) and evaluate it: frame-mAP (official AVA protocol) and, when ground-truth "
            "tubes exist, video-mAP of the linked tubes (OUT/tubes.json)."
        ),
    )
    te.add_argument("--config", help="config name or YAML path (default: the config saved in the checkpoint)")
    te.add_argument("--weights", required=True, help="actdet checkpoint (e.g. OUT/best.pt of actdet train)")
    te.add_argument("--out", required=True, help="folder for the detections and the report")
    te.add_argument("--split", choices=["val", "test"], default="test",
                    help="split to score (test reads val's files unless the config names others; default: test)")
    te.add_argument("--gt-tubes", help="ACT ground-truth tubes pickle for video-mAP (default: the dataset's "
                    "annotations/gt_tubes.pkl when it exists)")
    te.add_argument("--no-video-map", action="store_true", help="frame-mAP only")
    te.add_argument("--protocol", choices=["activitynet", "pyslowfast"], default="activitynet",
                    help="frame-mAP protocol (default: %(default)s)")
    te.add_argument("--batch-size", type=int, default=None, help="clips per forward pass (default: the config's)")
    te.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default: auto)")
    te.add_argument("--quiet", action="store_true", help="no progress bar")
    te.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.root=/data/ava")
    te.set_defaults(func=_cmd_test)


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses

    from detection.config import DetectorConfig, RunConfig, config_from_dict, config_to_dict, load_config
    from detection.device import resolve_device
    from detection.models.weights import WeightsUnavailableError
    from detection.models.zoo import build_model, load_checkpoint
    from detection.persons import factory
    from detection.pipeline import detector_fingerprint_of, run_videos

    if (args.model is None) == (args.config is None):
        print("actdet run: error: give either --model NAME or --config FILE (with --weights CKPT)", file=sys.stderr)
        return 2
    cfg = load_config(args.config, args.set)
    run = config_to_dict(cfg.run)
    flags = {"keyframes": args.keyframes, "start_s": args.start, "end_s": args.end, "batch_size": args.batch_size,
             "device": args.device, "action_threshold": args.action_threshold, "time_offset": args.time_offset}
    run.update({k: v for k, v in flags.items() if v is not None})
    if args.no_video:
        run["video"] = False
    run_cfg = config_from_dict(RunConfig, run, prefix="run")
    det = config_to_dict(cfg.detector if args.config else DetectorConfig())
    if args.boxes:
        det.update(backend="precomputed", model=args.boxes)
    dflags = {"score_threshold": args.person_threshold, "max_people": args.max_people,
              "batch_size": args.batch_size, "device": args.device}
    det.update({k: v for k, v in dflags.items() if v is not None})
    det_cfg = config_from_dict(DetectorConfig, det, prefix="detector")
    quiet = _quiet(args)
    try:
        if args.config:
            model = load_checkpoint(args.weights) if args.weights else build_model(args.config)
            if not args.weights:
                print("warning: no --weights: the model runs with its initial weights", file=sys.stderr)
        else:
            model = build_model(args.model, pretrained=True)
        detector = factory.build_detector(det_cfg, progress=not quiet)
    except (factory.BackendUnavailableError, WeightsUnavailableError, KeyError) as err:
        print(f"actdet run: error: {_message(err)}", file=sys.stderr)
        return 2
    model = model.to(resolve_device(run_cfg.device)).eval()
    fingerprint: dict = {"model": args.model or args.config, "detector": detector_fingerprint_of(detector)}
    for name in (args.weights, args.model):
        if name and Path(name).is_file():
            stat = Path(name).stat()
            fingerprint[f"file:{Path(name).name}"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def report(result) -> None:
        if result.status == "failed":
            print(f"actdet run: {result.video_id}: failed: {result.error}", file=sys.stderr)

    try:
        summary = run_videos(args.videos, model, detector, args.out, run=run_cfg,
                             linker=dataclasses.replace(cfg.tubes), resume=args.resume, progress=not quiet,
                             fingerprint=fingerprint, on_video=report)
    except KeyboardInterrupt:
        print("actdet run: interrupted; finished videos are kept, rerun with --resume to continue", file=sys.stderr)
        return 130
    print(summary.text())
    return 0 if summary.ok else 1


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser(
        "run",
        help="detect actions in videos: CSV, tubes JSON, MOT tracks, annotated MP4, CVAT XML per video",
        description=(
            "Stream each VIDEO through person detection, the action model and tube linking, and write "
            "DIR/<video>/{detections.csv, tubes.json, tracks.txt, annotated.mp4, cvat.xml, run.json}. Memory stays "
            "bounded on any video length. A video that fails is reported, the others go on, and the exit status "
            "is 1. Under torchrun each process takes its share of the videos."
        ),
    )
    r.add_argument("videos", nargs="+", metavar="VIDEO", help="video files; the video id is the file stem")
    r.add_argument("--model", help="zoo name (actdet model list) or actdet checkpoint file")
    r.add_argument("--config", help="config name or YAML (its model, detector, tubes and run sections)")
    r.add_argument("--weights", help="actdet checkpoint for --config")
    r.add_argument("--out", required=True, metavar="DIR", help="output folder")
    r.add_argument("--keyframes", help="ava (1 Hz), every:N (frames) or fps:F (default: the config's, ava)")
    r.add_argument("--boxes", help="precomputed person boxes (AVA CSV or mmaction2 pickle) instead of a detector")
    r.add_argument("--start", type=float, help="start time in seconds")
    r.add_argument("--end", type=float, help="end time in seconds")
    r.add_argument("--time-offset", type=float, help="seconds added to CSV timestamps (AVA clips: 900)")
    r.add_argument("--person-threshold", type=float, help="keep people the detector scores at least this")
    r.add_argument("--action-threshold", type=float, help="write action rows scoring at least this (default 0)")
    r.add_argument("--max-people", type=int, help="at most this many people per keyframe")
    r.add_argument("--batch-size", type=int, help="keyframes per detector batch and clips per model batch")
    r.add_argument("--device", help="auto (CUDA when available), cpu or cuda[:k]")
    r.add_argument("--no-video", action="store_true", help="skip annotated.mp4")
    r.add_argument("--resume", action="store_true", help="skip videos finished by an earlier run (same settings)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set tubes.lag=4 (repeatable)")
    r.set_defaults(func=_cmd_run)


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
    from data_prep.ava.commands import add_ava_parser
    add_ava_parser(prep_sub)
    from data_prep.convert import add_convert_parser
    add_convert_parser(prep_sub)

    _add_eval(sub)
    _add_link(sub)
    _add_model(sub)
    _add_detect(sub)
    _add_run(sub)
    _add_train(sub)
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
