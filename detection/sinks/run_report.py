"""``run.json``: what one video's run did — settings, software versions, timings, counts and warnings.

Written last into a video's output folder (atomically); its ``fingerprint`` and ``input`` let
``actdet run --resume`` recognise a finished video. Timings change from run to run; everything else
in the folder is the same bytes for the same input and settings.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from detection.formats.ava import atomic_write

__all__ = ["REPORT_FORMAT", "read_run_report", "software_versions", "write_run_report"]

REPORT_FORMAT = "actdet-run-1"


def software_versions() -> dict[str, str | None]:
    """Versions of Python and the packages that shape the outputs (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("actdet", "torch", "torchvision", "av", "numpy", "opencv-python-headless", "opencv-python"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_run_report(path: str | os.PathLike, report: dict[str, Any]) -> Path:
    """Write ``report`` (plain JSON values) with ``format`` and ``versions`` added; returns the path."""
    payload = {"format": REPORT_FORMAT, **report, "versions": software_versions()}
    atomic_write(path, json.dumps(payload, indent=1, sort_keys=False, default=str) + "\n")
    return Path(path)


def read_run_report(path: str | os.PathLike) -> dict[str, Any] | None:
    """The report at ``path``, or None when it is missing, unreadable or of another format."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == REPORT_FORMAT else None
