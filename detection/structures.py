"""The shared vocabulary of the pipeline: label maps, keyframe detections, tubes and box helpers.

Everything here is plain numpy so that evaluation and data preparation can import it without torch.
Boxes crossing module boundaries are float32 arrays of shape (N, 4), normalized to [0, 1] in the order
``x1, y1, x2, y2`` (AVA's order). Pixel boxes exist only inside models and drawing code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "LabelMap",
    "KeyframeDetections",
    "Tube",
    "as_boxes",
    "box_area",
    "box_iou",
    "clip_boxes",
    "scale_boxes",
    "normalize_boxes",
]


# --------------------------------------------------------------------------------------------------
# Boxes


def as_boxes(boxes: np.ndarray | Sequence, what: str = "boxes") -> np.ndarray:
    """Validate ``boxes`` as an (N, 4) ``x1, y1, x2, y2`` array and return it as C-contiguous float32.

    Raises ValueError, naming ``what`` and the first offending row, on a wrong shape, NaN/inf, or
    ``x2 < x1`` / ``y2 < y1``. Degenerate (zero-area) boxes are allowed.
    """
    arr = np.ascontiguousarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what}: expected shape (N, 4), got {tuple(arr.shape)}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: box {i} is not finite: {arr[i].tolist()}")
    inverted = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if inverted.any():
        i = int(np.flatnonzero(inverted)[0])
        raise ValueError(f"{what}: box {i} has x2 < x1 or y2 < y1: {arr[i].tolist()}")
    return arr


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of (N, 4) xyxy boxes (continuous coordinates, no +1)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU matrix (N, M) between xyxy boxes ``a`` (N, 4) and ``b`` (M, 4).

    Computed in float64 for stable ties; pairs with zero union get IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def clip_boxes(boxes: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """Boxes clipped to ``[lo, hi]`` in both axes (normalized by default); returns a new array."""
    return np.clip(boxes, lo, hi).astype(boxes.dtype, copy=False)


def scale_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Normalized xyxy boxes → pixel boxes for an image of ``width`` × ``height`` pixels (float32)."""
    factor = np.array([width, height, width, height], dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32) * factor


def normalize_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel xyxy boxes → normalized boxes for an image of ``width`` × ``height`` pixels (float32)."""
    factor = np.array([width, height, width, height], dtype=np.float32)
    return np.asarray(boxes, dtype=np.float32) / factor


# --------------------------------------------------------------------------------------------------
# Label maps


@dataclass(frozen=True)
class LabelMap:
    """Label ids and names of a dataset, in the column order of the model's outputs.

    ``ids`` keep the dataset's own numbering (AVA: 1..80, with 60 evaluated classes); column ``k`` of an
    action-score matrix belongs to ``ids[k]``. ``evaluated`` is the subset of ids that evaluation counts
    (all of them unless said otherwise). ``label_types`` holds AVA's optional ``label_type`` per id.
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    evaluated: frozenset[int] = frozenset()
    label_types: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.names):
            raise ValueError(f"LabelMap: {len(self.ids)} ids but {len(self.names)} names")
        if len(set(self.ids)) != len(self.ids):
            dup = sorted({i for i in self.ids if self.ids.count(i) > 1})
            raise ValueError(f"LabelMap: duplicate label ids {dup}")
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"LabelMap: duplicate label names {dup}")
        if not self.evaluated:
            object.__setattr__(self, "evaluated", frozenset(self.ids))
        unknown = set(self.evaluated) - set(self.ids)
        if unknown:
            raise ValueError(f"LabelMap: evaluated ids {sorted(unknown)} are not in the label map")

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, str]], evaluated: Iterable[int] | None = None) -> LabelMap:
        """Build from ``(id, name)`` pairs, keeping their order as the column order."""
        pairs = list(pairs)
        return cls(
            ids=tuple(int(i) for i, _ in pairs),
            names=tuple(str(n) for _, n in pairs),
            evaluated=frozenset(evaluated or ()),
        )

    # -- lookups -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, label_id: object) -> bool:
        return label_id in self._index

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(zip(self.ids, self.names, strict=True))

    @property
    def _index(self) -> dict[int, int]:
        # Cached on first use; the dataclass is frozen so it cannot go stale.
        cache = self.__dict__.get("_index_cache")
        if cache is None:
            cache = {label_id: k for k, label_id in enumerate(self.ids)}
            object.__setattr__(self, "_index_cache", cache)
        return cache

    def name(self, label_id: int) -> str:
        """Name of ``label_id``; KeyError naming the id if unknown."""
        try:
            return self.names[self._index[int(label_id)]]
        except KeyError:
            raise KeyError(f"label id {label_id} is not in the label map") from None

    def id(self, name: str) -> int:
        """Id of the label called ``name``; KeyError naming it if unknown."""
        try:
            return self.ids[self.names.index(name)]
        except ValueError:
            raise KeyError(f"label {name!r} is not in the label map") from None

    def index(self, label_id: int) -> int:
        """Column of ``label_id`` in the model's score matrix."""
        try:
            return self._index[int(label_id)]
        except KeyError:
            raise KeyError(f"label id {label_id} is not in the label map") from None

    def indices(self, label_ids: np.ndarray) -> np.ndarray:
        """Columns for an array of ids, -1 where an id is not in the label map (vectorized)."""
        label_ids = np.asarray(label_ids, dtype=np.int64)
        lut_size = max(max(self.ids, default=0), int(label_ids.max(initial=0))) + 1
        lut = np.full(lut_size, -1, dtype=np.int64)
        lut[np.asarray(self.ids, dtype=np.int64)] = np.arange(len(self.ids))
        out = np.full(label_ids.shape, -1, dtype=np.int64)
        valid = label_ids >= 0
        out[valid] = lut[label_ids[valid]]
        return out

    @property
    def evaluated_ids(self) -> tuple[int, ...]:
        """Evaluated ids in column order."""
        return tuple(i for i in self.ids if i in self.evaluated)

    def restrict(self, ids: Iterable[int]) -> LabelMap:
        """A label map with only ``ids`` (in this map's order); every id must exist."""
        keep = set(int(i) for i in ids)
        missing = keep - set(self.ids)
        if missing:
            raise KeyError(f"label ids {sorted(missing)} are not in the label map")
        pairs = [(i, n) for i, n in self if i in keep]
        return LabelMap(
            ids=tuple(i for i, _ in pairs),
            names=tuple(n for _, n in pairs),
            evaluated=frozenset(self.evaluated & keep),
            label_types={i: t for i, t in self.label_types.items() if i in keep},
        )

    # -- files -------------------------------------------------------------------------------------
    @classmethod
    def from_pbtxt(cls, path: str | Path) -> LabelMap:
        """Read an AVA label map: ``item { name: "..." id: N [label_type: T] }`` blocks, or the full list's
        ``label { name: "..." label_id: N label_type: T }`` blocks.

        Every id in a ``.pbtxt`` is evaluated: that is how the official evaluator uses the file.
        Raises ValueError naming the file and line of a malformed item.
        """
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        pairs: list[tuple[int, str]] = []
        label_types: dict[int, str] = {}
        item: dict[str, str] | None = None
        item_line = 0
        field_re = re.compile(r'^(\w+)\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))\s*$')
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip() if '"' not in raw else raw.strip()
            if not line:
                continue
            if re.fullmatch(r"(item|label)\s*\{", line):  # AVA ships both block names
                if item is not None:
                    raise ValueError(f"{path}:{lineno}: 'item {{' inside an unclosed item (line {item_line})")
                item, item_line = {}, lineno
                continue
            if line == "}":
                if item is None:
                    raise ValueError(f"{path}:{lineno}: '}}' without an open item")
                if "id" not in item and "label_id" in item:  # the official evaluator accepts both
                    item["id"] = item.pop("label_id")
                if "id" not in item or "name" not in item:
                    raise ValueError(f"{path}:{item_line}: item needs both 'name' and 'id', got {item}")
                try:
                    label_id = int(item["id"])
                except ValueError:
                    raise ValueError(f"{path}:{item_line}: id {item['id']!r} is not an integer") from None
                pairs.append((label_id, item["name"]))
                if "label_type" in item:
                    label_types[label_id] = item["label_type"]
                item = None
                continue
            match = field_re.match(line)
            if item is None or match is None:
                raise ValueError(f"{path}:{lineno}: cannot parse {raw.strip()!r}")
            key, quoted, bare = match.groups()
            item[key] = quoted if quoted is not None else bare
        if item is not None:
            raise ValueError(f"{path}:{item_line}: item is not closed")
        if not pairs:
            raise ValueError(f"{path}: no label items found")
        ids = tuple(i for i, _ in pairs)
        return cls(ids=ids, names=tuple(n for _, n in pairs), label_types=label_types)

    def to_pbtxt(self, path: str | Path, evaluated_only: bool = True) -> None:
        """Write an AVA ``.pbtxt`` label map (only the evaluated ids by default, as AVA ships it)."""
        lines = []
        for label_id, name in self:
            if evaluated_only and label_id not in self.evaluated:
                continue
            lines += ["item {", f'  name: "{name}"', f"  id: {label_id}"]
            if label_id in self.label_types:
                lines.append(f"  label_type: {self.label_types[label_id]}")
            lines.append("}")
        _write_text_atomic(Path(path), "\n".join(lines) + "\n")

    @classmethod
    def from_text(cls, path: str | Path) -> LabelMap:
        """Read a plain list: one label per line, either ``name`` (ids 1, 2, ...) or ``id name``.

        Blank lines and ``#`` comments are skipped. Raises ValueError naming the file and line.
        """
        path = Path(path)
        pairs: list[tuple[int, str]] = []
        explicit: bool | None = None
        for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            match = re.match(r"^(\d+)[\s:,]+(.+)$", line)
            if explicit is None:
                explicit = match is not None
            if explicit and match is None:
                raise ValueError(f"{path}:{lineno}: expected 'id name', got {line!r}")
            pairs.append((int(match.group(1)), match.group(2).strip()) if explicit else (len(pairs) + 1, line))
        if not pairs:
            raise ValueError(f"{path}: no labels found")
        return cls.from_pairs(pairs)

    def to_text(self, path: str | Path) -> None:
        """Write the plain ``id name`` list readable by :meth:`from_text`."""
        _write_text_atomic(Path(path), "".join(f"{i} {n}\n" for i, n in self))

    @classmethod
    def load(cls, path: str | Path) -> LabelMap:
        """Read a ``.pbtxt`` or a plain text list, by extension."""
        return cls.from_pbtxt(path) if str(path).endswith(".pbtxt") else cls.from_text(path)


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------------------
# Detections and tubes


def _as_vector(values: np.ndarray | Sequence, n: int, dtype: type, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{what}: expected shape ({n},), got {tuple(arr.shape)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{what}: value {i} is not finite ({arr[i]})")
    return arr


@dataclass
class KeyframeDetections:
    """People found on one keyframe and the actions they perform.

    boxes: (N, 4) float32 normalized xyxy. person_scores: (N,) detector confidences.
    action_scores: (N, C) float32, column ``k`` for ``label_map.ids[k]`` (C may be 0 before
    classification). track_ids: (N,) int64 person identities, -1 where not tracked; None if untracked.
    """

    video_id: str
    frame_index: int
    time_s: float
    boxes: np.ndarray
    person_scores: np.ndarray
    action_scores: np.ndarray
    track_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = f"KeyframeDetections({self.video_id!r}, frame {self.frame_index})"
        self.boxes = as_boxes(self.boxes, f"{where}.boxes")
        n = len(self.boxes)
        self.person_scores = _as_vector(self.person_scores, n, np.float32, f"{where}.person_scores")
        scores = np.ascontiguousarray(self.action_scores, dtype=np.float32)
        if scores.size == 0 and scores.ndim < 2:
            scores = scores.reshape(n, 0)
        if scores.ndim != 2 or scores.shape[0] != n:
            raise ValueError(f"{where}.action_scores: expected shape ({n}, C), got {tuple(scores.shape)}")
        if not np.isfinite(scores).all():
            row = int(np.flatnonzero(~np.isfinite(scores).all(axis=1))[0])
            raise ValueError(f"{where}.action_scores: row {row} is not finite")
        self.action_scores = scores
        if self.track_ids is not None:
            self.track_ids = _as_vector(self.track_ids, n, np.int64, f"{where}.track_ids")
        if not np.isfinite(self.time_s):
            raise ValueError(f"{where}.time_s is not finite")
        self.frame_index = int(self.frame_index)
        self.time_s = float(self.time_s)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def num_classes(self) -> int:
        return self.action_scores.shape[1]

    def select(self, keep: np.ndarray) -> KeyframeDetections:
        """The detections picked by a boolean mask or an index array."""
        return KeyframeDetections(
            video_id=self.video_id,
            frame_index=self.frame_index,
            time_s=self.time_s,
            boxes=self.boxes[keep],
            person_scores=self.person_scores[keep],
            action_scores=self.action_scores[keep],
            track_ids=None if self.track_ids is None else self.track_ids[keep],
        )

    @classmethod
    def empty(cls, video_id: str, frame_index: int, time_s: float, num_classes: int) -> KeyframeDetections:
        """A keyframe with nobody on it."""
        return cls(
            video_id,
            frame_index,
            time_s,
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, num_classes), np.float32),
        )


@dataclass
class Tube:
    """One person performing one action over consecutive frames of a video.

    frames: (L,) strictly increasing 0-based frame indices. boxes: (L, 4) normalized xyxy, one per
    frame. scores: (L,) per-frame action scores. score: the tube's overall confidence.
    """

    video_id: str
    label: int
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    score: float

    def __post_init__(self) -> None:
        where = f"Tube({self.video_id!r}, label {self.label}, track {self.track_id})"
        self.frames = np.ascontiguousarray(self.frames, dtype=np.int64).reshape(-1)
        n = len(self.frames)
        if n == 0:
            raise ValueError(f"{where}: a tube needs at least one frame")
        if n > 1 and not (np.diff(self.frames) > 0).all():
            i = int(np.flatnonzero(np.diff(self.frames) <= 0)[0])
            raise ValueError(
                f"{where}: frames must increase strictly; frame {self.frames[i + 1]} follows {self.frames[i]}"
            )
        self.boxes = as_boxes(self.boxes, f"{where}.boxes")
        if len(self.boxes) != n:
            raise ValueError(f"{where}: {n} frames but {len(self.boxes)} boxes")
        self.scores = _as_vector(self.scores, n, np.float32, f"{where}.scores")
        if not np.isfinite(self.score):
            raise ValueError(f"{where}: score is not finite")
        self.label = int(self.label)
        self.track_id = int(self.track_id)
        self.score = float(self.score)

    @classmethod
    def unchecked(
        cls, video_id: str, label: int, track_id: int, frames: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
        score: float,
    ) -> Tube:
        """A tube from values already in the form the constructor gives them, without checking them.

        For code that builds many tubes from arrays it made itself (the tube linker): ``frames`` (L,)
        C-contiguous int64, strictly increasing, L >= 1; ``boxes`` (L, 4) C-contiguous float32, finite,
        ``x1 <= x2`` and ``y1 <= y2``; ``scores`` (L,) C-contiguous float32, finite; ``score`` a finite
        float; ``label`` and ``track_id`` ints. Anything else must go through the checking constructor.
        """
        tube = cls.__new__(cls)
        tube.video_id, tube.label, tube.track_id, tube.score = video_id, label, track_id, score
        tube.frames, tube.boxes, tube.scores = frames, boxes, scores
        return tube

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def start_frame(self) -> int:
        return int(self.frames[0])

    @property
    def end_frame(self) -> int:
        """Last frame, inclusive."""
        return int(self.frames[-1])

    @property
    def is_contiguous(self) -> bool:
        """True when the tube has a box on every frame from start to end."""
        return self.end_frame - self.start_frame + 1 == len(self.frames)
