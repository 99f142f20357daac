"""``actdet prep ava download``: the AVA videos and annotation files, fetched in parallel, resumable and verified.

Layout (PySlowFast's DATASET.md): ``ROOT/videos/<name>`` for each name of the official file list (the names
carry their extension and may start with ``-``: ``-5KQ66BBWC4.mkv``), ``ROOT/annotations/`` for the CSV and
pbtxt files of the annotation zip (the zip stays there, so a rerun can tell that it is complete).

How one file is fetched (videos and the annotation zip alike):

- HEAD gives the server's size; a file already under its final name with that size is skipped without a GET.
  Where HEAD is unavailable (refused by the server, or no server reachable) the size recorded when the file
  was verified (``.download.json`` in the same folder) decides; with neither, the file is fetched again.
- Bytes go to ``<name>.part``. An existing part is resumed with ``Range: bytes=<part size>-``; a server that
  ignores the range (answers 200) restarts the part from byte 0; an answer 416 whose total equals the part's
  size means the part was complete already.
- The bytes on disk must equal the size the server announced (Content-Length of a 200, the total of a 206's
  Content-Range, and HEAD's size); only then is the part renamed to the final name, so an interrupted run
  never leaves a partial file under it. A mismatch is a failure ("size 1000 != 2048"), never a complete file.
- Time-outs (on connecting and on each read), lost connections and HTTP 408/429/5xx are retried with a
  doubling pause (``backoff_s``, ``2 * backoff_s``, ...), keeping the bytes received; other HTTP errors are
  final. A file that still fails goes to ``StepReport.failed`` (name -> reason) and the others go on. When the
  server has not answered a single request and the connection itself fails (refused, unknown host, connect
  time-out), the files not started yet are reported as not attempted instead of each waiting its turn.

Two runs on the same folder at the same time are not supported (they would append to the same part files).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import threading
import time
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, urlopen

from data_prep.ava.report import StepReport
from detection.formats.ava import atomic_write
from detection.persons.detect_job import validate_video_id

__all__ = [
    "ANNOTATION_SUFFIXES",
    "DEFAULT_BACKOFF_S",
    "OFFICIAL_ANNOTATIONS",
    "OFFICIAL_VIDEO_LIST",
    "OFFICIAL_VIDEO_URL",
    "DownloadError",
    "download_annotations",
    "download_videos",
    "read_video_list",
]

# The locations PySlowFast's DATASET.md and MMAction2's tools/data/ava scripts download from. The same zip is
# also published at https://research.google.com/ava/download/ava_v2.2.zip.
OFFICIAL_VIDEO_LIST = "https://s3.amazonaws.com/ava-dataset/annotations/ava_file_names_trainval_v2.1.txt"
OFFICIAL_VIDEO_URL = "https://s3.amazonaws.com/ava-dataset/trainval/"
OFFICIAL_ANNOTATIONS = "https://s3.amazonaws.com/ava-dataset/annotations/ava_v2.2.zip"

DEFAULT_BACKOFF_S = 1.0  # pause before the first retry; doubled before each further one
ANNOTATION_SUFFIXES = (".csv", ".pbtxt", ".txt")  # members of the annotation zip that are extracted
RECORD_NAME = ".download.json"  # verified sizes, one record per folder
RECORD_FORMAT = "actdet-download-1"
USER_AGENT = "actdet-prep"
_CHUNK = 1 << 20
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


class DownloadError(OSError):
    """A list or file could not be fetched; the message names it and says why (HTTP status, time-out, ...)."""


class _Failure(Exception):
    """Why one attempt failed: ``reason`` for the report, whether a retry may help, whether no server answered."""

    def __init__(self, reason: str, retry: bool, unreachable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.unreachable = unreachable


# ----------------------------------------------------------------------------------------------------------- lists


def _check_name(name: str, where: str) -> str:
    """``name`` when it is a safe file name (see ``validate_video_id``); else ValueError naming ``where``."""
    try:
        return validate_video_id(name, where)
    except ValueError:
        raise ValueError(
            f"{where}: file name {name!r} may only contain letters, digits, '_', '-' and '.' (not first): "
            f"no path separators, spaces or leading dots"
        ) from None


def _is_url(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def read_video_list(source: str | os.PathLike, timeout_s: float = 30.0) -> list[str]:
    """The file names of a video list (one a line), from a local file or an ``http(s)://`` URL.

    Blank lines and lines starting with ``#`` are skipped, surrounding spaces stripped and repeated names kept
    once, in order. Raises ValueError naming ``source:line`` for a name that is not a safe file name (path
    separators, ``..``, spaces, a leading dot, control characters), DownloadError when the URL cannot be
    fetched within ``timeout_s`` seconds per connect/read, OSError when the file cannot be read.
    """
    if _is_url(source):
        url = str(source)
        try:
            with _open(url, timeout_s) as response:
                data = _read_all(response, timeout_s)
        except _Failure as failure:
            raise DownloadError(f"cannot read the video list {url}: {failure.reason}") from None
    else:
        data = Path(source).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{source}: a video list must be UTF-8 text ({err})") from None
    names: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        _check_name(entry, f"{source}:{number}")
        if entry not in seen:
            seen.add(entry)
            names.append(entry)
    return names


# ------------------------------------------------------------------------------------------------------------ HTTP


def _describe(err: BaseException, url: str, timeout_s: float) -> _Failure:
    """The failure an exception of urllib / http.client stands for."""
    host = urlsplit(url).netloc
    if isinstance(err, HTTPError):
        return _Failure(f"HTTP {err.code} {err.reason}".strip(), retry=err.code in _RETRY_STATUS)
    if isinstance(err, URLError):  # the connection itself failed: DNS, refused, connect time-out, TLS
        reason = err.reason
        if isinstance(reason, TimeoutError):
            return _Failure(f"timed out after {timeout_s:g} s connecting to {host}", retry=True, unreachable=True)
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)
        return _Failure(f"cannot connect to {host}: {text}", retry=True, unreachable=True)
    if isinstance(err, TimeoutError):
        return _Failure(f"timed out after {timeout_s:g} s", retry=True)
    return _Failure(f"connection lost: {err or type(err).__name__}", retry=True)


def _open(url: str, timeout_s: float, *, method: str = "GET", offset: int = 0) -> Any:
    """The response to ``method url`` (from byte ``offset`` on); a 416 answer is returned, not raised.

    ``timeout_s`` bounds connecting and every single read. Raises _Failure.
    """
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers, method=method), timeout=timeout_s)
    except HTTPError as err:
        if err.code == 416:
            return err
        err.close()
        raise _describe(err, url, timeout_s) from None
    except (OSError, http.client.HTTPException) as err:
        raise _describe(err, url, timeout_s) from None


def _read_all(response: Any, timeout_s: float) -> bytes:
    try:
        return response.read()
    except (OSError, http.client.HTTPException) as err:
        raise _describe(err, response.url, timeout_s) from None


def _int_header(response: Any, name: str) -> int | None:
    value = response.headers.get(name)
    return int(value) if value is not None and value.strip().isdigit() else None


def _content_range(response: Any) -> tuple[int | None, int | None]:
    """``(first byte, total size)`` of a Content-Range header (None where absent or ``*``)."""
    match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return start, total


# -------------------------------------------------------------------------------------------------- one file


class _SizeRecord:
    """Sizes of the verified files of one folder, kept in ``RECORD_NAME`` there; used when HEAD is unavailable."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / RECORD_NAME
        self.lock = threading.Lock()
        self.sizes: dict[str, int] = {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.sizes = {str(k): int(v) for k, v in data["sizes"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # no record (or an unreadable one): files are then checked against HEAD or fetched again

    def get(self, name: str) -> int | None:
        with self.lock:
            return self.sizes.get(name)

    def set(self, name: str, size: int) -> None:
        with self.lock:
            if self.sizes.get(name) == size:
                return
            self.sizes[name] = size
            text = json.dumps({"format": RECORD_FORMAT, "sizes": dict(sorted(self.sizes.items()))}, indent=1)
            atomic_write(self.path, text + "\n")


@dataclass
class _Run:
    """Settings and shared counters of one download run (the worker threads update them under ``lock``)."""

    timeout_s: float
    retries: int
    backoff_s: float
    byte_bar: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    bytes_downloaded: int = 0
    answered: bool = False  # the server answered at least one request
    unreachable: str | None = None
    resumed: dict[str, int] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)

    def add_bytes(self, count: int) -> None:
        with self.lock:
            self.bytes_downloaded += count
            if self.byte_bar is not None:
                self.byte_bar.update(count)


def _head_size(url: str, run: _Run) -> int | None:
    """The size the server announces for ``url``, or None (HEAD refused, no Content-Length, unreachable)."""
    try:
        with _open(url, run.timeout_s, method="HEAD") as response:
            run.answered = True
            return _int_header(response, "Content-Length") if response.status == 200 else None
    except _Failure as failure:
        if not failure.unreachable:
            run.answered = True
        return None


def _fetch(url: str, final: Path, run: _Run, record: _SizeRecord) -> tuple[bool, int]:
    """Bring ``final`` up to date with ``url``: ``(True, size)`` when downloaded, ``(False, size)`` when it was
    complete already. Raises _Failure with the last attempt's reason."""
    head_size = _head_size(url, run)
    if final.is_file():
        size = final.stat().st_size
        if size == (head_size if head_size is not None else record.get(final.name)):
            record.set(final.name, size)
            return False, size
    part = final.with_name(final.name + ".part")
    failure = _Failure("not attempted", retry=False)
    for attempt in range(run.retries + 1):
        if attempt:
            time.sleep(run.backoff_s * 2 ** (attempt - 1))
        try:
            size = _fetch_part(url, part, head_size, run)
        except _Failure as err:
            failure = err
            if err.retry:
                continue
            break
        os.replace(part, final)
        record.set(final.name, size)
        return True, size
    raise failure


def _fetch_part(url: str, part: Path, head_size: int | None, run: _Run) -> int:
    """One attempt: continue ``part`` from its size to the end; its verified size. Raises _Failure."""
    name = part.name[: -len(".part")]
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = _open(url, run.timeout_s, offset=offset)
    except _Failure as err:
        if not err.unreachable:
            run.answered = True
        raise
    run.answered = True
    with response:
        if response.status == 416:  # the range starts at or after the end of the file
            _, total = _content_range(response)
            if offset and total == offset and head_size in (None, total):
                return offset  # the part was complete already (stopped between the last byte and the rename)
            part.unlink(missing_ok=True)
            raise _Failure(f"the server has {total} bytes but the partial file {offset}: starting over", retry=True)
        if response.status == 206:
            start, total = _content_range(response)
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Failure(f"asked for bytes from {offset}, the server sent them from {start}", retry=True)
            mode = "ab"
            with run.lock:
                run.resumed.setdefault(name, offset)
        elif response.status == 200:
            total = _int_header(response, "Content-Length")
            if offset:  # the server ignored the range: start the part over
                with run.lock:
                    run.restarted.append(name)
            offset, mode = 0, "wb"
        else:
            raise _Failure(f"unexpected answer HTTP {response.status}", retry=False)
        expected = total if total is not None else head_size
        written = offset
        try:
            with open(part, mode) as out:
                while True:
                    try:
                        chunk = response.read1(_CHUNK)  # what has arrived: a kill loses little
                    except (OSError, http.client.HTTPException) as err:
                        failure = _describe(err, url, run.timeout_s)
                        got = f"{written} of {expected} bytes" if expected is not None else f"{written} bytes"
                        raise _Failure(f"{failure.reason} ({got} received)", retry=True) from None
                    if not chunk:
                        break
                    out.write(chunk)
                    out.flush()  # handed to the OS at once: a killed run keeps every byte it received
                    written += len(chunk)
                    run.add_bytes(len(chunk))
        except OSError as err:  # writing (a full disk, permissions): retrying will not help
            raise _Failure(f"cannot write {part}: {err}", retry=False) from None
    if expected is not None and written != expected:
        if written > expected:  # more than announced: the part cannot be trusted
            part.unlink(missing_ok=True)
            raise _Failure(f"size {written} != {expected} (more bytes than announced)", retry=True)
        raise _Failure(f"size {written} != {expected} (connection closed early)", retry=True)
    if head_size is not None and written != head_size:
        part.unlink(missing_ok=True)
        raise _Failure(f"size {written} != {head_size} (the size HEAD announced)", retry=False)
    return written


def _check_settings(retries: int, timeout_s: float, backoff_s: float, jobs: int = 1) -> None:
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    if not backoff_s >= 0:
        raise ValueError(f"backoff_s must be 0 or more, got {backoff_s}")


# --------------------------------------------------------------------------------------------------------- videos


def _select(listed: list[str], names: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """The list's entries asked for by ``names`` (each a full file name or its stem), and the names not found."""
    if names is None:
        return listed, []
    by_key: dict[str, str] = {}
    for entry in listed:
        by_key.setdefault(entry, entry)
        by_key.setdefault(entry.rsplit(".", 1)[0], entry)
    chosen: list[str] = []
    missing: list[str] = []
    for name in names:
        entry = by_key.get(name)
        if entry is None:
            missing.append(name)
        elif entry not in chosen:
            chosen.append(entry)
    return chosen, missing


def download_videos(
    root: str | os.PathLike,
    video_list: str | os.PathLike = OFFICIAL_VIDEO_LIST,
    base_url: str = OFFICIAL_VIDEO_URL,
    names: Sequence[str] | None = None,
    jobs: int = 4,
    retries: int = 3,
    timeout_s: float = 30.0,
    progress: bool = False,
    *,
    backoff_s: float = DEFAULT_BACKOFF_S,
) -> StepReport:
    """Download the videos of ``video_list`` (a file or URL, see :func:`read_video_list`) from ``base_url``
    into ``ROOT/videos``, ``jobs`` at a time.

    ``names`` restricts the run to these entries of the list (full file names or names without extension);
    names not in the list are reported as failed. ``retries`` is the number of further attempts per file after
    the first, ``timeout_s`` the seconds allowed to connect and to each read, ``backoff_s`` the pause before
    the first retry (doubled each time). How files are resumed, verified and skipped: see the module's notes.

    Returns the step's report (step ``"download"``): done/skipped file names in list order, failed name ->
    reason (an unreadable or malformed list fails as a whole, under the list's name); details: base_url,
    list, bytes_downloaded, sizes (name -> bytes of each done or skipped file), resumed (name -> byte the run
    resumed from), restarted (files whose server ignored the range). Raises ValueError for bad settings only.
    """
    _check_settings(retries, timeout_s, backoff_s, jobs)
    started = time.monotonic()
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    report = StepReport("download", details={"base_url": base_url, "list": str(video_list)})
    try:
        listed = read_video_list(video_list, timeout_s)
    except (OSError, ValueError) as err:
        report.failed[Path(urlsplit(str(video_list)).path).name or str(video_list)] = str(err)
        report.seconds = time.monotonic() - started
        return report
    wanted, missing = _select(listed, names)
    for name in missing:
        report.failed[name] = f"not in the video list {video_list}"

    folder = Path(root) / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    record = _SizeRecord(folder)
    run = _Run(timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)

    def fetch(name: str) -> tuple[bool, int]:
        if run.unreachable is not None:
            raise _Failure(f"not attempted: {run.unreachable}", retry=False)
        try:
            return _fetch(base_url + quote(name), folder / name, run, record)
        except _Failure as failure:
            with run.lock:
                if failure.unreachable and not run.answered and run.unreachable is None:
                    run.unreachable = failure.reason
            raise

    from tqdm import tqdm

    outcomes: dict[str, tuple[bool, int] | str] = {}
    with (
        ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="download") as pool,
        tqdm(total=len(wanted), desc="download", unit="video", disable=None if progress else True) as bar,
    ):
        futures = {pool.submit(fetch, name): name for name in wanted}
        for future in as_completed(futures):
            try:
                outcomes[futures[future]] = future.result()
            except _Failure as failure:
                outcomes[futures[future]] = failure.reason
            bar.update(1)
            bar.set_postfix_str(f"{run.bytes_downloaded / 1e6:.1f} MB", refresh=False)

    sizes: dict[str, int] = {}
    for name in wanted:
        outcome = outcomes[name]
        if isinstance(outcome, str):
            report.failed[name] = outcome
            continue
        downloaded, sizes[name] = outcome
        (report.done if downloaded else report.skipped).append(name)
    report.details.update(
        bytes_downloaded=run.bytes_downloaded, sizes=sizes, resumed=dict(run.resumed), restarted=sorted(run.restarted)
    )
    report.seconds = time.monotonic() - started
    return report


# ---------------------------------------------------------------------------------------------------- annotations


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _extract(archive: Path, folder: Path, report: StepReport) -> None:
    """Extract the annotation files of ``archive`` into ``folder``, flattened; ``report`` gets what happened.

    Only a member's last path component is used (so no member name reaches outside ``folder``) and it must be
    a safe file name ending in one of ANNOTATION_SUFFIXES; other members are listed under details["ignored"].
    A file already there with the member's size and CRC-32 is skipped. Raises zipfile.BadZipFile.
    """
    ignored: list[str] = report.details.setdefault("ignored", [])
    sources: dict[str, str] = {}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            base = re.split(r"[/\\]", info.filename)[-1]
            if info.filename.startswith("__MACOSX/") or base.startswith("._") or not base.endswith(ANNOTATION_SUFFIXES):
                ignored.append(info.filename)
                continue
            try:
                _check_name(base, f"{archive}: member {info.filename!r}")
            except ValueError as err:
                report.failed[info.filename] = str(err)
                continue
            if base in sources:
                report.failed[info.filename] = f"{archive}: same file name as {sources[base]!r} (folders are dropped)"
                continue
            sources[base] = info.filename
            target = folder / base
            if target.is_file() and target.stat().st_size == info.file_size and _crc32(target) == info.CRC:
                report.skipped.append(base)
                continue
            tmp = folder / f".{base}.tmp"
            try:
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)  # zipfile checks the CRC-32 at the end
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            report.done.append(base)


def download_annotations(
    root: str | os.PathLike,
    url: str = OFFICIAL_ANNOTATIONS,
    timeout_s: float = 30.0,
    retries: int = 3,
    progress: bool = False,
    *,
    backoff_s: float = DEFAULT_BACKOFF_S,
) -> StepReport:
    """Fetch the annotation zip at ``url`` into ``ROOT/annotations`` and extract its CSV, pbtxt and txt files.

    The zip is fetched like a video (resumed, verified, skipped when complete; see the module's notes) and
    kept; ``url`` may also be the path of a zip on disk. Members are extracted flattened (``ava_v2.2/x.csv``
    becomes ``ROOT/annotations/x.csv``), each written to a temporary name and renamed; a member whose file is
    already there with the same size and CRC-32 is skipped.

    Returns the step's report (step ``"download-annotations"``): done/skipped are extracted file names;
    failed: the zip's name -> why it could not be fetched or read (a corrupt zip is removed, so the next run
    fetches it again), or a member's name -> why it was not extracted (unsafe or repeated file name).
    details: url, zip, zip_size, zip_downloaded, bytes_downloaded, ignored (members that are not annotation
    files). Raises ValueError for bad settings or a URL that does not end in a safe file name.
    """
    _check_settings(retries, timeout_s, backoff_s)
    started = time.monotonic()
    report = StepReport("download-annotations", details={"url": str(url)})
    folder = Path(root) / "annotations"
    folder.mkdir(parents=True, exist_ok=True)
    if _is_url(url):
        zip_name = _check_name(Path(urlsplit(url).path).name, f"annotations URL {url}")
        archive = folder / zip_name
        run = _Run(timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
        from tqdm import tqdm

        with tqdm(desc=zip_name, unit="B", unit_scale=True, disable=None if progress else True) as run.byte_bar:
            try:
                downloaded, size = _fetch(url, archive, run, _SizeRecord(folder))
            except _Failure as failure:
                report.failed[zip_name] = failure.reason
                downloaded, size = False, None
        report.details.update(bytes_downloaded=run.bytes_downloaded)
    else:
        archive = Path(url)
        zip_name, downloaded = archive.name, False
        size = archive.stat().st_size if archive.is_file() else None
        if size is None:
            report.failed[zip_name] = f"{archive}: no such file"
    report.details.update(zip=zip_name, zip_size=size, zip_downloaded=downloaded)
    if not report.failed:
        try:
            _extract(archive, folder, report)
        except (zipfile.BadZipFile, EOFError) as err:  # truncated or corrupt (a CRC-32 that does not match)
            reason = f"{archive}: not a valid zip file ({err})"
            if _is_url(url):
                archive.unlink(missing_ok=True)
                reason += "; removed, the next run fetches it again"
            report.failed[zip_name] = reason
        except OSError as err:  # reading the zip or writing a member (permissions, a full disk)
            report.failed[zip_name] = f"cannot extract {archive} into {folder}: {err}"
    report.seconds = time.monotonic() - started
    return report
