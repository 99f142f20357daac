"""The preparation manifest ``ROOT/prep_manifest.json``: what each ``actdet prep ava`` step last did.

One JSON object::

    {"format": "actdet-prep-1",
     "steps": {"<step>": {"report": StepReport.to_dict(), "complete": bool, "finished_at": ISO time,
                          "options": {...options that shape the step's output...},
                          "tools": {"actdet": version, "python": version, "ffmpeg_version": ..., "command": ...},
                          "outputs": {"<path relative to ROOT>": [size, mtime_ns] or frame count}}}}

``complete`` is ``report.ok``. ``tools`` keeps the versions and command lines a step reported in its
details (ffmpeg's for ``cut`` and ``frames``), so a prepared tree says how it was made. The file is
rewritten atomically after each step; ``manifest.json`` in the same root belongs to the synthetic generator.
Steps of one root are meant to run one at a time (the file is read, updated and replaced).
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from data_prep.ava.report import StepReport
from detection.formats.ava import atomic_write

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "StepRecord", "json_safe", "load_manifest", "manifest_path",
           "record_step", "step_record", "tool_versions"]

MANIFEST_NAME = "prep_manifest.json"
MANIFEST_FORMAT = "actdet-prep-1"
_TOOL_KEYS = ("ffmpeg", "ffmpeg_version", "command")  # details a step reports about the tools it ran


def manifest_path(root: str | os.PathLike) -> Path:
    return Path(root) / MANIFEST_NAME


def json_safe(value: Any) -> Any:
    """``value`` as JSON keeps it (tuples become lists, paths strings, dict keys strings)."""
    return json.loads(json.dumps(value, default=str))


def load_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of ``root``; an empty one when the file is missing, unreadable or of another format."""
    try:
        data = json.loads(manifest_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("steps"), dict):
        return {"format": MANIFEST_FORMAT, "steps": {}}
    return data


class StepRecord(dict):
    """One step's entry of the manifest (a dict as stored), with typed accessors."""

    @property
    def report(self) -> StepReport:
        return StepReport.from_dict(self["report"])

    @property
    def complete(self) -> bool:
        return bool(self.get("complete"))

    @property
    def options(self) -> dict[str, Any]:
        return self.get("options", {})


def step_record(root: str | os.PathLike, step: str) -> StepRecord | None:
    """The manifest's entry for ``step``, or None when the step never finished a run in this root."""
    entry = load_manifest(root)["steps"].get(step)
    if not isinstance(entry, dict) or not isinstance(entry.get("report"), dict):
        return None
    return StepRecord(entry)


def tool_versions(report: StepReport) -> dict[str, Any]:
    """The versions and command lines a step used: actdet's and Python's, and what its details name."""
    from detection import __version__

    tools: dict[str, Any] = {"actdet": __version__, "python": platform.python_version()}
    tools.update({key: report.details[key] for key in _TOOL_KEYS if key in report.details})
    return tools


def record_step(root: str | os.PathLike, report: StepReport, options: dict[str, Any] | None = None,
                outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store ``report`` as its step's latest run, with ``options``, the tools and ``outputs`` (a fingerprint
    of what the step produced, see :func:`data_prep.ava.pipeline.fingerprint`); rewrite the manifest.

    Returns the new manifest.
    """
    manifest = load_manifest(root)
    manifest["steps"][report.step] = json_safe({
        "report": report.to_dict(),
        "complete": report.ok,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": options or {},
        "tools": tool_versions(report),
        "outputs": outputs or {},
    })
    atomic_write(manifest_path(root), json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return manifest
