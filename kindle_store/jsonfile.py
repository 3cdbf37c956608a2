"""A JSON document file shared by many processes: flock-serialised, replaced atomically."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .errors import KindleStoreError

__all__ = ["InvalidJsonFile", "LockedJsonFile", "atomic_write"]

# Paths whose exclusive lock the current thread holds, with the pid that took it (a forked child holds none).
_held = threading.local()
# Lock descriptors open in this process. A forked child closes its copies at once: a copy would keep the
# parent's flock alive for as long as the child lives. _guard keeps fork out of open/close + bookkeeping.
_open_fds: set[int] = set()
_guard = threading.Lock()


def _close_inherited() -> None:
    for fd in _open_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_fds.clear()
    _guard.release()


os.register_at_fork(before=_guard.acquire, after_in_parent=_guard.release, after_in_child=_close_inherited)


class InvalidJsonFile(KindleStoreError, ValueError):
    """A JSON file cannot be parsed; the message names the file and the byte offset."""


def _held_paths() -> dict[str, int]:
    paths: dict[str, int] | None = getattr(_held, "paths", None)
    if paths is None:
        paths = _held.paths = {}
    return paths


class LockedJsonFile:
    """One JSON document on disk; every access locks `<path>.lock`, every write replaces the file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        default: Callable[[], Any] = dict,
        error: Callable[[str], Exception] = InvalidJsonFile,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._default = default
        self._error = error

    def __repr__(self) -> str:
        return f"LockedJsonFile({str(self.path)!r})"

    def read(self) -> Any:
        """The parsed document under a shared lock; a fresh default if the file is missing."""
        if self._held_here() or not self.path.parent.is_dir():
            return self._load()[0]
        with self._locked(fcntl.LOCK_SH):
            return self._load()[0]

    @contextmanager
    def update(self) -> Iterator[Any]:
        """Yield the document under an exclusive lock; write it back on normal exit, never on error."""
        if self._held_here():
            raise RuntimeError(f"{self.path}: already being updated by this thread (nested update)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.lock_path.resolve())
        with self._locked(fcntl.LOCK_EX):
            _held_paths()[key] = os.getpid()
            try:
                doc, raw = self._load()
                yield doc
                if os.getpid() != _held_paths().get(key):
                    raise RuntimeError(f"{self.path}: forked inside an update; the child must not write")
                data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
                if data != raw and not (raw is None and doc == self._default()):
                    self._replace(data)
            finally:
                _held_paths().pop(key, None)

    def _held_here(self) -> bool:
        return _held_paths().get(str(self.lock_path.resolve())) == os.getpid()

    @contextmanager
    def _locked(self, how: int) -> Iterator[None]:
        # A fresh descriptor per call: flock belongs to the open file, so threads exclude each other too.
        with _guard:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            _open_fds.add(fd)
        pid = os.getpid()
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            with _guard:
                if os.getpid() == pid:  # a forked child has closed its copy already
                    _open_fds.discard(fd)
                    os.close(fd)  # closing the last descriptor releases the lock

    def _load(self) -> tuple[Any, bytes | None]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return self._default(), None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._error(f"{self.path}: not UTF-8 at byte {e.start}") from e
        try:
            return orjson.loads(text), raw
        except orjson.JSONDecodeError as e:
            at = len(text[: e.pos].encode("utf-8"))
            raise self._error(
                f"{self.path}: invalid JSON at byte {at} (line {e.lineno}, column {e.colno}): {e.msg}"
            ) from e

    def _replace(self, data: bytes) -> None:
        atomic_write(self.path, lambda write: write(data))


def atomic_write(path: Path, write_all: Callable[[Callable[[bytes], Any]], None], like: Path | None = None) -> None:
    """Replace `path` all at once through a temporary file in its directory (write, fsync, rename, fsync the
    directory): a reader sees the old file or the new one, never a part. The file keeps its permissions, or
    takes those of `like`; a new one gets the umask's."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write_all(f.write)
            f.flush()
            source = like if like is not None and like.exists() else path if path.exists() else None
            if source is not None:
                mode = source.stat().st_mode & 0o7777
            else:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
