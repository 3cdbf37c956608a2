"""Transaction faults: real deadlocks and serialization failures, timeouts of statements and of the pool.

A statement the server rolled back (class 40) is retried with backoff; an `edit_profile` block that has run is
never run again; a timeout is a clear error and is not retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.errors import DeadlockDetected, SerializationFailure

from kindle_store._avd_db import DbProfileManager
from kindle_store.errors import PoolTimeout, StatementTimeout
from kindle_store.settings import Settings
from kindle_store.store import Store


def wait_until_app_waits_on_a_lock(admin: psycopg.Connection[Any], dbname: str, app_name: str,
                                   timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND datname = %s"
                        " AND wait_event_type = 'Lock'", [app_name, dbname]).fetchone() is None:
        assert time.monotonic() < deadline, "the app never waited on the lock"
        time.sleep(0.01)


@contextmanager
def rival(database_url: str, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """Transaction A: a direct session that loses no deadlock (it waits 10 s before looking for one)."""
    with psycopg.connect(database_url, application_name="kindle_store_test_rival") as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
        conn.execute("SET deadlock_timeout = '10s'")
        yield conn
        conn.commit()


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run fn() in a thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@pytest.fixture
def alice(manager: DbProfileManager) -> int:
    """A profile with a library_settings row; its users.id."""
    manager.register_profile("alice@x", "avd")
    manager.save_style_setting("view_type", "list", "alice@x")
    with manager.store.autocommit() as conn:
        row = conn.execute(sql.SQL("SELECT id FROM {}.users").format(sql.Identifier(manager.store.schema))).fetchone()
    assert row is not None
    return int(row[0])


# -- deadlocks -------------------------------------------------------------------------------------------------------


def test_deadlock_victim_call_is_retried_and_succeeds(manager: DbProfileManager, alice: int, admin: Any, dbname: str,
                                                      app_name: str, database_url: str,
                                                      retries: Callable[[str], int]) -> None:
    # The app's statement locks the users row, then waits for the section row A holds; A then asks for the
    # users row: a cycle. The app's session looks for deadlocks first (1 s against A's 10 s) and is rolled back.
    with rival(database_url, manager.store.schema) as a:
        a.execute("SELECT 1 FROM library_settings WHERE user_id = %s FOR UPDATE", [alice])
        t, out = in_thread(lambda: manager.save_style_setting("view_type", "grid", "alice@x"))
        wait_until_app_waits_on_a_lock(admin, dbname, app_name)
        a.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", [alice])  # returns once the app rolled back
    t.join(timeout=20)
    assert ([True], 1) == (out, retries("rolled back"))
    assert {"view_type": "grid"} == manager.get_user_field("alice@x", "library_settings")


def test_deadlock_while_writing_back_an_edit_is_not_retried(manager: DbProfileManager, alice: int, admin: Any,
                                                            dbname: str, app_name: str, database_url: str) -> None:
    # Once the block has run it cannot be run again: the deadlock propagates and nothing of the block is written.
    runs: list[int] = []

    def edit() -> None:
        with manager.edit_profile("alice@x") as doc:
            runs.append(1)
            doc["library_settings"]["view_type"] = "grid"
            doc["avd_name"] = "changed"

    with rival(database_url, manager.store.schema) as a:
        a.execute("SELECT 1 FROM library_settings WHERE user_id = %s FOR UPDATE", [alice])
        t, out = in_thread(edit)
        wait_until_app_waits_on_a_lock(admin, dbname, app_name)
        a.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", [alice])
    t.join(timeout=20)
    assert (DeadlockDetected, 1) == (type(out[0]), len(runs))
    assert {"email": "alice@x", "avd_name": "avd", "library_settings": {"view_type": "list"}} == \
        manager.get_profile_for_email("alice@x")


# -- serialization failures --------------------------------------------------------------------------------------------


def test_real_serialization_failure_is_retried(manager: DbProfileManager, database_url: str,
                                               retries: Callable[[str], int]) -> None:
    # A REPEATABLE READ call whose row another session changes after its snapshot: the server refuses the
    # update (40001); the call runs again on a new snapshot. The counter counts both increments exactly.
    store, profiles = manager.store, manager.profiles
    manager.register_profile("c@x", "avd")
    attempts: list[int] = []

    def increment(conn: psycopg.Connection[Any]) -> int:
        attempts.append(1)
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT 1").fetchone()  # takes the snapshot
        if len(attempts) == 1:
            with psycopg.connect(database_url) as other, profiles.edit(other, "c@x") as doc:
                doc["counter"] = doc.get("counter", 0) + 1
        with profiles.edit(conn, "c@x") as doc:
            doc["counter"] = doc.get("counter", 0) + 1
            return int(doc["counter"])

    assert 2 == store.call(increment, idempotent=False, transaction=True)
    assert (2, 2, 1) == (manager.get_user_field("c@x", "counter"), len(attempts), retries("rolled back"))


def test_counter_stays_exact_while_edits_fail_to_serialize(manager: DbProfileManager, monkeypatch: pytest.MonkeyPatch,
                                                           retries: Callable[[str], int]) -> None:
    # Every other edit_profile call of each thread is refused once (its attempts 1, 4, 7...) after taking the lock,
    # as the server would refuse it; the call is retried and the counter still counts every increment once.
    real = manager.profiles.edit
    local = threading.local()

    @contextmanager
    def refused_every_other(conn: psycopg.Connection[Any], email: str) -> Iterator[dict[str, Any]]:
        with real(conn, email) as doc:
            local.n = getattr(local, "n", 0) + 1
            if local.n % 3 == 1:
                raise SerializationFailure("could not serialize access due to concurrent update (injected)")
            yield doc

    monkeypatch.setattr(manager.profiles, "edit", refused_every_other)
    manager.register_profile("c@x", "avd")
    threads, n = 4, 15

    def bump() -> None:
        for _ in range(n):
            with manager.edit_profile("c@x") as doc:
                doc["counter"] = doc.get("counter", 0) + 1

    started = [in_thread(bump) for _ in range(threads)]
    for t, _ in started:
        t.join(timeout=60)
    assert [[None]] * threads == [out for _, out in started]  # every thread finished without an error
    assert threads * n == manager.get_user_field("c@x", "counter")
    assert retries("rolled back") >= threads * n // 2


# -- timeouts -------------------------------------------------------------------------------------------------------


def test_statement_timeout_is_a_clear_error_and_not_retried(settings: Settings, database_url: str) -> None:
    """Direct to the server on every target: PgBouncer drops the startup option that carries the timeout."""
    timed = Settings.from_env(env={"DATABASE_URL": database_url, "KINDLE_SCHEMA": settings.schema,
                                   "KINDLE_STATEMENT_TIMEOUT_MS": "200"})
    calls: list[int] = []

    def slow(conn: psycopg.Connection[Any]) -> None:
        calls.append(1)
        conn.execute("SELECT pg_sleep(5)")

    with Store(timed) as store:
        with pytest.raises(StatementTimeout, match=r"KINDLE_STATEMENT_TIMEOUT_MS=200\).*statement timeout"):
            store.call(slow, idempotent=True)  # pg_sleep(5) cancelled: without the timeout it would return
        assert 1 == len(calls)  # not retried
        with store.autocommit() as conn:  # the pool's connection survived it
            assert (1,) == conn.execute("SELECT 1").fetchone()


def test_pool_checkout_timeout_names_its_setting(make_store: Callable[..., Store]) -> None:
    store = make_store(min_size=1, max_size=1, timeout=0.2)
    manager = DbProfileManager(store)
    with store.connection():  # the only connection, held
        with pytest.raises(PoolTimeout, match=r"no free connection within 0.2 s \(KINDLE_POOL_TIMEOUT") as caught:
            manager.get_profile_for_email("a@x")
        # the pool's own report of how long it waited: the setting, not psycopg_pool's default of 30 s
        assert "after 0.20 sec" in str(caught.value.__cause__)
    assert manager.get_profile_for_email("a@x") is None  # and once it is back, calls go through


def test_timeouts_have_sane_defaults() -> None:
    s = Settings(database_url="postgresql://u@h/d")
    assert (30_000, 10.0) == (s.statement_timeout_ms, s.timeout)
