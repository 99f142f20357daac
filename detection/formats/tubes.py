"""The project's tubes JSON: action tubes of one or several videos, for review and video-mAP.

One object per video (a list of them when the file holds several)::

    {"video": "v1", "fps": 30.0, "width": 1280, "height": 720, "labels": {"12": "stand", ...},
     "tubes": [{"track_id": 3, "label": 12, "score": 0.81, "start_frame": 10, "end_frame": 12,
                "frames": [10, 11, 12], "boxes": [[x1, y1, x2, y2], ...], "scores": [0.8, 0.9, 0.7]}]}

Frames are 0-based indices at ``fps``; boxes are normalized ``x1, y1, x2, y2``; ``label`` is the
dataset's label id (a key of ``labels``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detection.structures import Tube

__all__ = ["VideoTubes", "read_tubes_json", "write_tubes_json"]


@dataclass
class VideoTubes:
    """The tubes found in one video, with what is needed to place them in it."""

    video: str
    fps: float
    width: int
    height: int
    labels: dict[int, str]
    tubes: list[Tube] = field(default_factory=list)

    def to_dict(self, decimals: int = 4) -> dict:
        return {
            "video": self.video,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "labels": {str(k): v for k, v in self.labels.items()},
            "tubes": [
                {
                    "track_id": t.track_id,
                    "label": t.label,
                    "score": round(t.score, decimals),
                    "start_frame": t.start_frame,
                    "end_frame": t.end_frame,
                    "frames": t.frames.tolist(),
                    "boxes": np.round(t.boxes.astype(np.float64), decimals).tolist(),
                    "scores": np.round(t.scores.astype(np.float64), decimals).tolist(),
                }
                for t in self.tubes
            ],
        }


def _parse_video(obj: object, where: str) -> VideoTubes:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object per video, got {type(obj).__name__}")
    missing = [k for k in ("video", "fps", "width", "height", "labels", "tubes") if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    video = str(obj["video"])
    tubes = []
    for k, t in enumerate(obj["tubes"]):
        here = f"{where}: video {video!r} tube {k}"
        try:
            tube = Tube(
                video_id=video,
                label=int(t["label"]),
                track_id=int(t.get("track_id", -1)),
                frames=np.asarray(t["frames"], dtype=np.int64),
                boxes=np.asarray(t["boxes"], dtype=np.float32).reshape(-1, 4),
                scores=np.asarray(t["scores"], dtype=np.float32),
                score=float(t["score"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{here}: {err}") from None
        if ("start_frame" in t and int(t["start_frame"]) != tube.start_frame) or (
            "end_frame" in t and int(t["end_frame"]) != tube.end_frame
        ):
            raise ValueError(f"{here}: start_frame/end_frame disagree with frames")
        tubes.append(tube)
    return VideoTubes(
        video=video,
        fps=float(obj["fps"]),
        width=int(obj["width"]),
        height=int(obj["height"]),
        labels={int(k): str(v) for k, v in obj["labels"].items()},
        tubes=tubes,
    )


def read_tubes_json(path: str | Path) -> list[VideoTubes]:
    """Read a tubes JSON file (one video object or a list of them). Raises ValueError naming the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
    items = data if isinstance(data, list) else [data]
    return [_parse_video(obj, str(path)) for obj in items]


def write_tubes_json(path: str | Path, videos: VideoTubes | list[VideoTubes], decimals: int = 4) -> None:
    """Write one video's tubes as an object, several as a list; atomically."""
    payload = videos.to_dict(decimals) if isinstance(videos, VideoTubes) else [v.to_dict(decimals) for v in videos]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(tmp, path)
