"""Person boxes computed beforehand, looked up by keyframe: AVA box CSVs and mmaction2 proposal pickles.

Two file kinds, told apart by their content and name (a pickle starts with its protocol byte, or is
named ``.pkl`` / ``.pickle``):

- An AVA-format box CSV ``video_id,timestamp,x1,y1,x2,y2[,action_id[,score]]`` with normalized boxes, e.g.
  PySlowFast's ``ava_detection_val_boxes_and_labels.csv``, our synthetic ``*_predicted_boxes.csv`` or what
  ``actdet detect`` writes. Rows of one box at one keyframe with different actions are one person (its
  score: the highest of those rows; 1.0 where the score column is absent). With ``groundtruth=True`` the
  8th column is a person id instead of a score and every box scores 1 (ground-truth boxes as proposals).
- An mmaction2 dense-proposal pickle (``ava_dense_proposals_{train,val}.FAIR.recall_93.9.pkl``): a dict
  ``{"<video_id>,<timestamp>": array}`` with keys like ``"0f39OWEqJ24,0902"`` (timestamp zero-padded
  to 4 digits) and ``(N, 5)`` float arrays ``x1, y1, x2, y2, score`` normalized to [0, 1] (``(N, 4)``
  without scores also occurs: score 1). The pickle is read with an unpickler that only builds numpy
  arrays and plain containers, so a hostile file cannot run code.

Keyframes are keyed by ``(video_id, timestamp)`` with timestamps in seconds as the file writes them
(AVA: whole seconds from the start of the 15-minute clip, e.g. 902), matched to the millisecond.
"""

from __future__ import annotations

import collections
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detection.formats.ava import read_ava_table
from detection.persons.base import DetectorSettings, PersonDetections, PersonDetector, filter_people
from detection.structures import as_boxes

__all__ = ["PrecomputedBoxes", "read_proposal_pickle"]


def _key(video_id: str, timestamp: float) -> tuple[str, int]:
    """Lookup key: video id and the timestamp in whole milliseconds."""
    return str(video_id), int(round(float(timestamp) * 1000))


class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays, dtypes and plain containers; refuses every other global (no code runs)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # array bytes in protocol-2 pickles
        # Plain containers; protocol-2 pickles name the module ``__builtin__`` (Python 2's name).
        *((module, name) for module in ("builtins", "__builtin__") for name in ("dict", "list", "tuple", "bytes")),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected")


def read_proposal_pickle(path: str | os.PathLike) -> dict[tuple[str, int], np.ndarray]:
    """Read an mmaction2 proposal pickle into ``{(video_id, timestamp_ms): (N, 5) float32}``.

    Rows are ``x1, y1, x2, y2, score`` normalized (a missing score column reads as 1). Raises ValueError
    naming the file and the key for anything else: an unreadable pickle, a key that is not
    ``"video_id,timestamp"``, an array of another shape, a box outside [0, 1] (pixel coordinates) or an
    inverted one.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _ArraysOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as err:
        raise ValueError(f"{path}: not a readable proposal pickle: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict {{'video_id,timestamp': (N, 5) array}}, got {type(data).__name__}")
    out: dict[tuple[str, int], np.ndarray] = {}
    for raw_key, value in data.items():
        key = raw_key.decode("latin1") if isinstance(raw_key, bytes) else raw_key
        video_id, sep, stamp = str(key).rpartition(",")
        try:
            timestamp = float(stamp)
        except ValueError:
            timestamp = float("nan")
        if not sep or not video_id or not np.isfinite(timestamp):
            raise ValueError(f"{path}: key {key!r} is not 'video_id,timestamp' (e.g. '0f39OWEqJ24,0902')")
        arr = np.asarray(value, dtype=np.float64)
        if arr.size == 0:
            arr = arr.reshape(0, 5)
        if arr.ndim != 2 or arr.shape[1] not in (4, 5):
            raise ValueError(f"{path}: key {key!r}: expected an (N, 5) array x1,y1,x2,y2,score, got {arr.shape}")
        if arr.shape[1] == 4:
            arr = np.concatenate([arr, np.ones((len(arr), 1))], axis=1)
        if not np.isfinite(arr).all():
            raise ValueError(f"{path}: key {key!r}: non-finite values")
        if len(arr) and (arr[:, :4].min() < -0.01 or arr[:, :4].max() > 1.01):
            raise ValueError(
                f"{path}: key {key!r}: boxes outside [0, 1] (max {arr[:, :4].max():g}); mmaction2 proposals are "
                f"normalized x1,y1,x2,y2 — divide pixel boxes by the frame width and height"
            )
        try:
            as_boxes(arr[:, :4], f"{path}: key {key!r}")
        except ValueError as err:
            raise ValueError(str(err)) from None
        out[_key(video_id, timestamp)] = arr.astype(np.float32)
    return out


def _group_csv(path: Path, groundtruth: bool) -> dict[tuple[str, int], np.ndarray]:
    """An AVA box CSV as ``{(video_id, timestamp_ms): (N, 5) float32}``, one row per distinct box.

    Boxes are the same person when video, timestamp and the four coordinates are equal (as parsed); the
    person keeps the position of its first row and the highest score of its rows.
    """
    table = read_ava_table(path, "groundtruth" if groundtruth else "detections")
    n = len(table)
    if n == 0:
        return {}
    scores = np.ones(n) if groundtruth else np.where(np.isnan(table.last), 1.0, table.last)
    videos, video_codes = np.unique(table.video_ids, return_inverse=True)
    ms = np.round(table.timestamps * 1000).astype(np.int64)
    # One record per row: (video, ms, x1, y1, x2, y2), viewed as opaque bytes so np.unique groups equal rows.
    records = np.empty((n, 6), np.float64)
    records[:, 0], records[:, 1], records[:, 2:] = video_codes, ms, table.boxes
    records[:, 2:] += 0.0  # -0.0 and 0.0 are the same coordinate
    void = np.ascontiguousarray(records).view(np.dtype((np.void, records.dtype.itemsize * 6))).ravel()
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    best = np.full(len(first), -np.inf)
    np.maximum.at(best, inverse.ravel(), scores)
    order = np.argsort(first, kind="stable")  # persons in file order
    first, best = first[order], best[order]
    rows = np.concatenate([table.boxes[first], best[:, None]], axis=1).astype(np.float32)
    # Split into keyframes, keeping file order inside each.
    key_codes = video_codes[first].astype(np.int64), ms[first]
    by_key = np.lexsort((np.arange(len(first)), key_codes[1], key_codes[0]))
    rows, vcodes, stamps = rows[by_key], key_codes[0][by_key], key_codes[1][by_key]
    starts = np.flatnonzero(np.r_[True, (np.diff(vcodes) != 0) | (np.diff(stamps) != 0)])
    ends = np.r_[starts[1:], len(rows)]
    return {(str(videos[vcodes[s]]), int(stamps[s])): rows[s:e] for s, e in zip(starts, ends, strict=True)}


class PrecomputedBoxes(PersonDetector):
    """Person boxes from a file, looked up by keyframe with :meth:`detect_keyframe`.

    ``path``: an AVA-format box CSV or an mmaction2 proposal pickle (see the module docstring). The
    common filters of ``settings`` (score threshold, minimum height, at most ``max_people``, best
    first) apply to every lookup. A keyframe the file does not hold gives an empty result and is
    counted in ``missing``. It holds no model: :meth:`detect` on pixels raises TypeError.
    """

    name = "precomputed"
    needs_frames = False  # detect_keyframe looks boxes up; the images are not used

    def __init__(self, path: str | os.PathLike, settings: DetectorSettings | None = None, *,
                 groundtruth: bool = False) -> None:
        super().__init__(settings)
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(
                f"precomputed boxes: {self.path} not found (detector.model, --model: an AVA box CSV or an mmaction2 "
                f"proposal pickle)"
            )
        with open(self.path, "rb") as f:
            head = f.read(2)
        if head[:1] == b"\x80" or self.path.suffix.lower() in (".pkl", ".pickle"):  # 0x80: pickle protocol 2+
            self._boxes = read_proposal_pickle(self.path)
        else:
            self._boxes = _group_csv(self.path, groundtruth)
        self.missing = 0
        self.lookups = 0
        self._videos = collections.Counter(video for video, _ in self._boxes)

    def __len__(self) -> int:
        """Number of keyframes in the file."""
        return len(self._boxes)

    @property
    def video_ids(self) -> list[str]:
        """The videos the file holds boxes for, sorted."""
        return sorted(self._videos)

    def keyframes(self, video_id: str) -> list[float]:
        """The timestamps (seconds) the file holds for ``video_id``, sorted."""
        return sorted(ms / 1000 for video, ms in self._boxes if video == video_id)

    def detect_keyframe(self, video_id: str, timestamp: float) -> PersonDetections:
        """The people at ``(video_id, timestamp)`` (seconds, as the file writes them), filtered and sorted."""
        self.lookups += 1
        rows = self._boxes.get(_key(video_id, timestamp))
        if rows is None:
            self.missing += 1
            rows = np.zeros((0, 5), np.float32)
        return filter_people(rows[:, :4], rows[:, 4], 1, 1, self.settings)

    def _detect_pixels(
        self, frames: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        raise TypeError(
            f"precomputed boxes ({self.path}) are looked up by keyframe: call detect_keyframe(video_id, timestamp)"
        )
