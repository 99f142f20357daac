"""Training clips per second of ``AvaDataset`` through a DataLoader, from JPEG frames and from videos.

Generates a synthetic AVA-format dataset (default 4 videos x 20 s at 320x240, 30 fps) in a temporary
folder, then loads the train split with ``--workers`` DataLoader workers for two input specs: the tiny
config's (8x2, short side 128, its augmentations) and a 16x4 one with PySlowFast's AVA augmentations
(short side 256-320, crop 224). The first batch (worker start-up) is not timed.

    .venv/bin/python benchmarks/dataset_clips.py [--workers 2] [--epochs 2] [--root DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from torch.utils.data import DataLoader  # noqa: E402

from data_prep.synthetic import SyntheticSpec, generate_dataset  # noqa: E402
from detection.config import AugmentConfig, DataConfig, load_config  # noqa: E402
from detection.data import AvaDataset, collate  # noqa: E402
from detection.models.action_model import InputSpec  # noqa: E402


def measure(cfg: DataConfig, spec: InputSpec, workers: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """Clips per second after the first batch, and the number of clips timed."""
    ds = AvaDataset(cfg, "train", spec, seed=0)
    clips, start = 0, None
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0)
    for _ in range(epochs):
        for batch in loader:
            if start is None:  # the first batch pays for starting the workers
                start = time.perf_counter()
                continue
            clips += len(batch)
    return clips / (time.perf_counter() - start), clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--root", help="dataset folder to (re)use instead of a temporary one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or os.path.join(tmp, "synthetic"))
        t0 = time.perf_counter()
        manifest = generate_dataset(root, SyntheticSpec(videos=args.videos, seconds=args.seconds))
        print(f"dataset: {args.videos} videos x {args.seconds:g} s at 320x240, {manifest['counts']['keyframes']} "
              f"keyframes ({time.perf_counter() - t0:.1f} s to generate or check)")
        tiny = load_config("synthetic/tiny")
        tiny_spec = InputSpec(num_frames=tiny.model.backbone.input_size[0], sampling_rate=tiny.model.sampling_rate,
                              short_side=min(tiny.model.backbone.input_size[1:]),
                              size=tuple(tiny.model.backbone.input_size[1:]))
        ava_spec = InputSpec(num_frames=16, sampling_rate=4, short_side=224, size=(224, 224))
        setups = [("tiny 8x2, 128 px", tiny_spec, tiny.data.augment),
                  ("16x4, 224 px crop", ava_spec, AugmentConfig())]
        print(f"DataLoader: {args.workers} workers, batch {args.batch_size}, train split (augmented), "
              f"{args.epochs} epochs, first batch not timed")
        for name, spec, augment in setups:
            for source in ("frames", "videos"):
                cfg = dataclasses.replace(tiny.data, root=str(root), synthetic=None, source=source, augment=augment)
                rate, n = measure(cfg, spec, args.workers, args.batch_size, args.epochs)
                print(f"  {name:<18} from {source:<6}: {rate:7.1f} clips/s ({n} clips)")


if __name__ == "__main__":
    main()
