"""Writing a file whole or not at all, and reading a small JSON record back leniently.

Every writer of the project goes through a temporary file in the destination's folder and an
``os.replace`` rename, so a crash or Ctrl-C leaves the previous file (or none), never half a file:

- :func:`atomic_write`: a text known in full;
- :func:`atomic_path`: anything a library writes to a path (``torch.save``, ``shutil.copyfile``);
- :class:`AtomicTextWriter`: text streamed in pieces (rows as keyframes come), for the format writers
  that subclass it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["AtomicTextWriter", "atomic_path", "atomic_write", "read_json_object", "temp_path"]

_W = TypeVar("_W", bound="AtomicTextWriter")


def temp_path(path: Path) -> Path:
    """``.<name>.tmp`` next to ``path``: the temporary file the writers here rename into place."""
    return path.with_name(f".{path.name}.tmp")


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | os.PathLike, tmp: str | os.PathLike | None = None) -> Iterator[Path]:
    """The temporary path to write ``path``'s content to; renamed to ``path`` when the block ends cleanly.

    ``tmp``: the temporary file (default :func:`temp_path`; it must be in ``path``'s folder). The folder is
    created. On an exception the temporary file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp) if tmp is not None else temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicTextWriter:
    """A UTF-8 text file streamed to ``.<name>.tmp`` and renamed to ``path`` by :meth:`close`.

    Subclasses format their rows and write them with ``self._file.write``. Use as a context manager: an
    exception inside ``with`` calls :meth:`abort`, which removes the temporary file and leaves an existing
    ``path`` alone. Lines end in ``\\n`` on every platform.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path(self.path)
        self._file = open(self._tmp, "w", encoding="utf-8", newline="")

    def close(self) -> None:
        """Finish the file and move it to ``path`` (a second call does nothing)."""
        if not self._file.closed:
            self._file.close()
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Stop without writing ``path``."""
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort() if exc_type is not None else self.close()


def read_json_object(path: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON object stored in ``path``; None when the file is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
