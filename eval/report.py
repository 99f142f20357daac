"""Writing evaluation results: metrics JSON, per-class CSV, a text table and PNG plots.

Every evaluator returns a JSON-ready ``metrics`` dict (APs as fractions in [0, 1], ``None`` for classes
without ground truth) and writes its outputs through these helpers, so all reports look alike.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["write_json", "write_csv", "format_table", "plot_ap_bars", "plot_pr_curves", "fmt_ap"]


def _atomic_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj: object) -> Path:
    """Write ``obj`` as indented JSON (NaN becomes null), atomically."""

    def clean(value: object) -> object:
        if isinstance(value, float | np.floating):
            return None if math.isnan(value) else float(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return _atomic_text(Path(path), json.dumps(clean(obj), indent=2) + "\n")


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    """Write a CSV with a header row, atomically."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return _atomic_text(Path(path), out.getvalue())


def fmt_ap(value: float | None) -> str:
    """An AP as a percentage with two decimals, or ``-`` when undefined."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned numeric columns."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_ap_bars(names: Sequence[str], aps: Sequence[float | None], path: str | Path, title: str) -> Path:
    """A horizontal bar chart of per-class AP (percent), classes without ground truth left out."""
    plt = _pyplot()
    pairs = [(n, a) for n, a in zip(names, aps, strict=True) if a is not None and not math.isnan(a)]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.22 * len(pairs) + 1)))
    ax.barh([n for n, _ in pairs][::-1], [100 * a for _, a in pairs][::-1], color="#3b75af")
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)")
    ax.set_title(title)
    ax.tick_params(axis="y", labelsize=7)
    return _save(plt, fig, path)


def plot_pr_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str
) -> Path:
    """Precision-recall curves, one line per class: ``{name: (precision, recall)}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (precision, recall) in curves.items():
        ax.plot(recall, precision, label=name, linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    if curves:
        ax.legend(fontsize=7, loc="lower left")
    return _save(plt, fig, path)
