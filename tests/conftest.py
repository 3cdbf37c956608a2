"""Real PostgreSQL for every test: a fresh database per session, migrated through yoyo; tables emptied per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from _servers import server_url
from psycopg import sql

from kindle_store.migrate import migrate
from kindle_store.settings import Settings, libpq_url
from kindle_store.store import Store

SCHEMA = os.environ.get("KINDLE_SCHEMA", "kindle_automator")


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(libpq_url(url))
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of a maintenance database on the session's server."""
    with server_url() as (url, origin):
        print(f"\nkindle_store tests: PostgreSQL from {origin}")
        yield libpq_url(url)


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    """A fresh database, created for this session and dropped after it."""
    name = f"kindle_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_db(pg_server, name)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """The application's settings; with KINDLE_STORE_TEST_POOLER_DSN, through that PgBouncer (transaction
    pooling: no prepared statements, no startup options), while migrations go straight to the server."""
    migrate(Settings(database_url=database_url, schema=SCHEMA))
    pooler = os.environ.get("KINDLE_STORE_TEST_POOLER_DSN")
    if pooler:
        dbname = urlsplit(database_url).path.lstrip("/")
        return Settings(database_url=_with_db(pooler, dbname), schema=SCHEMA, prepare_threshold=None,
                        statement_timeout_ms=0)
    return Settings(database_url=database_url, schema=SCHEMA, statement_timeout_ms=60_000)


@pytest.fixture(scope="session")
def session_store(settings: Settings) -> Iterator[Store]:
    with Store(settings) as store:
        yield store


def _empty(conn: psycopg.Connection[object], schema: str) -> None:
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename NOT LIKE %s",
        [schema, "%yoyo%"])]
    if tables:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)))


@pytest.fixture
def store(session_store: Store) -> Iterator[Store]:
    """The session's store on empty tables."""
    yield session_store
    with session_store.connection() as conn:
        _empty(conn, session_store.schema)


@pytest.fixture
def conn(store: Store) -> Iterator[psycopg.Connection[object]]:
    """A connection from the store's pool, committed after the test."""
    with store.connection() as c:
        yield c


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a failed test here: every test has a real server to run on."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        print(f"\n{skipped} test(s) skipped: a skipped suite is a failed suite")
        session.exitstatus = 1
