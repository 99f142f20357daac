"""A small HTTP server for tests: serves a folder on 127.0.0.1 with HEAD, byte ranges and switchable faults.

Usage::

    with serve_directory(tmp_path / "site", status={"b.mkv": 404}, drop_after=1000, drop_times=1) as server:
        download_videos(root, names=..., base_url=server.url)
        assert server.count("GET", "a.mkv") == 2

Files are served by their path relative to the folder (``/sub/x.mkv``). GET answers ``200`` with the whole
file, or ``206`` with ``Content-Range`` for a single ``Range: bytes=START-[END]``; a range starting at or after
the end answers ``416`` with ``Content-Range: bytes */SIZE``. Every response closes its connection.

Faults (keyword arguments of :func:`serve_directory`, also settable later on ``server.faults``). Each one is
either a plain value, applying to every file, or a dict ``{name: value}`` applying to the named files only
(``name`` is the path relative to the folder):

- ``status``: answer this status code with an empty body instead of the file (404, 500, ...).
- ``drop_after``: send the headers of a full answer, then only this many body bytes, then cut the connection
  (a network cut or a killed server mid-file). ``drop_times`` limits how many answers are cut in all
  (``None``: every one), so a retry can succeed.
- ``ignore_range``: answer ``200`` with the whole file even when a range was asked for.
- ``stall_s`` / ``stall_after``: after sending the headers and ``stall_after`` body bytes (default 0), wait this
  many seconds before sending the rest (a stalled transfer, for time-outs; keep it around a second).
- ``no_head``: answer HEAD with ``405 Method Not Allowed``.

``server.requests`` records every request (method, name, Range header) in arrival order.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["Faults", "RecordedRequest", "TestServer", "closed_port_url", "serve_directory"]

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Faults:
    """What the server does wrong; each field a value for every file or a dict ``{name: value}``."""

    status: int | dict[str, int] | None = None
    drop_after: int | dict[str, int] | None = None
    drop_times: int | None = None
    ignore_range: bool | dict[str, bool] = False
    stall_s: float | dict[str, float] = 0.0
    stall_after: int | dict[str, int] = 0
    no_head: bool | dict[str, bool] = False

    def get(self, fault: str, name: str) -> Any:
        """The value of ``fault`` for the file ``name`` (None, False or 0 where it does not apply)."""
        value = getattr(self, fault)
        if isinstance(value, dict):
            return value.get(name)
        return value


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    name: str
    range: str | None


@dataclass
class TestServer:
    """A running server: ``url`` ends with ``/``; ``requests`` and ``faults`` may be read and changed."""

    __test__ = False  # not a pytest test class

    url: str
    root: Path
    faults: Faults
    requests: list[RecordedRequest] = field(default_factory=list)
    drops: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, method: str | None = None, name: str | None = None) -> int:
        """How many requests matched ``method`` and ``name`` (None matches any)."""
        with self.lock:
            return sum(1 for r in self.requests if (method is None or r.method == method)
                       and (name is None or r.name == name))

    def ranges(self, name: str) -> list[str | None]:
        """The Range headers of the GET requests for ``name``, in order (None where there was none)."""
        with self.lock:
            return [r.range for r in self.requests if r.method == "GET" and r.name == name]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # quiet tests

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        state = self.server.state
        faults = state.faults
        name = unquote(urlsplit(self.path).path).lstrip("/")
        with state.lock:
            state.requests.append(RecordedRequest("HEAD" if head else "GET", name, self.headers.get("Range")))
        self.close_connection = True
        path = (state.root / name).resolve()
        if head and faults.get("no_head", name):
            return self._empty(HTTPStatus.METHOD_NOT_ALLOWED)
        status = faults.get("status", name)
        if status:
            return self._empty(status)
        if not name or not path.is_file() or not path.is_relative_to(state.root):
            return self._empty(HTTPStatus.NOT_FOUND)
        size = path.stat().st_size
        start, end = 0, size - 1
        code = HTTPStatus.OK
        asked = _RANGE.fullmatch(self.headers.get("Range", "").strip())
        if asked and not faults.get("ignore_range", name):
            start = int(asked.group(1))
            if start >= size:
                return self._empty(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"})
            if asked.group(2):
                end = min(end, int(asked.group(2)))
            code = HTTPStatus.PARTIAL_CONTENT
        self.send_response(code)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Connection", "close")
        if code == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        self._send_body(path, name, start, end - start + 1)

    def _send_body(self, path: Path, name: str, start: int, length: int) -> None:
        state = self.server.state
        faults = state.faults
        limit = faults.get("drop_after", name)
        if limit is not None:
            with state.lock:
                if faults.drop_times is None or state.drops < faults.drop_times:
                    state.drops += 1
                    length = min(length, limit)
                else:
                    limit = None
        stall_s = faults.get("stall_s", name) or 0.0
        stall_after = min(faults.get("stall_after", name) or 0, length)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                if stall_s:
                    self._copy(f, stall_after)
                    self.wfile.flush()
                    time.sleep(stall_s)
                    length -= stall_after
                self._copy(f, length)
                self.wfile.flush()
            if limit is not None:  # cut the connection short of the announced length
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client went away (time-out, killed): nothing to answer

    def _copy(self, f: Any, length: int) -> None:
        while length > 0:
            chunk = f.read(min(length, 64 * 1024))
            if not chunk:
                break
            self.wfile.write(chunk)
            length -= len(chunk)

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled handler must not hold up the test's exit

    def __init__(self, state: TestServer) -> None:
        self.state = state
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-answer are part of the tests


@contextlib.contextmanager
def serve_directory(path: str | os.PathLike, **faults: Any) -> Iterator[TestServer]:
    """Serve the folder ``path`` on an ephemeral port of 127.0.0.1 for the duration of the block."""
    state = TestServer(url="", root=Path(path).resolve(), faults=Faults(**faults))
    httpd = _Server(state)
    host, port = httpd.server_address[:2]
    state.url = f"http://{host}:{port}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A ``http://127.0.0.1:PORT/`` where nothing listens (connections are refused): an offline server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"

