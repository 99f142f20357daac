"""Learning, measured: train the tiny config from scratch on the synthetic dataset and print the val curve.

Renders the synthetic dataset (the tiny config's spec with 16 videos x 30 s; the last 4 are the held-out val
videos) unless it is there, prints the reference levels of the val split (random scores,
the train split's class priors, and the oracle that knows each box's labels: the ceiling with these boxes),
trains with ``detection.engine.trainer.train`` exactly as ``actdet train --config synthetic/tiny`` does, and
prints the validation curve (step, training minutes, wall minutes with the validations, frame-mAP,
video-mAP@0.5) and the time to reach ``--target`` frame-mAP. Data rendering is not counted in the minutes.

The val boxes are the config's (detector-like proposals) unless ``--gt-boxes`` scores the ground-truth boxes
(``data.val_proposals=null``): then the ceiling is 1.0 and the figure measures the action model alone. The
best checkpoint is evaluated at the end with the other choice of boxes too.

    .venv/bin/python benchmarks/train_synthetic.py [--gt-boxes] [--out DIR] [KEY=VALUE overrides]

Timings on a shared machine are noisy: the load average before and after is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from detection.config import load_config  # noqa: E402
from detection.engine.evaluator import evaluate, reference_map  # noqa: E402
from detection.engine.trainer import prepare_data, train  # noqa: E402
from detection.models.zoo import load_checkpoint  # noqa: E402

# 16 videos x 30 s (the last 4 held out for val: 324 train and 108 val keyframes), rendered once (~50 s).
DATA = [f"data.root={ROOT / 'outputs' / 'bench' / 'synthetic_train'}", "data.synthetic.videos=16",
        "data.synthetic.seconds=30",
        "train.max_steps=1200", "train.eval_every=200", "train.checkpoint_every=200"]  # ~10 min here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="synthetic/tiny")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench" / "train_synthetic"))
    parser.add_argument("--target", type=float, default=0.8, help="frame-mAP to reach (default: %(default)s)")
    parser.add_argument("--budget", type=float, default=10.0, help="minutes allowed (default: %(default)s)")
    parser.add_argument("--gt-boxes", action="store_true", help="validate on the ground-truth boxes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    if Path(args.out).exists():
        shutil.rmtree(args.out)  # a fresh run each time
    extra = ["data.val_proposals=null"] if args.gt_boxes else []
    args.overrides = [*DATA, *args.overrides]
    cfg = load_config(args.config, [*args.overrides, *extra, f"output_dir={args.out}"])
    start = time.perf_counter()
    prepare_data(cfg, quiet=True)
    print(f"dataset {cfg.data.root}: ready in {time.perf_counter() - start:.0f} s (not counted)")
    boxes = "ground-truth boxes" if args.gt_boxes else "the config's proposals"
    refs = {kind: reference_map(cfg, "val", Path(args.out) / "reference" / kind, kind).frame_map
            for kind in ("random", "prior", "oracle")}
    print(f"val frame-mAP on {boxes}: random {refs['random']:.3f}, class prior {refs['prior']:.3f}, "
          f"oracle (ceiling) {refs['oracle']:.3f}")
    tc = cfg.train
    print(f"train: {tc.optimizer} lr {tc.lr} wd {tc.weight_decay} batch {tc.batch_size} steps {tc.max_steps} "
          f"warmup {tc.warmup_steps} eval every {tc.eval_every}; torch threads {__import__('torch').get_num_threads()}")
    load_before = os.getloadavg()
    result = train(cfg, args.out, quiet=True)
    load_after = os.getloadavg()

    print(f"\n{'step':>6} {'train min':>9} {'wall min':>9} {'frame-mAP':>9} {'video-mAP@0.5':>13}")
    reached = None
    for h in result.history:
        video = h.get("video_mAP@0.5")
        print(f"{h['step']:>6} {h['minutes']:>9.2f} {h['wall_minutes']:>9.2f} {h['mAP']:>9.3f} "
              f"{'-' if video is None else f'{video:.3f}':>13}")
        if reached is None and h["mAP"] >= args.target:
            reached = h
    best = max(h["mAP"] for h in result.history)
    print(f"\nbest val frame-mAP {best:.3f} ({boxes}; ceiling {refs['oracle']:.3f}, chance "
          f"{max(refs['random'], refs['prior']):.3f})")
    if reached:
        verdict = "within" if reached["wall_minutes"] <= args.budget else "NOT within"
        print(f"frame-mAP >= {args.target} at step {reached['step']}: {reached['minutes']:.2f} min of training, "
              f"{reached['wall_minutes']:.2f} min with validations ({verdict} {args.budget:g} min)")
    else:
        print(f"frame-mAP {args.target} NOT reached in {result.history[-1]['wall_minutes']:.2f} min")
    print(f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load_before)}, after "
          f"{tuple(round(x, 2) for x in load_after)} on {os.cpu_count()} CPUs")

    other = load_config(args.config, [*args.overrides, f"output_dir={args.out}"] + (
        [] if args.gt_boxes else ["data.val_proposals=null"]))
    model = load_checkpoint(result.best_checkpoint)
    again = evaluate(model, other, "val", Path(args.out) / "best_other_boxes", plots=False)
    print(f"best.pt on {'the config proposals' if args.gt_boxes else 'ground-truth boxes'}: {again.summary()}")


if __name__ == "__main__":
    main()
