"""A JSON document file shared by many processes: flock-serialised, replaced atomically."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from ._values import is_storable, json_items
from .errors import KindleStoreError

__all__ = ["InvalidJsonFile", "LockedJsonFile", "atomic_write", "backup_path", "load_json", "one_line",
           "write_backup"]

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


# control characters and the other line breaks str.splitlines() knows (NEL, LS, PS)
_CONTROL = {i: f"\\x{i:02x}" if i < 256 else f"\\u{i:04x}" for i in [*range(32), 127, 0x85, 0x2028, 0x2029]}


def one_line(msg: str) -> str:
    """`msg` with every control character and line break escaped: an error naming any value stays one line."""
    return msg.translate(_CONTROL)


# -- reading a JSON document ---------------------------------------------------------------------------------

_DIGITS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))  # every digit to "0", the rest to " "
# The tokens of a valid JSON text up to its first integer of 19 or more digits, which group 1 captures: anything
# but a string or a number, a string, a number that is not such an integer (possessive: nothing is re-tried).
_UP_TO_LONG_INT = re.compile(
    rb'(?:[^"0-9-]++|"[^"\\]*+(?:\\.[^"\\]*+)*+"'
    rb"|(?!-?[0-9]{19,}+(?![.eE]))-?[0-9]++(?:\.[0-9]++)?(?:[eE][-+]?[0-9]++)?)*+(-?[0-9]{19,}+)"
)


def _at(data: bytes, offset: int) -> str:
    """Where byte `offset` of `data` is, for an error message (columns count bytes too)."""
    line, column = data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)
    return f"byte {offset} (line {line}, column {column})"


def _key_of_wide_int(doc: Any) -> str:
    """Where the first integer beyond 64 bits is in `doc`, as the import's errors name a place (`email: key.path`,
    `key[0]`); "" if none is (a key given twice keeps only its last value)."""
    tops = doc.items() if type(doc) is dict else [("", doc)]
    for top, value in tops:
        for path, v, _ in json_items(value):
            if type(v) is int and not is_storable(v):
                return f"{top[:40]}{path}" if path[:1] != "." else f"{top[:40]}: {path[1:]}"
    return ""


def load_json(path: str | os.PathLike[str], data: bytes, error: Callable[[str], Exception] = InvalidJsonFile) -> Any:
    """The JSON document in `data`, the bytes of `path`; `error` (one line naming the file and the byte) if it
    is not JSON or holds an integer beyond 64 bits, which orjson would read as a float (a rewrite would change it)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        try:
            at, why = len(data.decode("utf-8")[: e.pos].encode("utf-8")), e.msg  # orjson counts characters
        except UnicodeDecodeError as u:
            at, why = u.start, "not valid UTF-8"
        raise error(one_line(f"{path}: not valid JSON at {_at(data, at)}: {why}")) from None
    if b"0" * 19 in data.translate(_DIGITS):  # else no integer can be too big
        pos = 0
        while (m := _UP_TO_LONG_INT.match(data, pos)) is not None:
            if not -(2**63) <= int(m[1]) < 2**64:
                digits = m[1][:40].decode() + ("..." if len(m[1]) > 40 else "")
                try:
                    key = _key_of_wide_int(json.loads(data))  # the standard library reads it exactly
                except RecursionError:  # nested deeper than it goes
                    key = ""
                where = f"{key}: " if key else ""
                raise error(one_line(f"{path}: {where}the integer {digits} at {_at(data, m.start(1))} "
                                     "does not fit in 64 bits"))
            pos = m.end()
    return doc


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
        return load_json(self.path, raw, self._error), raw

    def _replace(self, data: bytes) -> None:
        atomic_write(self.path, lambda write: write(data))


def atomic_write(path: Path, write_all: Callable[[Callable[[bytes], Any]], None], like: Path | None = None) -> None:
    """Replace `path` all at once through a temporary file in its directory (write, fsync, rename, fsync the
    directory): a reader sees the old file or the new one, never a part. The file keeps its permissions, or
    takes those of `like`; a new one gets the umask's."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # named by the file asked for, not by the temporary one
        raise type(e)(e.errno, e.strerror, str(path)) from None
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


def backup_path(path: Path) -> Path:
    """Where an import keeps its byte-exact copy of `path`: PATH.backup."""
    return path.with_name(path.name + ".backup")


def write_backup(path: Path, data: bytes) -> str:
    """Write backup_path(path), holding `data` (the bytes read from `path`) with the file's mode, atomically;
    the line an import prints about it."""
    backup = backup_path(path)
    atomic_write(backup, lambda write: write(data), like=path)
    return f"backup: {backup}"
