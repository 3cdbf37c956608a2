"""One object per process: built on first use, rebuilt in a forked child (the parent's stays the parent's)."""

from __future__ import annotations

import os
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Self, TypeVar

__all__ = ["ProcessWide", "ProcessWideManager"]

T = TypeVar("T")
M = TypeVar("M")
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


class ProcessWideManager(ABC, Generic[M]):
    """What both application-facing managers share: one manager per process, chosen by the environment, and
    close() when used as a context manager. A subclass sets `_process_wide` to what builds its manager."""

    _process_wide: ClassVar[ProcessWide[Any]]

    @classmethod
    def get_instance(cls) -> M:
        """The process-wide manager; USE_DATABASE_PROFILE_MANAGER picks PostgreSQL or the JSON files."""
        manager: M = cls._process_wide.get()
        return manager

    @classmethod
    def reset_instance(cls) -> None:
        """Close and forget the process-wide manager and its pool (tests, or after changing the environment)."""
        from .store import reset_shared_store

        cls._process_wide.reset()
        reset_shared_store()

    @abstractmethod
    def close(self) -> None:
        """Release what the manager holds (a pool, for the database); idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _new_locks_in_child() -> None:
    for holder in list(_ALL):
        holder._lock = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_new_locks_in_child)
