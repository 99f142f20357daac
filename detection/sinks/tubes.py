"""``tubes.json``: the tubes of one video in the project's tubes JSON (:mod:`detection.formats.tubes`),
written tube by tube as the linker finalises them, so a long video's tubes never sit in memory together.

The bytes are those :func:`~detection.formats.tubes.write_tubes_json` writes for the same
:class:`~detection.formats.tubes.VideoTubes` (one object, compact separators, 4 decimals).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable

from detection.formats.files import AtomicTextWriter
from detection.formats.tubes import VideoTubes
from detection.structures import Tube

__all__ = ["TubesJsonSink"]

_SEPARATORS = (",", ":")


class TubesJsonSink(AtomicTextWriter):
    """Stream tubes into ``path`` (a temporary file renamed on :meth:`close`).

    ``video``: the video's name, fps, size (pixels; 0 when unknown) and labels; its ``tubes`` are ignored.
    ``counts``: tubes written per label id.
    """

    def __init__(self, path: str | os.PathLike, video: VideoTubes, decimals: int = 4) -> None:
        self._header = VideoTubes(video.video, video.fps, video.width, video.height, dict(video.labels), [])
        self._decimals = decimals
        head = json.dumps(self._header.to_dict(decimals), separators=_SEPARATORS)
        if not head.endswith('"tubes":[]}'):
            raise AssertionError(f"unexpected tubes JSON layout: {head[-40:]}")
        super().__init__(path)
        self._file.write(head[: -len("]}")])
        self.counts: Counter[int] = Counter()

    def write(self, tubes: Iterable[Tube]) -> None:
        for tube in tubes:
            self._header.tubes = [tube]
            text = json.dumps(self._header.to_dict(self._decimals)["tubes"][0], separators=_SEPARATORS)
            self._file.write(("," if self.counts.total() else "") + text)
            self.counts[tube.label] += 1
        self._header.tubes = []

    def close(self) -> None:
        if not self._file.closed:
            self._file.write("]}\n")
        super().close()
