"""Ground-truth tubes in the ACT pickle layout (UCF101-24, JHMDB-21, MultiSports).

The pickle is a dict with ``labels`` (class names; label *indices* are 0-based positions in it),
``gttubes`` ``{video: {label_index: [array (L, 5) of frame, x1, y1, x2, y2]}}`` with 1-based frame numbers
and pixel boxes, ``nframes`` ``{video: int}``, ``resolution`` ``{video: (height, width)}``, and the splits
``train_videos`` / ``test_videos`` (lists of video lists, one per split). The published files are
Python-2 pickles, hence ``latin1`` when reading.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detection.structures import Tube, normalize_boxes

__all__ = ["ActGroundTruth", "read_act_groundtruth", "write_act_groundtruth"]

_KEYS = ("labels", "gttubes", "nframes", "resolution", "train_videos", "test_videos")


@dataclass
class ActGroundTruth:
    """The content of an ACT ground-truth pickle, as the format defines it (pixels, 1-based frames)."""

    labels: list[str]
    gttubes: dict[str, dict[int, list[np.ndarray]]]
    nframes: dict[str, int]
    resolution: dict[str, tuple[int, int]]  # (height, width)
    train_videos: list[list[str]] = field(default_factory=lambda: [[]])
    test_videos: list[list[str]] = field(default_factory=lambda: [[]])

    def tubes(self, video: str) -> list[Tube]:
        """The ground-truth tubes of ``video`` in the project's vocabulary.

        Frames become 0-based, boxes normalized; ``Tube.label`` is the label index and ``track_id``
        the tube's position in its class list.
        """
        height, width = self.resolution[video]
        out = []
        for label_index, tubes in sorted(self.gttubes.get(video, {}).items()):
            for k, tube in enumerate(tubes):
                tube = np.asarray(tube, dtype=np.float64)
                out.append(
                    Tube(
                        video_id=video,
                        label=int(label_index),
                        track_id=k,
                        frames=tube[:, 0].astype(np.int64) - 1,
                        boxes=normalize_boxes(tube[:, 1:5], width, height),
                        scores=np.ones(len(tube), np.float32),
                        score=1.0,
                    )
                )
        return out

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in _KEYS}


def read_act_groundtruth(path: str | Path) -> ActGroundTruth:
    """Read an ACT ground-truth pickle (Python 2 or 3). Raises ValueError naming a missing key."""
    path = Path(path)
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict, got {type(data).__name__}")
    missing = [key for key in ("labels", "gttubes", "nframes", "resolution") if key not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing} (an ACT ground-truth pickle has {list(_KEYS)})")
    return ActGroundTruth(
        labels=list(data["labels"]),
        gttubes={
            v: {int(k): [np.asarray(t) for t in ts] for k, ts in d.items()}  # dtype kept: evaluators compare in it
            for v, d in data["gttubes"].items()
        },
        nframes={v: int(n) for v, n in data["nframes"].items()},
        resolution={v: (int(r[0]), int(r[1])) for v, r in data["resolution"].items()},
        train_videos=[list(s) for s in data.get("train_videos", [[]])],
        test_videos=[list(s) for s in data.get("test_videos", [[]])],
    )


def write_act_groundtruth(path: str | Path, gt: ActGroundTruth) -> None:
    """Write ``gt`` as an ACT ground-truth pickle (protocol 2, readable by Python 2 tools), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(gt.to_dict(), f, protocol=2)
    os.replace(tmp, path)
