"""Reading what video-mAP evaluates: detected tubes and per-frame detections, in the benchmarks' layouts.

Detected tubes, in memory and in the standard pickle of UCF101-24 / JHMDB-21 / MultiSports tools::

    {label_index: [(video, score, tube), ...]}

``label_index`` is a 0-based position in the ground truth's ``labels``; ``tube`` is an (L, 6) array of
``frame, x1, y1, x2, y2, frame_score`` with 1-based frame numbers and pixel boxes (an (L, 5) array, without
per-frame scores, is accepted too); ``score`` is the tube's confidence. The project's tubes JSON
(normalized boxes, 0-based frames, dataset label ids) is converted into this layout by
:func:`tubes_from_json`.

Frame detections: an (N, 8) array of ``video_index, frame, label_index, score, x1, y1, x2, y2`` as ACT
writes ``frame_detections.pkl``, where ``video_index`` is a position in the evaluated test-video list and
``frame`` is 1-based.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from detection.formats.act import ActGroundTruth
from detection.formats.tubes import VideoTubes, read_tubes_json

__all__ = [
    "DetectedTubes",
    "check_tube_array",
    "check_tube_arrays",
    "read_detected_tubes",
    "read_frame_detections",
    "tubes_from_json",
]

#: ``{label_index: [(video, score, tube (L, 6): frame, x1, y1, x2, y2, frame_score)]}``
DetectedTubes = dict[int, list[tuple[str, float, np.ndarray]]]


def check_tube_array(tube: object, where: str) -> np.ndarray:
    """Validate one tube array (frame, x1, y1, x2, y2[, score] rows) and return it as float64.

    Raises ValueError naming ``where`` when it is not 2-D with at least 5 columns and one row, when frame
    numbers are not integers in strictly increasing order, or when a box is not finite or has
    ``x2 < x1`` / ``y2 < y1``.
    """
    try:
        arr = np.asarray(tube, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: not a numeric array: {err}") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 5:
        raise ValueError(f"{where}: expected an (L, 6) array of frame, x1, y1, x2, y2, score; got {arr.shape}")
    frames = arr[:, 0]
    if not np.isfinite(frames).all() or (frames != np.round(frames)).any():
        raise ValueError(f"{where}: frame numbers must be integers, got {frames[:5].tolist()}...")
    if len(frames) > 1 and not (np.diff(frames) > 0).all():
        i = int(np.flatnonzero(np.diff(frames) <= 0)[0])
        raise ValueError(f"{where}: frames must increase strictly; frame {frames[i + 1]:g} follows {frames[i]:g}")
    boxes = arr[:, 1:5]
    if not np.isfinite(boxes).all():
        i = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0])
        raise ValueError(f"{where}: box at frame {frames[i]:g} is not finite")
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise ValueError(f"{where}: box at frame {frames[i]:g} has x2 < x1 or y2 < y1: {boxes[i].tolist()}")
    return arr


def check_tube_arrays(tubes: Sequence[object], where: Callable[[int], str]) -> list[np.ndarray]:
    """:func:`check_tube_array` on many tubes at once (vectorised); ``where(k)`` names tube k in errors.

    Float arrays are returned as given (their dtype kept: the references compute in it); anything else
    is converted to float64.
    """
    arrays = []
    for k, tube in enumerate(tubes):
        if isinstance(tube, np.ndarray) and tube.dtype.kind == "f" and tube.ndim == 2:
            arr = tube
        else:
            arr = check_tube_array(tube, where(k))  # raises, or converts a nested list / integer array
        if arr.shape[0] == 0 or arr.shape[1] < 5:
            check_tube_array(arr, where(k))  # raises with the precise message
        arrays.append(arr)
    if not arrays:
        return arrays
    rows = np.concatenate([a[:, :5] for a in arrays])
    frames = rows[:, 0]
    first = np.zeros(len(rows), dtype=bool)
    first[np.cumsum([0] + [len(a) for a in arrays[:-1]])] = True
    # One pass per check over all tubes; the offending tube is located only when one fails.
    fine = (
        np.isfinite(rows).all()
        and (frames == np.round(frames)).all()
        and ((frames[1:] > frames[:-1]) | first[1:]).all()
        and (rows[:, 3] >= rows[:, 1]).all()
        and (rows[:, 4] >= rows[:, 2]).all()
    )
    if not fine:
        ok = np.isfinite(rows).all(axis=1) & (frames == np.round(frames))
        ok[1:] &= (frames[1:] > frames[:-1]) | first[1:]
        ok &= (rows[:, 3] >= rows[:, 1]) & (rows[:, 4] >= rows[:, 2])
        bad = int(np.searchsorted(np.flatnonzero(first), np.flatnonzero(~ok)[0], side="right")) - 1
        check_tube_array(arrays[bad], where(bad))  # raises with the precise message
    return arrays


def tubes_from_json(videos: Sequence[VideoTubes], gt: ActGroundTruth, where: str = "tubes JSON") -> DetectedTubes:
    """Convert tubes JSON content to the standard layout, against the ground truth's labels and sizes.

    Label ids are mapped to the ground truth's label indices *by name* through each video's ``labels``;
    boxes become pixels with the ground truth's resolution of the video (the JSON's own width/height for
    videos the ground truth does not know; those are never evaluated); frames become 1-based; the tube
    score stays the tube's confidence and ``Tube.scores`` become the per-frame score column.
    Raises ValueError listing every label name the ground truth does not have, and naming a tube whose
    label id is missing from its video's ``labels``.
    """
    index = {name: k for k, name in enumerate(gt.labels)}
    unknown: set[str] = set()
    out: DetectedTubes = {}
    for video in videos:
        if video.video in gt.resolution:
            height, width = gt.resolution[video.video]
        else:
            height, width = video.height, video.width
        scale = np.array([width, height, width, height], dtype=np.float64)
        for k, tube in enumerate(video.tubes):
            if tube.label not in video.labels:
                raise ValueError(
                    f"{where}: video {video.video!r} tube {k}: label id {tube.label} is not in the video's labels"
                )
            name = video.labels[tube.label]
            if name not in index:
                unknown.add(name)
                continue
            arr = np.empty((len(tube), 6), dtype=np.float64)
            arr[:, 0] = tube.frames + 1
            arr[:, 1:5] = tube.boxes.astype(np.float64) * scale
            arr[:, 5] = tube.scores
            out.setdefault(index[name], []).append((video.video, tube.score, arr))
    if unknown:
        raise ValueError(
            f"{where}: label names not in the ground truth's labels: {sorted(unknown)} "
            f"(the ground truth has {len(gt.labels)} labels, e.g. {gt.labels[:5]})"
        )
    return out


def _load_pickle(path: Path) -> object:
    with open(path, "rb") as f:
        try:
            return pickle.load(f, encoding="latin1")
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as err:
            raise ValueError(f"{path}: not a readable pickle: {err}") from None


def _check_tubes_pickle(data: object, path: Path) -> DetectedTubes:
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a dict {{label_index: [(video, score, tube)]}}, got {type(data).__name__}")
    out: DetectedTubes = {}
    for label, entries in data.items():
        try:
            label_index = int(label)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: label key {label!r} is not an integer label index") from None
        if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
            raise ValueError(f"{path}: label {label_index}: expected a list of (video, score, tube)")
        rows = []
        for k, entry in enumerate(entries):
            if not isinstance(entry, Sequence) or len(entry) != 3:
                raise ValueError(f"{path}: label {label_index} entry {k}: expected (video, score, tube)")
            video, score, tube = entry
            if isinstance(video, bytes):
                video = video.decode("latin1")
            rows.append((str(video), score, tube))
        out[label_index] = rows
    return out


def read_detected_tubes(path: str | Path, gt: ActGroundTruth) -> DetectedTubes:
    """Detected tubes from a tubes JSON (``.json``) or the standard detected-tubes pickle (anything else).

    The pickle is read with ``latin1`` (Python 2 files). Raises ValueError naming the file and the
    problem; tube arrays themselves are checked when evaluated.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        return tubes_from_json(read_tubes_json(path), gt, where=str(path))
    return _check_tubes_pickle(_load_pickle(path), path)


def read_frame_detections(path: str | Path) -> np.ndarray:
    """An (N, 8) frame-detection array from ``.npy`` or from a pickle of the array (ACT's file).

    The array keeps its dtype (ACT writes float32). Raises ValueError on another shape.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        data = np.load(path, allow_pickle=False)
    else:
        data = _load_pickle(path)
    try:
        arr = np.asarray(data)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"dtype {arr.dtype}")
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: expected a numeric (N, 8) array, got {type(data).__name__}: {err}") from None
    if arr.size == 0:
        return np.zeros((0, 8), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 8:
        raise ValueError(
            f"{path}: expected an (N, 8) array of video_index, frame, label, score, x1, y1, x2, y2; got {arr.shape}"
        )
    return arr
