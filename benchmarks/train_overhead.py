"""What the training engine costs: clips/s of ``train()`` against a bare loop over the same model and batches.

Both sides build the tiny config's model with the same seed, read the same train split through the same
sampler and DataLoader settings (so the same clips in the same order), and run the same forward, loss,
backward, clipping, optimizer and scheduler steps. The bare loop does nothing else. The engine adds what
``actdet train`` does per step: the global-batch loss weighting, the NaN check, the progress bookkeeping,
logging every 5 steps and ``last.pt`` every third of the run (more often than the tiny config does); its
validation at the last step (and the save after it) is left out of its time. Each side runs ``--repeats``
times, alternating, in fresh processes; the figure is the median clips/s of each.

    .venv/bin/python benchmarks/train_overhead.py [--steps 60] [--repeats 3] [--device cpu|cuda] [KEY=VALUE ...]

On a shared machine the spread between repeats is printed: read the overhead against it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bare(cfg, device: str) -> float:
    """Clips/s of the plainest loop over the engine's data and model (seconds from the first batch on)."""
    import torch

    from detection.data import AvaDataset, collate
    from detection.engine.distributed import GlobalBatchSampler, epoch_loader, seed_everything
    from detection.engine.optim import build_optimizer, build_scheduler, use_bf16
    from detection.models.action_model import build_action_model
    from detection.models.zoo import config_label_map

    tc = cfg.train
    seed_everything(tc.seed)
    label_map = config_label_map(cfg)
    model = build_action_model(cfg.model, label_map, load_weights=False).train().to(device)
    dataset = AvaDataset(cfg.data, "train", model.input_spec, label_map, seed=tc.seed)
    sampler = GlobalBatchSampler(len(dataset), tc.batch_size, seed=tc.seed)
    optimizer = build_optimizer(model, tc)
    scheduler = build_scheduler(optimizer, tc, sampler.steps_per_epoch)
    bf16 = use_bf16(tc, device)
    step, epoch = 0, 0
    start = time.perf_counter()
    while step < tc.max_steps:
        dataset.set_epoch(epoch)
        for batch in epoch_loader(dataset, sampler, epoch, num_workers=tc.num_workers, collate_fn=collate,
                                  pin_memory=device == "cuda"):
            batch = batch.to(device, non_blocking=True)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(batch.clips, batch.boxes)
            loss = model.loss(logits, batch.labels)
            loss.backward()
            if tc.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if step == tc.max_steps:
                break
        epoch += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return tc.max_steps * tc.batch_size / (time.perf_counter() - start)


def engine(cfg, device: str) -> float:
    """Clips/s of ``train()`` over its training steps (its final validation excluded)."""
    from detection.engine.trainer import train

    with tempfile.TemporaryDirectory() as out:
        result = train(cfg, out, device=device, quiet=True)
    return cfg.train.max_steps * cfg.train.batch_size / (60 * result.history[-1]["minutes"])


def worker(kind: str, device: str, overrides: list[str]) -> None:
    from detection.config import load_config
    from detection.engine.trainer import prepare_data

    cfg = load_config("synthetic/tiny", overrides)
    prepare_data(cfg, quiet=True)
    print(json.dumps({"clips_per_s": (bare if kind == "bare" else engine)(cfg, device)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", default=str(ROOT / "outputs" / "bench" / "synthetic_train"))
    parser.add_argument("--worker", choices=["bare", "engine"], help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = [f"data.root={args.root}", "data.synthetic.videos=16", "data.synthetic.seconds=30",
                 f"train.max_steps={args.steps}", f"train.eval_every={args.steps}",
                 f"train.checkpoint_every={max(args.steps // 3, 1)}", "train.log_every=5", *args.overrides]
    if args.worker:
        worker(args.worker, args.device, overrides)
        return
    rates: dict[str, list[float]] = {"bare": [], "engine": []}
    for repeat in range(args.repeats):
        for kind in ("bare", "engine"):
            out = subprocess.run([sys.executable, __file__, "--worker", kind, "--device", args.device,
                                  "--steps", str(args.steps), "--root", args.root, *args.overrides],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
            rates[kind].append(json.loads(out.stdout.strip().splitlines()[-1])["clips_per_s"])
            print(f"repeat {repeat + 1} {kind:>6}: {rates[kind][-1]:.2f} clips/s", flush=True)
    b, e = statistics.median(rates["bare"]), statistics.median(rates["engine"])
    print(f"\n{args.device}, {args.steps} steps: bare loop {b:.2f} clips/s (range {min(rates['bare']):.2f}-"
          f"{max(rates['bare']):.2f}), engine {e:.2f} clips/s (range {min(rates['engine']):.2f}-"
          f"{max(rates['engine']):.2f}); engine overhead {100 * (b - e) / b:+.1f}% (goal < 10%)")


if __name__ == "__main__":
    main()
