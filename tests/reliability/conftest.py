"""Fixtures of the reliability area: a direct admin connection that kills and watches the app's backends, stores
built from the session's settings (direct or through PgBouncer), and snapshots to prove "nothing changed"."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from _helpers import sorted_json

from kindle_store._avd_db import DbProfileManager
from kindle_store.settings import Settings
from kindle_store.store import Store

APP = "kindle_store"  # Settings.application_name: what the killer looks for


@pytest.fixture
def app_name() -> str:
    """APP, for the tests: the application_name of the app's sessions, what they look for in pg_stat_activity."""
    return APP


@pytest.fixture
def pooled() -> bool:
    """True when the app's settings go through PgBouncer (KINDLE_STORE_TEST_POOLER_DSN)."""
    return bool(os.environ.get("KINDLE_STORE_TEST_POOLER_DSN"))


@pytest.fixture
def admin(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection straight to the test database, not counted as the app's (other application_name)."""
    with psycopg.connect(database_url, autocommit=True, application_name="kindle_store_test_admin") as conn:
        yield conn


@pytest.fixture
def dbname(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


@pytest.fixture
def kill_app(admin: psycopg.Connection[Any], dbname: str) -> Callable[..., int]:
    """kill_app(state=None) terminates every backend of the app in the test database; returns how many."""

    def kill(state: str | None = None) -> int:
        row = admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = %s AND pid <> pg_backend_pid()"
            " AND (%s::text IS NULL OR state = %s)", [APP, dbname, state, state]).fetchone()
        assert row is not None
        return int(row[0])

    return kill


@pytest.fixture
def make_store(settings: Settings, store: Store) -> Iterator[Callable[..., Store]]:
    """make_store(**settings overrides) → an open Store of its own, closed after the test. Depends on `store`,
    so the tables are emptied after the test; the session pool drops connections a killer broke."""
    made: list[Store] = []

    def make(**overrides: Any) -> Store:
        s = Store(dataclasses.replace(settings, **overrides)).open()
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
    store.pool.check()


@pytest.fixture
def manager(make_store: Callable[..., Store]) -> DbProfileManager:
    """A DbProfileManager on a pool of its own (4 connections, 5 s checkout timeout)."""
    return DbProfileManager(make_store(min_size=2, max_size=4, timeout=5.0))


@pytest.fixture
def retries(caplog: pytest.LogCaptureFixture) -> Callable[[str], int]:
    """retries(kind) counts the Store's retry log records: kind "rolled back" or "connection lost"."""
    caplog.set_level(logging.INFO, logger="kindle_store")

    def count(kind: str) -> int:
        return sum(1 for r in caplog.records if r.name == "kindle_store" and kind in r.getMessage()
                   and "retrying" in r.getMessage())

    return count


State = dict[str, tuple[bytes, int, Any]]


@pytest.fixture
def db_state(store: Store) -> Callable[[], State]:
    """db_state() → {email: (the document as sorted JSON, version, updated_at)}: equal means nothing was written."""

    def state() -> State:
        with store.connection() as conn:
            return {p.email: (sorted_json(p.to_dict()), p.version, p.updated_at)
                    for p in store.profiles.all(conn)}

    return state
