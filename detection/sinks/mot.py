"""``tracks.txt``: every person track, one line per frame, in MOTChallenge format (pixels of the video).

A thin sink over :class:`detection.tubes.io.MotWriter` (the one writer of that format): it takes the
linker's :class:`~detection.tubes.linker.TrackPiece` trajectories as they are handed out and counts tracks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from detection.tubes.io import MotWriter
from detection.tubes.linker import TrackPiece

__all__ = ["MotSink"]


class MotSink:
    """Write track pieces to ``path`` (``width`` × ``height`` pixels; 1 × 1 keeps boxes normalized), renamed
    into place on :meth:`close`. ``track_ids``: the ids written so far."""

    def __init__(self, path: str | os.PathLike, width: float = 1.0, height: float = 1.0) -> None:
        self._writer = MotWriter(path, width, height)
        self.path = self._writer.path
        self.track_ids: set[int] = set()
        self.lines = 0

    def write(self, pieces: Iterable[TrackPiece]) -> None:
        for piece in pieces:
            self._writer.write(piece)
            self.track_ids.add(int(piece.track_id))
            self.lines += len(piece.frames)

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()

    def __enter__(self) -> MotSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort() if exc_type is not None else self.close()
