"""AVA file formats: box CSVs (ground truth, detections, proposals), excluded timestamps, frame lists.

One reader and one writer per format. The layouts are those of the AVA release, read by the official
ActivityNet evaluator and by PySlowFast's ``ava_helper``:

- box CSV: ``video_id,timestamp,x1,y1,x2,y2,action_id,last`` with normalized boxes; ``action_id`` may be
  empty (person proposals); ``last`` is the person id in ground truth and the score in detections.
- excluded timestamps: ``video_id,timestamp``.
- frame list: a header line, then ``original_video_id video_index frame_index path labels``
  (space separated, 0-based ``frame_index``, ``path`` relative to the frame folder).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from detection.formats.files import atomic_write
from detection.structures import as_boxes

__all__ = [
    "AvaCheck",
    "AvaRows",
    "AvaTable",
    "FrameListEntry",
    "format_timestamp",
    "read_ava_csv",
    "read_ava_table",
    "check_ava_csv",
    "write_ava_csv",
    "read_exclusions",
    "check_exclusions",
    "write_exclusions",
    "read_frame_list",
    "write_frame_list",
    "atomic_write",
]

Kind = Literal["groundtruth", "detections"]


@dataclass
class AvaRows:
    """The columns of an AVA box CSV, one entry per row (one row per box and action).

    timestamps are seconds (AVA keyframes are whole seconds, but fractional ones are kept).
    action_ids are -1 where the column is empty. For ground truth ``person_ids`` are set and ``scores``
    are 1; for detections ``scores`` are set and ``person_ids`` are -1.
    """

    video_ids: np.ndarray  # (N,) str
    timestamps: np.ndarray  # (N,) float64
    boxes: np.ndarray  # (N, 4) float32 normalized xyxy
    action_ids: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float32
    person_ids: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        n = len(self.video_ids)
        self.video_ids = np.asarray(self.video_ids, dtype=str).reshape(n)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(n)
        self.boxes = as_boxes(self.boxes, "AvaRows.boxes").reshape(n, 4)
        self.action_ids = np.asarray(self.action_ids, dtype=np.int64).reshape(n)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(n)
        self.person_ids = np.asarray(self.person_ids, dtype=np.int64).reshape(n)

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def build(
        cls,
        video_ids: Iterable[str],
        timestamps: Iterable[float],
        boxes: np.ndarray,
        action_ids: Iterable[int],
        scores: Iterable[float] | None = None,
        person_ids: Iterable[int] | None = None,
    ) -> AvaRows:
        """Rows from columns; missing scores default to 1 and missing person ids to -1."""
        video_ids = list(video_ids)
        n = len(video_ids)
        return cls(
            video_ids=np.asarray(video_ids, dtype=str),
            timestamps=np.fromiter(timestamps, dtype=np.float64, count=n),
            boxes=np.asarray(boxes, dtype=np.float32).reshape(n, 4),
            action_ids=np.fromiter(action_ids, dtype=np.int64, count=n),
            scores=np.ones(n, np.float32) if scores is None else np.fromiter(scores, np.float32, count=n),
            person_ids=np.full(n, -1, np.int64) if person_ids is None else np.fromiter(person_ids, np.int64, n),
        )

    def select(self, keep: np.ndarray) -> AvaRows:
        return AvaRows(
            self.video_ids[keep],
            self.timestamps[keep],
            self.boxes[keep],
            self.action_ids[keep],
            self.scores[keep],
            self.person_ids[keep],
        )


def format_timestamp(seconds: float) -> str:
    """AVA's zero-padded whole seconds (``0902``), or up to 4 decimals for fractional times."""
    if float(seconds).is_integer():
        return f"{int(seconds):04d}"
    return f"{seconds:.4f}".rstrip("0")


def read_ava_csv(path: str | Path, kind: Kind = "detections") -> AvaRows:
    """Read an AVA box CSV of 7 or 8 columns.

    ``kind`` says what the 8th column holds: the person id (``"groundtruth"``) or the score
    (``"detections"``; 1.0 when absent, as the official evaluator assumes). Raises ValueError naming the
    file, the line and the text of a malformed row (column count, non-numeric field, inverted box,
    non-finite value).
    """
    return read_ava_table(path, kind).to_rows(kind)


@dataclass
class AvaTable:
    """An AVA box CSV at full precision: every number as Python's ``float``/``int`` parse it.

    The columns of :class:`AvaRows` before they are rounded to float32, which is what the official
    evaluator computes with (the frame-mAP evaluator uses this to reproduce its numbers bit for bit).
    ``last`` is the raw 8th column (person id or score), NaN where it is absent or empty.
    """

    video_ids: np.ndarray  # (N,) str
    timestamps: np.ndarray  # (N,) float64, seconds
    boxes: np.ndarray  # (N, 4) float64 normalized xyxy
    action_ids: np.ndarray  # (N,) int64, -1 where empty
    last: np.ndarray  # (N,) float64, NaN where absent

    def __len__(self) -> int:
        return len(self.video_ids)

    def to_rows(self, kind: Kind = "detections") -> AvaRows:
        """The float32 :class:`AvaRows` view (person ids or scores from ``last``, as :func:`read_ava_csv`)."""
        n = len(self)
        if kind == "groundtruth":
            person_ids = np.where(np.isnan(self.last), -1, self.last).astype(np.int64)
            scores = np.ones(n, np.float32)
        else:
            scores = np.where(np.isnan(self.last), 1.0, self.last).astype(np.float32)
            person_ids = np.full(n, -1, np.int64)
        return AvaRows(
            video_ids=self.video_ids,
            timestamps=self.timestamps,
            boxes=self.boxes.astype(np.float32),
            action_ids=self.action_ids,
            scores=scores,
            person_ids=person_ids,
        )


def read_ava_table(path: str | Path, kind: Kind = "detections") -> AvaTable:
    """Read an AVA box CSV of 7 or 8 columns at full precision (see :class:`AvaTable`).

    Same rules and errors as :func:`read_ava_csv`. Well-formed lines are parsed with numpy on the raw
    bytes; from the first line the fast path cannot vouch for (quotes, control or non-ASCII characters,
    a wrong column count, a bad or non-finite number, an inverted box) the rest of the file goes through
    the ``csv`` module row by row, which either accepts the line or raises the file:line error.
    """
    path = Path(path)
    raw = path.read_bytes()
    head, stop_line, stop_offset = _parse_fast(raw)
    if stop_line is None:
        return head
    text = raw[stop_offset:].decode("utf-8")
    tail = _parse_slow(path, csv.reader(io.StringIO(text, newline="")), stop_line + 1, kind)
    return _concat([head, tail])


def _concat(tables: list[AvaTable]) -> AvaTable:
    if not tables:
        return AvaTable(np.zeros(0, str), np.zeros(0), np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))
    columns = [(t.video_ids, t.timestamps, t.boxes, t.action_ids, t.last) for t in tables]
    return AvaTable(*(np.concatenate(parts) for parts in zip(*columns, strict=True)))


def _parse_slow(path: Path, rows: Iterable[list[str]], first_lineno: int, kind: Kind) -> AvaTable:
    """The reference reader: ``csv`` rows, Python ``float``/``int``, one clear error per bad row."""
    video_ids: list[str] = []
    timestamps: list[float] = []
    coords: list[list[float]] = []
    actions: list[int] = []
    last: list[float] = []
    for lineno, row in enumerate(rows, start=first_lineno):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) not in (7, 8):
            raise ValueError(f"{path}:{lineno}: expected 7 or 8 columns, got {len(row)}: {','.join(row)!r}")
        try:
            t = float(row[1])
            box = [float(v) for v in row[2:6]]
            action = int(row[6]) if row[6].strip() else -1
            value = float(row[7]) if len(row) == 8 and row[7].strip() else float("nan")
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: {err}: {','.join(row)!r}") from None
        if not -(2**63) <= action < 2**63:
            raise ValueError(f"{path}:{lineno}: action id out of range: {','.join(row)!r}")
        bad_value = kind == "detections" and len(row) == 8 and row[7].strip() and not np.isfinite(value)
        if not (np.isfinite(t) and np.isfinite(box).all()) or bad_value:
            raise ValueError(f"{path}:{lineno}: non-finite value: {','.join(row)!r}")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"{path}:{lineno}: inverted box (x2 < x1 or y2 < y1): {','.join(row)!r}")
        video_ids.append(row[0])
        timestamps.append(t)
        coords.append(box)
        actions.append(action)
        last.append(value)
    n = len(video_ids)
    return AvaTable(
        video_ids=np.asarray(video_ids, dtype=str),
        timestamps=np.asarray(timestamps, dtype=np.float64),
        boxes=np.asarray(coords, dtype=np.float64).reshape(n, 4),
        action_ids=np.asarray(actions, dtype=np.int64),
        last=np.asarray(last, dtype=np.float64),
    )



@dataclass
class AvaCheck:
    """What :func:`check_ava_csv` found in a box CSV: the well-formed rows and a message for each other row.

    ``table`` holds the rows :func:`read_ava_table` accepts, in file order; ``lines`` their 1-based line
    numbers; ``problems`` one ``"file:line: what"`` message per rejected line, in line order.
    """

    table: AvaTable
    lines: np.ndarray  # (N,) int64
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


_CHECK_BATCH = 4096  # rows validated together by the reference reader; a failing batch is bisected
_CHECK_DENSE = 64  # a bad line this close after the previous one: the next lines go to the reference reader
_CHECK_WINDOW = 512  # ... this many of them
_CHECK_CHUNK = 1 << 24  # bytes given to the vectorised path at once
_CHECK_MIN_CHUNK = 1 << 16  # ... right after a bad line


def check_ava_csv(path: str | Path, kind: Kind = "detections") -> AvaCheck:
    """Read an AVA box CSV like :func:`read_ava_table`, but go on past malformed rows.

    Each line gets the same rules and the same message as :func:`read_ava_table` gives for the first bad
    one (column count, non-numeric field, inverted box, non-finite value), plus ``not UTF-8 text``; the
    good rows are returned with their line numbers. Well-formed stretches take the vectorised path; a bad
    line is checked alone by the reference reader and the vectorised path resumes after it (after many
    bad lines, the reference reader takes windows of lines until one is clean).
    """
    path = Path(path)
    raw = path.read_bytes()
    tables: list[AvaTable] = []
    lines: list[np.ndarray] = []
    problems: list[str] = []
    offset, line0 = 0, 0  # where the unread rest starts: byte offset, 0-based line index
    chunk = _CHECK_CHUNK
    while offset < len(raw):
        # After a bad line the chunk starts small and doubles while clean: a file with bad lines all over
        # does not re-read long stretches.
        end = _after_lines(raw, offset, None, chunk)
        head, stop_line, stop_offset = _parse_fast(raw[offset:end])
        tables.append(head)
        lines.append(line0 + 1 + _nonblank_lines(raw[offset:end], stop_line))
        if stop_line is None:
            line0 += raw.count(b"\n", offset, end)
            offset, chunk = end, min(2 * chunk, _CHECK_CHUNK)
            continue
        offset, line0, chunk = offset + stop_offset, line0 + stop_line, _CHECK_MIN_CHUNK
        # The bad line alone, or a window of lines when bad lines come close together.
        window = 1 if stop_line >= _CHECK_DENSE else _CHECK_WINDOW
        end = _after_lines(raw, offset, window)
        table, good, bad = _check_lines(path, raw[offset:end], line0 + 1, kind)
        tables.append(table)
        lines.append(good)
        problems += bad
        line0 += raw.count(b"\n", offset, end)
        offset = end
    return AvaCheck(_concat(tables), np.concatenate(lines or [np.zeros(0, np.int64)]).astype(np.int64), problems)


def _after_lines(raw: bytes, offset: int, count: int | None, max_bytes: int | None = None) -> int:
    """Byte offset just after ``count`` lines from ``offset`` (or after the last whole line within
    ``max_bytes``, at least one line); the end of ``raw`` when it comes first."""
    if count is None:
        if offset + max_bytes >= len(raw):
            return len(raw)
        last = raw.rfind(b"\n", offset, offset + max_bytes)
        return last + 1 if last >= 0 else _after_lines(raw, offset, 1)
    for _ in range(count):
        newline = raw.find(b"\n", offset)
        if newline < 0:
            return len(raw)
        offset = newline + 1
    return offset


def _nonblank_lines(raw: bytes, stop_line: int | None) -> np.ndarray:
    """0-based indices of the lines before ``stop_line`` (all when None) that the fast path reads as rows."""
    a = np.frombuffer(raw if raw.endswith(b"\n") or not raw else raw + b"\n", dtype=np.uint8)
    newline_at = np.flatnonzero(a == ord("\n"))
    line_start = np.concatenate([[0], newline_at[:-1] + 1]).astype(np.int64)
    line_end = newline_at - ((newline_at > line_start) & (a[np.maximum(newline_at - 1, 0)] == ord("\r")))
    rows = np.flatnonzero(line_end > line_start)
    return rows if stop_line is None else rows[rows < stop_line]


def _check_lines(path: Path, raw: bytes, first_lineno: int, kind: Kind) -> tuple[AvaTable, np.ndarray, list[str]]:
    """Validate lines one by one with the reference reader: (good rows, their line numbers, problems)."""
    numbered: list[tuple[int, list[str]]] = []
    problems: list[str] = []
    pieces = raw.split(b"\n")  # lines end at newlines only, as the line numbers count them
    if raw.endswith(b"\n"):
        pieces.pop()
    for lineno, line in enumerate(pieces, start=first_lineno):
        try:
            text = line.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as err:
            problems.append(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start}): {line[:80]!r}")
            continue
        try:
            row = next(csv.reader([text]), [])
        except csv.Error as err:
            problems.append(f"{path}:{lineno}: {err}: {text.strip()!r}")
            continue
        if row and not (len(row) == 1 and not row[0].strip()):
            numbered.append((lineno, row))
    tables: list[AvaTable] = []
    good: list[int] = []

    def validate(batch: list[tuple[int, list[str]]]) -> None:
        # One reference-reader call per batch; a batch with a bad row is split until the row stands alone.
        # The rows of a batch need not be on consecutive lines: a row alone gets its own line number.
        try:
            table = _parse_slow(path, [row for _, row in batch], batch[0][0], kind)
        except ValueError as err:
            if len(batch) == 1:
                problems.append(str(err))
                return
            validate(batch[: len(batch) // 2])
            validate(batch[len(batch) // 2 :])
            return
        tables.append(table)
        good.extend(lineno for lineno, _ in batch)

    # The batch shrinks after a batch with bad rows and grows after a clean one: a file of mostly bad rows
    # goes row by row instead of bisecting every batch.
    i, size = 0, 64
    while i < len(numbered):
        before = len(problems)
        validate(numbered[i : i + size])
        i += size
        size = max(1, size // 4) if len(problems) > before else min(_CHECK_BATCH, size * 2)
    problems.sort(key=_line_of)
    return _concat(tables), np.asarray(good, dtype=np.int64), problems


def _line_of(message: str) -> int:
    """The line number of a ``file:line: what`` message (messages of one file sort by line)."""
    head = message.split(": ", 1)[0]
    number = head.rsplit(":", 1)[-1]
    return int(number) if number.isdigit() else 0

# -- the fast path ---------------------------------------------------------------------------------
# Bytes left to the csv module: control characters other than the line end, quotes (csv quoting) and
# non-ASCII bytes (decoding).
_SUSPECT_BYTE = np.ones(256, dtype=bool)
_SUSPECT_BYTE[32:127] = False
_SUSPECT_BYTE[ord('"')] = True
_SUSPECT_BYTE[ord("\n")] = False
_LINES_PER_BLOCK = 1 << 15  # lines parsed together: the temporaries stay in the CPU caches
_MAX_DIGITS = 15  # a mantissa of at most 15 digits is an exact float64 integer (< 2**53)
_POW10 = np.array([10.0**k for k in range(_MAX_DIGITS + 1)])  # exact in float64
_MAX_FIELD = 64  # longer fields (video ids) go to the csv module


def _parse_fast(raw: bytes) -> tuple[AvaTable, int | None, int]:
    """Parse the longest prefix of well-formed lines with numpy.

    Returns the table of the lines before the first line it cannot vouch for, that line's 0-based index
    (None when the whole file was parsed) and its byte offset. Lines end with a newline (a carriage
    return before it is dropped, as the csv reader does); blank lines are skipped.
    """
    a = np.frombuffer(raw if raw.endswith(b"\n") or not raw else raw + b"\n", dtype=np.uint8)
    newline_at = np.flatnonzero(a == ord("\n"))
    if len(newline_at) == 0:
        return _concat([]), None, len(raw)
    line_start = np.concatenate([[0], newline_at[:-1] + 1]).astype(np.int64)
    line_end = newline_at - ((newline_at > line_start) & (a[newline_at - 1] == ord("\r")))
    num_lines = len(newline_at)
    stop = _first_suspect_line(a, line_start, num_lines - int(np.count_nonzero(line_end < newline_at)))

    clean = stop  # lines before it have only bytes the fast path handles

    def parse(l0: int) -> tuple[AvaTable, int | None]:
        l1 = min(l0 + _LINES_PER_BLOCK, clean)
        return _parse_block(a, line_start[l0:l1], line_end[l0:l1], int(newline_at[l1 - 1]) + 1)

    # Blocks are independent; numpy releases the GIL, so threads share the work on several cores.
    blocks = range(0, clean, _LINES_PER_BLOCK)
    workers = min(len(blocks), os.cpu_count() or 1, 4)
    parts: list[AvaTable] = []
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        results = pool.map(parse, blocks) if pool else map(parse, blocks)
        for l0, (table, first_bad) in zip(blocks, results, strict=True):
            parts.append(table)
            if first_bad is not None:
                stop = l0 + first_bad
                break
    table = _concat(parts)
    if stop >= num_lines:
        return table, None, len(raw)
    return table, stop, int(line_start[stop])


def _first_suspect_line(a: np.ndarray, line_start: np.ndarray, allowed: int) -> int:
    """Index of the first line with a byte the fast path leaves to the csv module (or the line count).

    Counts the bytes outside printable ASCII and the quotes; ``allowed`` of them are line ends (newlines
    and the carriage returns before them). Only when there are more does it look for the first one.
    """
    block = 1 << 22
    total = 0
    for i in range(0, len(a), block):
        c = a[i : i + block]
        total += np.count_nonzero(((c - np.uint8(32)) >= 95) | (c == ord('"')))  # < 32, >= 127, quote
    if total == allowed:
        return len(line_start)
    for i in range(0, len(a), block):
        c = a[i : i + block]
        where = np.flatnonzero(_SUSPECT_BYTE[c]) + i
        if len(where) == 0:
            continue
        nxt = a[np.minimum(where + 1, len(a) - 1)]
        where = where[~((a[where] == ord("\r")) & (nxt == ord("\n")))]
        if len(where):
            return int(np.searchsorted(line_start, where[0], side="right")) - 1
    return len(line_start)


def _parse_block(
    a: np.ndarray, line_start: np.ndarray, line_end: np.ndarray, block_end: int
) -> tuple[AvaTable, int | None]:
    """Parse the lines of one block; returns their table up to the first bad line and its index."""
    b0 = int(line_start[0])
    chunk = a[b0:block_end]
    seps = np.flatnonzero((chunk == ord(",")) | (chunk == ord("\n"))) + b0
    newline = np.flatnonzero(a[seps] == ord("\n"))  # index into seps of each line's end
    num_fields = np.diff(newline, prepend=-1)
    blank = line_end == line_start
    bad_shape = ~blank & (num_fields != 7) & (num_fields != 8)
    first_bad = int(np.argmax(bad_shape)) if bad_shape.any() else len(line_start)
    lines = np.flatnonzero(~blank[:first_bad])
    first_sep, ncols = newline[lines] - num_fields[lines] + 1, num_fields[lines]
    starts, ends, last_sep = line_start[lines], line_end[lines], len(seps) - 1

    def bounds(j: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end offsets of field ``j`` on every line (meaningless where the line is shorter)."""
        s = starts if j == 0 else seps[np.minimum(first_sep + j - 1, last_sep)] + 1
        e = np.where(ncols - 1 == j, ends, seps[np.minimum(first_sep + j, last_sep)])
        return s, e

    bad = np.zeros(len(lines), dtype=bool)
    s, e = bounds(0)
    bad |= (e - s) > _MAX_FIELD
    video_ids = _gather(a, s, np.minimum(e, s + _MAX_FIELD)).astype(str)
    timestamps = _floats(a, *bounds(1), bad)
    boxes = np.stack([_floats(a, *bounds(j), bad) for j in range(2, 6)], axis=1)
    action_ids = _ints(a, *bounds(6), bad)
    last = np.full(len(lines), np.nan)
    s, e = bounds(7)
    present = np.flatnonzero((ncols == 8) & (e > s))  # an empty 8th column reads as absent
    if len(present):
        bad_last = np.zeros(len(present), dtype=bool)
        values = _floats(a, s[present], e[present], bad_last)
        last[present] = values
        bad[present] |= bad_last | ~np.isfinite(values)
    bad |= ~np.isfinite(timestamps) | ~np.isfinite(boxes).all(axis=1)
    bad |= (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    keep = slice(None)
    if bad.any():
        k = int(np.argmax(bad))
        first_bad, keep = int(lines[k]), slice(0, k)
    table = AvaTable(video_ids[keep], timestamps[keep], boxes[keep], action_ids[keep], last[keep])
    return table, (None if first_bad >= len(line_start) else first_bad)


def _gather(a: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Fields ``a[s:e]`` as a fixed-width bytes array (``S<width>``, NUL-padded)."""
    widths = e - s
    width = max(int(widths.max(initial=0)), 1)
    offsets = np.arange(width)
    mat = a[np.minimum(s[:, None] + offsets, len(a) - 1)]
    mat[offsets >= widths[:, None]] = 0  # numpy bytes strings drop trailing NULs
    return mat.view(f"S{width}").ravel()


def _parse_plain(a: np.ndarray, s: np.ndarray, e: np.ndarray, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised parse of ``[sign]digits[.digits]`` fields (no dot if ``integer``), <= 15 digits.

    Returns (value, plain): the value is exact where ``plain``; other fields are left to Python. A float
    is its integer mantissa divided by an exact power of ten: IEEE division rounds that correctly, so it
    equals Python's ``float(text)``.
    """
    n = len(s)
    widths = e - s
    mantissa = np.zeros(n, dtype=np.int64)
    decimals = np.zeros(n, dtype=np.int64)
    negative = np.zeros(n, dtype=bool)
    plain = np.zeros(n, dtype=bool)
    counts = np.bincount(np.minimum(widths, _MAX_DIGITS + 3), minlength=_MAX_DIGITS + 3)
    for width in np.flatnonzero(counts[: _MAX_DIGITS + 3]).tolist():
        if width == 0:
            continue
        rows = slice(None) if counts[width] == n else np.flatnonzero(widths == width)
        # (width, rows) matrix: row k holds the k-th character of every field, contiguous.
        chars = a[s[rows][None, :] + np.arange(width)[:, None]]
        digits = chars - np.uint8(ord("0"))  # wraps around for non-digits
        is_digit = digits < 10
        is_dot = chars == ord(".")
        sign = (chars[0] == ord("-")) | (chars[0] == ord("+"))
        num_digits = is_digit.sum(axis=0)
        num_dots = is_dot.sum(axis=0) if not integer else 0
        ok = (num_digits + num_dots + sign == width) & (num_digits >= 1) & (num_digits <= _MAX_DIGITS)
        if not integer:
            ok &= num_dots <= 1
        m = np.zeros(len(num_digits), dtype=np.int64)
        d = np.zeros(len(num_digits), dtype=np.int64)
        seen_dot = np.zeros(len(num_digits), dtype=bool)
        for k in range(width):  # Horner over the characters; the dot only starts counting decimals
            m = np.where(is_digit[k], m * 10 + digits[k], m)
            if not integer:
                d += is_digit[k] & seen_dot
                seen_dot |= is_dot[k]
        mantissa[rows], decimals[rows], negative[rows], plain[rows] = m, d, chars[0] == ord("-"), ok
    if integer:
        return np.where(negative, -mantissa, mantissa), plain
    values = mantissa / _POW10[np.minimum(decimals, _MAX_DIGITS)]
    return np.where(negative, -values, values), plain


def _floats(a: np.ndarray, s: np.ndarray, e: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Python ``float`` of each field (vectorised for plain decimals); unparsable fields are marked bad."""
    values, plain = _parse_plain(a, s, e, integer=False)
    for i in np.flatnonzero(~plain & ~bad).tolist():  # exponents, spaces, inf, long mantissas, errors
        try:
            values[i] = float(a[s[i] : e[i]].tobytes())
        except ValueError:
            bad[i] = True
    return values


def _ints(a: np.ndarray, s: np.ndarray, e: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Action ids: Python ``int`` of each field, -1 for an empty or blank one; bad fields are marked."""
    values, plain = _parse_plain(a, s, e, integer=True)
    for i in np.flatnonzero(~plain & ~bad).tolist():
        text = a[s[i] : e[i]].tobytes()
        try:
            values[i] = int(text) if text.strip() else -1
        except (ValueError, OverflowError):
            bad[i] = True
    return values


def write_ava_csv(path: str | Path, rows: AvaRows, kind: Kind = "detections", decimals: int = 3) -> None:
    """Write rows as an AVA box CSV (atomically).

    Ground truth gets the person id as the 8th column; detections the score (4 decimals). Empty
    ``action_id`` is written for -1 (person proposals). Boxes get ``decimals`` decimals (AVA uses 3).
    """
    out = io.StringIO()
    box_fmt = f"{{:.{decimals}f}},{{:.{decimals}f}},{{:.{decimals}f}},{{:.{decimals}f}}"
    for i in range(len(rows)):
        action = "" if rows.action_ids[i] < 0 else str(int(rows.action_ids[i]))
        last = str(int(rows.person_ids[i])) if kind == "groundtruth" else f"{float(rows.scores[i]):.4f}"
        out.write(
            f"{rows.video_ids[i]},{format_timestamp(float(rows.timestamps[i]))},"
            f"{box_fmt.format(*rows.boxes[i].tolist())},{action},{last}\n"
        )
    atomic_write(path, out.getvalue())


def read_exclusions(path: str | Path) -> set[tuple[str, int]]:
    """Read an excluded-timestamps CSV into ``{(video_id, second)}``; ValueError names file:line."""
    path = Path(path)
    keys: set[tuple[str, int]] = set()
    with open(path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'video_id,timestamp', got {','.join(row)!r}")
            try:
                keys.add((row[0], int(float(row[1]))))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: timestamp {row[1]!r} is not a number") from None
    return keys


def check_exclusions(path: str | Path) -> tuple[dict[tuple[str, int], int], list[str]]:
    """Read an excluded-timestamps CSV like :func:`read_exclusions`, going on past malformed lines.

    Returns ``{(video_id, second): first line}`` for the good lines and one ``"file:line: what"`` message
    per bad line (the same rules as :func:`read_exclusions`).
    """
    path = Path(path)
    keys: dict[tuple[str, int], int] = {}
    problems: list[str] = []
    for lineno, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            problems.append(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start}): {line[:80]!r}")
            continue
        row = next(csv.reader([text]), [])
        if not row:
            continue
        if len(row) != 2:
            problems.append(f"{path}:{lineno}: expected 'video_id,timestamp', got {','.join(row)!r}")
            continue
        try:
            key = (row[0], int(float(row[1])))
        except (ValueError, OverflowError):
            problems.append(f"{path}:{lineno}: timestamp {row[1]!r} is not a number")
            continue
        keys.setdefault(key, lineno)
    return keys, problems


def write_exclusions(path: str | Path, keys: Iterable[tuple[str, int]]) -> None:
    """Write ``(video_id, second)`` keys as an excluded-timestamps CSV, sorted."""
    atomic_write(path, "".join(f"{v},{int(t):04d}\n" for v, t in sorted(keys)))


@dataclass(frozen=True)
class FrameListEntry:
    """One row of a PySlowFast frame list: a frame image of a video."""

    original_video_id: str
    video_index: int
    frame_index: int  # 0-based
    path: str  # relative to the frame folder, e.g. ``vid/vid_000001.jpg``
    labels: str = '""'


def read_frame_list(path: str | Path) -> list[FrameListEntry]:
    """Read a PySlowFast frame list (header line, then 5 space-separated columns)."""
    path = Path(path)
    entries = []
    with open(path, encoding="utf-8") as f:
        f.readline()
        for lineno, line in enumerate(f, start=2):
            row = line.split()
            if not row:
                continue
            if len(row) != 5:
                raise ValueError(f"{path}:{lineno}: expected 5 space-separated columns, got {line.strip()!r}")
            try:
                entries.append(FrameListEntry(row[0], int(row[1]), int(row[2]), row[3], row[4]))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: video/frame index is not an integer: {line.strip()!r}") from None
    return entries


def write_frame_list(path: str | Path, entries: Iterable[FrameListEntry]) -> None:
    """Write a PySlowFast frame list with its header."""
    lines = ["original_vido_id video_id frame_id path labels"]  # PySlowFast's header, typo included
    lines += [f"{e.original_video_id} {e.video_index} {e.frame_index} {e.path} {e.labels}" for e in entries]
    atomic_write(path, "\n".join(lines) + "\n")
