"""The Store: one psycopg_pool.ConnectionPool, the schema it works in, and the repositories bound to both."""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import orjson
from psycopg import Connection
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool

from .migrate import require_current
from .profiles import Profiles
from .settings import Settings, mask_url

__all__ = ["Store"]

logger = logging.getLogger("kindle_store")

# Pools abandoned in a forked child: never closed there (closing would end the parent's sessions), never freed.
_ABANDONED: list[ConnectionPool] = []


def _json_dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


class Store:
    """A connection pool to one database and schema; use as a context manager or call open()/close()."""

    def __init__(self, settings: Settings, *, check_idle_s: float = 1.0, embedded: Any = None) -> None:
        self.settings = settings
        #: a connection idle for longer than this is checked (one empty round trip) before it is handed out
        self.check_idle_s = check_idle_s
        self._pool: ConnectionPool | None = None
        self._pid = 0
        self._returned: weakref.WeakKeyDictionary[Connection[Any], float] = weakref.WeakKeyDictionary()
        self._embedded = embedded  # keeps an embedded server alive as long as the store
        self.profiles = Profiles(settings.schema)

    @classmethod
    def from_env(cls, **overrides: Any) -> Store:
        """A store configured by DATABASE_URL, KINDLE_SCHEMA and friends (see Settings.from_env)."""
        return cls(Settings.from_env(**overrides))

    @classmethod
    def embedded(cls, path: str | Path = ".kindle_store/pgdata", **overrides: Any) -> Store:
        """A store on the embedded PostgreSQL kept in `path` (started if needed)."""
        from .embedded import start_embedded

        server, url = start_embedded(Path(path))
        return cls(Settings.from_env(env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
                                     database_url=url, **overrides), embedded=server)

    def __repr__(self) -> str:
        return f"<Store {mask_url(self.settings.database_url)} schema={self.settings.schema}>"

    @property
    def schema(self) -> str:
        return self.settings.schema

    # -- the pool --------------------------------------------------------------------------------------------

    def open(self, wait: bool = True) -> Self:
        """Open the pool (again, in a forked child); with `wait`, until min_size connections are ready."""
        s = self.settings
        kwargs: dict[str, Any] = {"prepare_threshold": s.prepare_threshold, "application_name": s.application_name}
        if s.statement_timeout_ms:
            kwargs["options"] = f"-c statement_timeout={int(s.statement_timeout_ms)}"
        self._pool = ConnectionPool(
            s.database_url, min_size=s.min_size, max_size=s.max_size, timeout=s.timeout, kwargs=kwargs,
            configure=self._configure, check=self._check, reset=self._reset, open=False,
            name=f"kindle_store[{s.schema}]",
        )
        self._pool.open(wait=wait, timeout=s.timeout)
        self._pid = os.getpid()
        logger.debug("opened pool on %s", mask_url(s.database_url))
        return self

    def close(self) -> None:
        """Close the pool; a store can be opened again."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None

    def __enter__(self) -> Self:
        if self._pool is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pool(self) -> ConnectionPool:
        """The pool of this process; after a fork() the child opens its own and leaves the parent's alone."""
        if self._pool is None:
            self.open()
        elif self._pid != os.getpid():
            _ABANDONED.append(self._pool)
            logger.debug("fork detected: opening a new pool in pid %s", os.getpid())
            self.open()
        assert self._pool is not None
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """A connection in a transaction: committed when the block ends, rolled back if it raises."""
        with self.pool.connection() as conn:
            yield conn

    @contextmanager
    def autocommit(self) -> Iterator[Connection[Any]]:
        """A connection where each statement commits by itself: one round trip for a one-statement call."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    def require_current_schema(self) -> None:
        """Raise SchemaBehind unless the schema has every migration of this package."""
        with self.connection() as conn:
            require_current(conn, self.schema)

    @staticmethod
    def _configure(conn: Connection[Any]) -> None:
        set_json_loads(orjson.loads, conn)
        set_json_dumps(_json_dumps, conn)

    def _check(self, conn: Connection[Any]) -> None:
        returned = self._returned.get(conn)
        if returned is None or time.monotonic() - returned > self.check_idle_s:
            ConnectionPool.check_connection(conn)

    def _reset(self, conn: Connection[Any]) -> None:
        self._returned[conn] = time.monotonic()
