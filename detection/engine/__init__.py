"""Training and testing engine: optimizer and lr schedule (``optim``), training checkpoints (``checkpoint``),
torchrun processes and the train sampler (``distributed``), metric logs and the progress bar (``logger``).

The modules are building blocks: the train/test loops compose them, and every one of them also works in a
single process on the CPU.
"""
