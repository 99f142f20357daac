"""What one preparation step did: the record every ``actdet prep ava`` step returns and the manifest keeps."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["StepReport"]


@dataclass
class StepReport:
    """The outcome of one step over a dataset root.

    done: items (video ids, file names) completed by this run; skipped: items that were already complete;
    failed: item -> reason, for items that did not complete (they are retried by the next run);
    details: step-specific facts worth keeping (tool versions, command lines, counts per video);
    seconds: wall time of the run.
    """

    step: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepReport:
        return cls(**data)

    def summary(self) -> str:
        """One line for the terminal, then one line per failure."""
        lines = [f"{self.step}: {len(self.done)} done, {len(self.skipped)} already complete, "
                 f"{len(self.failed)} failed ({self.seconds:.1f} s)"]
        lines += [f"  failed {item}: {reason}" for item, reason in sorted(self.failed.items())]
        return "\n".join(lines)
