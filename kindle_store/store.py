"""The Store: one psycopg_pool.ConnectionPool, the schema it works in, and the profile repository bound to both."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

import orjson
import psycopg_pool
from psycopg import Connection, InternalError, OperationalError
from psycopg.errors import DeadlockDetected, QueryCanceled, SerializationFailure, TransactionRollback
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool

from ._process import ProcessWide
from ._sqlfiles import QueryConnection
from .connecting import connect
from .embedded import DEFAULT_PGDATA
from .errors import ConnectionLost, KindleStoreError, PoolTimeout, StatementTimeout
from .migrate import require_current
from .profiles import Profiles
from .settings import Settings, error_line, mask_url

__all__ = ["RETRY_ATTEMPTS", "Store", "StoreBacked", "reset_shared_store", "shared_store"]

T = TypeVar("T")
#: how often a statement the server rolled back (deadlock, serialization failure) is tried in all
RETRY_ATTEMPTS = 5
#: SQLSTATE class 40: the server rolled the statement back, nothing of it was committed
ROLLED_BACK = (TransactionRollback, SerializationFailure, DeadlockDetected)

#: the pool's own errors (closed, too many waiting): OperationalError without a SQLSTATE, yet no lost connection
_POOL_ERRORS = (psycopg_pool.PoolClosed, psycopg_pool.TooManyRequests, psycopg_pool.PoolTimeout)

logger = logging.getLogger("kindle_store")

# Pools abandoned in a forked child: never closed there (closing would end the parent's sessions), never freed.
_ABANDONED: list[ConnectionPool[PooledConnection]] = []


def _raised_in_psycopg(e: BaseException) -> bool:
    """True if the innermost frame of `e` is psycopg's own code."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith("psycopg")


def _unwind(stack: ExitStack, e: BaseException) -> None:
    """Close `stack` as `e` unwinds it: a connection in it rolls back rather than commits, and a second failure
    while releasing it (the connection is gone too) does not hide `e`, the error the caller is told about."""
    try:
        stack.__exit__(type(e), e, e.__traceback__)
    except Exception:
        logger.debug("error ignored while releasing after %r", e, exc_info=True)


def _json_dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


class _Retry:
    """The retry rules of Store.call and Store.enter, applied to each failed attempt in turn."""

    def __init__(self, store: Store, idempotent: bool) -> None:
        self.store = store
        self.attempt = 0
        self.lost_retry = idempotent
        self.delay = 0.005

    def after(self, e: BaseException) -> None:
        """Return (after a backoff) if the attempt that raised `e` may be made again; else raise what the caller
        is told: `e` itself, or the KindleStoreError it stands for."""
        self.attempt += 1
        if isinstance(e, ROLLED_BACK):
            if self.attempt == RETRY_ATTEMPTS:
                raise e
            logger.info("statement rolled back by the server (attempt %d), retrying", self.attempt)
        elif isinstance(e, (OperationalError, InternalError)):
            mine = self.store._failure(e)
            if mine is None:
                raise e  # an error on a live session (lock timeout...): not a lost connection
            if not (self.lost_retry and isinstance(mine, ConnectionLost)):
                raise mine from e
            self.lost_retry = False
            logger.info("connection lost, retrying once on a fresh connection")
            self.store.pool.check()  # drop every broken idle connection before trying again
        else:
            raise e
        time.sleep(self.delay * (1 + random.random()))
        self.delay *= 2


class PooledConnection(QueryConnection):
    """A connection of the Store's pool."""

    #: time.monotonic() when it last went back to the pool; None while it never has
    returned_at: float | None = None


class Store:
    """A connection pool to one database and schema; use as a context manager or call open()/close()."""

    def __init__(self, settings: Settings, *, check_idle_s: float = 1.0, embedded: Any = None) -> None:
        self.settings = settings
        #: a connection idle for longer than this is checked (one empty round trip) before it is handed out
        self.check_idle_s = check_idle_s
        self._pool: ConnectionPool[PooledConnection] | None = None
        self._pid = 0
        self._embedded = embedded  # keeps an embedded server alive as long as the store
        self.profiles = Profiles(settings.schema)

    @classmethod
    def from_env(cls, **overrides: Any) -> Store:
        """A store configured by DATABASE_URL, KINDLE_SCHEMA and friends (see Settings.from_env)."""
        return cls(Settings.from_env(**overrides))

    @classmethod
    def embedded(cls, path: str | Path = DEFAULT_PGDATA, **overrides: Any) -> Store:
        """A store on the embedded PostgreSQL kept in `path` (started if needed)."""
        from .embedded import start_embedded

        server, url = start_embedded(Path(path))
        return cls(Settings.from_env(database_url=url, **overrides), embedded=server)

    def __repr__(self) -> str:
        return f"<Store {mask_url(self.settings.database_url)} schema={self.settings.schema}>"

    @property
    def schema(self) -> str:
        return self.settings.schema

    # -- the pool --------------------------------------------------------------------------------------------

    def open(self, wait: bool = True) -> Self:
        """Open the pool (again, in a forked child); with `wait`, until min_size connections are ready.

        With `wait`, one connection is tried first: a missing database, a refused login or an unreachable host is
        ConnectFailed at once, in one line, rather than a pool retrying for `timeout` seconds and then saying only
        that it could not start.
        """
        s = self.settings
        if wait:
            connect(s).close()
        kwargs: dict[str, Any] = {"prepare_threshold": s.prepare_threshold, "application_name": s.application_name}
        if s.statement_timeout_ms:
            kwargs["options"] = f"-c statement_timeout={int(s.statement_timeout_ms)}"
        self._pool = ConnectionPool(
            s.database_url, min_size=s.min_size, max_size=s.max_size, timeout=s.timeout, kwargs=kwargs,
            configure=self._configure, check=self._check, open=False, connection_class=PooledConnection,
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
    def pool(self) -> ConnectionPool[PooledConnection]:
        """The pool of this process; after a fork() the child opens its own and leaves the parent's alone."""
        if self._pool is None:
            self.open()
        elif self._pid != os.getpid():
            _ABANDONED.append(self._pool)
            logger.debug("fork detected: opening a new pool in pid %s", os.getpid())
            self.open()
        assert self._pool is not None
        return self._pool

    def _getconn(self) -> tuple[ConnectionPool[PooledConnection], PooledConnection]:
        """(the pool, a connection of it), or PoolTimeout naming the settings to change."""
        pool = self.pool
        try:
            return pool, pool.getconn()
        except psycopg_pool.PoolTimeout as e:
            raise PoolTimeout(
                f"no free connection within {self.settings.timeout:g} s (KINDLE_POOL_TIMEOUT; pool max "
                f"{self.settings.max_size}, KINDLE_POOL_MAX) on {mask_url(self.settings.database_url)}") from e

    @staticmethod
    def _putconn(pool: ConnectionPool[PooledConnection], conn: PooledConnection) -> None:
        # Stamped here rather than in a pool `reset` callback: with one, psycopg_pool returns every
        # connection through its worker thread, which costs a thread switch per call.
        conn.returned_at = time.monotonic()
        pool.putconn(conn)

    @staticmethod
    def _put_failed(pool: ConnectionPool[PooledConnection], conn: PooledConnection, e: BaseException) -> None:
        """Give back a connection whose user raised `e`: rolled back, or closed if the protocol went astray."""
        if isinstance(e, IndexError) and _raised_in_psycopg(e):
            # psycopg lost count of its pipeline's results (a pooler passed on a killed server's FATAL where
            # none was due): the session is unusable, so this is a lost connection, never handed out again
            conn.close()
            pool.putconn(conn)
            raise OperationalError(f"the connection broke mid-protocol (IndexError: {e})") from e
        if not conn.closed:
            try:
                conn.rollback()
            except Exception as e2:
                logger.debug("error ignored in rollback after %r: %r", e, e2)
        pool.putconn(conn)

    @contextmanager
    def _checkout(self, autocommit: bool) -> Iterator[Connection[Any]]:
        """A connection of the pool in the mode asked for; a transaction commits at the end or rolls back.

        The mode is switched only when it differs from the last user's, and the pool's own context manager is
        not used: each of its steps (a commit on an idle connection, a mode switch) costs a few microseconds of
        psycopg's machinery, a noticeable share of a one-statement call.
        """
        pool, conn = self._getconn()
        try:
            if conn.autocommit is not autocommit:
                conn.autocommit = autocommit
            yield conn
            if not autocommit:
                conn.commit()
        except BaseException as e:
            self._put_failed(pool, conn, e)
            raise
        self._putconn(pool, conn)

    def connection(self) -> AbstractContextManager[Connection[Any]]:
        """A connection in a transaction: committed when the block ends, rolled back if it raises."""
        return self._checkout(autocommit=False)

    def autocommit(self) -> AbstractContextManager[Connection[Any]]:
        """A connection where each statement commits by itself: one round trip for a one-statement call."""
        return self._checkout(autocommit=True)

    def call(self, fn: Callable[[Connection[Any]], T], *, idempotent: bool, transaction: bool = False) -> T:
        """fn(conn) on an autocommit connection (or in one transaction), retried when that is safe.

        A statement the server rolled back (deadlock, serialization failure) is run again, with backoff, up to
        RETRY_ATTEMPTS times: nothing of it was committed. After a lost connection the outcome is unknown, so
        only an `idempotent` call is run once more, on a fresh connection; otherwise ConnectionLost is raised.
        A statement timeout raises StatementTimeout and is never retried.
        """
        # _checkout written out, without a generator or an ExitStack: this is the path of every manager call
        # (about 18,000 fewer client instructions per call, counted with callgrind)
        autocommit = not transaction
        retry: _Retry | None = None  # made at the first failure: most calls have none
        while True:
            pool, conn = self._getconn()
            try:
                if conn.autocommit is not autocommit:
                    conn.autocommit = autocommit
                result = fn(conn)
                if transaction:
                    conn.commit()
            except BaseException as e:
                retry = retry or _Retry(self, idempotent)
                try:
                    self._put_failed(pool, conn, e)
                except BaseException as lost:
                    retry.after(lost)
                else:
                    retry.after(e)
                continue
            self._putconn(pool, conn)
            return result

    def enter(self, opener: Callable[[ExitStack], T], *, idempotent: bool) -> tuple[T, ExitStack]:
        """Run `opener` with a fresh ExitStack under call()'s retry rules; the caller closes the stack."""
        retry = _Retry(self, idempotent)
        while True:
            stack = ExitStack()
            try:
                return opener(stack), stack
            except BaseException as e:
                _unwind(stack, e)
                retry.after(e)

    def _failure(self, e: OperationalError | InternalError) -> KindleStoreError | None:
        """The error of ours `e` stands for: StatementTimeout, ConnectionLost, or None (let `e` through)."""
        first = error_line(e, self.settings.database_url)
        where = mask_url(self.settings.database_url)
        if isinstance(e, QueryCanceled) and "statement timeout" in first:
            return StatementTimeout(f"statement cancelled by statement_timeout (KINDLE_STATEMENT_TIMEOUT_MS="
                                    f"{self.settings.statement_timeout_ms}) on {where}: {first}")
        if isinstance(e, _POOL_ERRORS):
            return None
        # Class 57 and 55 errors are OperationalError too, on a live session; the session is gone only when the
        # client saw the socket die or the protocol go astray (no SQLSTATE: PgBouncer can pass on the FATAL of a
        # killed server after the command's own result), on a class 08 error, or when the server ended it (FATAL).
        if e.sqlstate is None or e.sqlstate.startswith("08") or e.diag.severity_nonlocalized in ("FATAL", "PANIC"):
            return ConnectionLost(f"connection to {where} lost: {first}")
        return None

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Raise a lost connection as ConnectionLost and a statement timeout as StatementTimeout."""
        try:
            yield
        except (OperationalError, InternalError) as e:
            mine = self._failure(e)
            if mine is None:
                raise
            raise mine from e

    def require_current_schema(self) -> None:
        """Raise SchemaBehind unless the schema has every migration of this package."""
        with self.connection() as conn:
            require_current(conn, self.schema)

    def checked(self) -> Self:
        """This store, once its schema has every migration; else closed, and SchemaBehind raised."""
        try:
            self.require_current_schema()
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def _configure(conn: Connection[Any]) -> None:
        set_json_loads(orjson.loads, conn)
        set_json_dumps(_json_dumps, conn)
        # Timestamps come back in UTC whatever the server's (or PGTZ's) zone: in another zone a stored instant
        # near year 1 or 9999 falls outside what a Python datetime can hold, and every read of its profile failed.
        # A SET, not a startup option: PgBouncer passes TimeZone on to each server connection it lends.
        conn.execute("SET TimeZone TO 'UTC'")
        conn.commit()

    def _check(self, conn: PooledConnection) -> None:
        if conn.returned_at is None or time.monotonic() - conn.returned_at > self.check_idle_s:
            ConnectionPool.check_connection(conn)


_SHARED: ProcessWide[Store] = ProcessWide(lambda: Store.from_env().checked(), Store.close)


def shared_store() -> Store:
    """The process-wide store both managers' get_instance() use (one pool per process); schema checked once."""
    return _SHARED.get()


def reset_shared_store() -> None:
    """Close and forget the process-wide store; the next shared_store() reads the environment again."""
    _SHARED.reset()


class StoreBacked:
    """What both PostgreSQL managers share: the store they run on, and whether closing them closes it."""

    def __init__(self, store: Store, *, owns_store: bool = False) -> None:
        """A manager on `store`; close() closes the store only if `owns_store`."""
        self.store = store
        self._owns_store = owns_store

    @classmethod
    def from_env(cls) -> Self:
        """The manager on the process-wide store (DATABASE_URL / KINDLE_SCHEMA); SchemaBehind if it is behind."""
        return cls(shared_store())

    def close(self) -> None:
        """Close the store if this manager owns it; idempotent."""
        if self._owns_store:
            self.store.close()
