"""One object per process: built on first use, rebuilt in a forked child (the parent's stays the parent's)."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ProcessWide"]

T = TypeVar("T")
_ALL: weakref.WeakSet[ProcessWide[object]] = weakref.WeakSet()


class ProcessWide(Generic[T]):
    """The process-wide value `build()` makes; `reset()` closes it (in its own process) and forgets it."""

    def __init__(self, build: Callable[[], T], close: Callable[[T], None]) -> None:
        self._build, self._close = build, close
        self._value: T | None = None
        self._pid = 0
        self._lock = threading.Lock()
        _ALL.add(self)  # type: ignore[arg-type]

    def get(self) -> T:
        with self._lock:
            if self._value is None or self._pid != os.getpid():
                self._value, self._pid = self._build(), os.getpid()
            return self._value

    def reset(self) -> None:
        with self._lock:
            value, self._value = self._value, None
            if value is not None and self._pid == os.getpid():
                self._close(value)


def _new_locks_in_child() -> None:
    for holder in list(_ALL):
        holder._lock = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_new_locks_in_child)
