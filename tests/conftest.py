"""Real PostgreSQL for every test: a fresh database per session, migrated through yoyo; tables emptied per test."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from _helpers import KindleCli
from _servers import server_url
from psycopg import sql

import kindle_store
from kindle_store import cli
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


@pytest.fixture
def app_env(settings: Settings) -> dict[str, str]:
    """The environment under which `kindle-store` uses the session's settings (PgBouncer-safe when they are)."""
    # a `kindle-store` subprocess runs the very package under test, wherever the editable install points
    here = str(Path(kindle_store.__file__).resolve().parent.parent)
    env = {"DATABASE_URL": settings.database_url, "KINDLE_SCHEMA": settings.schema,
           "KINDLE_STATEMENT_TIMEOUT_MS": str(settings.statement_timeout_ms),
           "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    if settings.prepare_threshold is None:
        env["KINDLE_PREPARE_THRESHOLD"] = "off"
    return env


@pytest.fixture
def kindle_cli(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: Store) -> KindleCli:
    """kindle_cli(*argv, env={...}) runs `kindle-store` in process under app_env, for that call overridden by env
    (a None value unsets the variable), from tmp_path as working directory (no stray .env); returns (exit code,
    stdout, stderr). Tables are emptied after the test."""
    monkeypatch.chdir(tmp_path)

    def run(*argv: str, env: Mapping[str, str | None] | None = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with monkeypatch.context() as m:
            for k, v in {**app_env, **(env or {})}.items():
                if v is None:
                    m.delenv(k, raising=False)
                else:
                    m.setenv(k, v)
            code = cli.main(list(argv), out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    return run


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is a failed test here: every test has a real server to run on."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and exitstatus == 0:
        print(f"\n{skipped} test(s) skipped: a skipped suite is a failed suite")
        session.exitstatus = 1
