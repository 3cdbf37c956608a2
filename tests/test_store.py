"""Settings and the Store: clear configuration errors, masked secrets, a pool that survives fork()."""

from __future__ import annotations

import dataclasses
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from kindle_store._avd_db import DbProfileManager
from kindle_store.errors import ConfigurationError, ConnectFailed
from kindle_store.settings import Settings, mask_url
from kindle_store.store import Store


def test_database_url_unset_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not set"):
        Settings.from_env(env={})


def test_empty_schema_refused() -> None:
    with pytest.raises(ConfigurationError, match="KINDLE_SCHEMA=''"):
        Settings.from_env(env={"DATABASE_URL": "postgresql://u@h/d", "KINDLE_SCHEMA": ""})


def test_yoyo_spelling_accepted() -> None:
    s = Settings.from_env(env={"DATABASE_URL": "postgresql+psycopg://u@h/d"})
    assert "postgresql://u@h/d" == s.database_url


@pytest.mark.parametrize("query", ["schema=kindle_x", "sslmode=disable&schema=%22kindle_x%22"])
def test_yoyo_url_with_its_schema_serves_the_library_too(query: str) -> None:
    # one DATABASE_URL (a .env file) for the bare yoyo CLI and kindle_store: libpq refuses ?schema=
    s = Settings.from_env(env={"DATABASE_URL": f"postgresql+psycopg://u@h/d?{query}"})
    assert ("kindle_x", "schema" not in s.database_url) == (s.schema, True)


def test_yoyo_url_schema_and_kindle_schema_must_agree() -> None:
    with pytest.raises(ConfigurationError, match=r"DATABASE_URL names schema 'kindle_x' .* KINDLE_SCHEMA is 'other'"):
        Settings.from_env(env={"DATABASE_URL": "postgresql+psycopg://u@h/d?schema=kindle_x", "KINDLE_SCHEMA": "other"})


def test_non_postgres_url_refused_with_password_masked() -> None:
    with pytest.raises(ConfigurationError, match=r"mysql://u:\*\*\*@h/d") as info:
        Settings.from_env(env={"DATABASE_URL": "mysql://u:s3cret@h/d"})
    assert "s3cret" not in str(info.value)


def test_key_value_connection_string_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigurationError, match="key=value connection string is not accepted") as info:
        Settings.from_env(env={"DATABASE_URL": "host=h password=s3cret dbname=d"})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://u:s3cret@h:5432/d", "postgresql://u:***@h:5432/d"),
    ("postgresql://u@h/d", "postgresql://u@h/d"),
    ("postgresql://u:p%40ss@h/d?sslmode=require", "postgresql://u:***@h/d?sslmode=require"),
    ("postgresql://u@h/d?password=s3cret&sslmode=require", "postgresql://u@h/d?password=***&sslmode=require"),
    ("host=h password=s3cret dbname=d", "<not a URL>"),
    ("postgresql://u:s3cret@[::1/d", "<not a URL>"),
], ids=["password", "no-password", "quoted-password", "query-password", "key-value", "unparseable"])
def test_mask_url(url: str, masked: str) -> None:
    assert masked == mask_url(url)


def test_settings_repr_hides_password() -> None:
    s = Settings(database_url="postgresql://u:s3cret@h/d")
    assert "s3cret" not in repr(s) and "s3cret" not in repr(Store(s))


@pytest.mark.parametrize(("env", "field", "value"), [
    ({"KINDLE_POOL_MAX": "3"}, "max_size", 3), ({"KINDLE_POOL_TIMEOUT": "2.5"}, "timeout", 2.5),
    ({"KINDLE_PREPARE_THRESHOLD": "off"}, "prepare_threshold", None),
    ({"KINDLE_STATEMENT_TIMEOUT_MS": "100"}, "statement_timeout_ms", 100),
], ids=["pool-max", "pool-timeout", "prepare-off", "statement-timeout"])
def test_settings_from_env(env: dict[str, str], field: str, value: Any) -> None:
    s = Settings.from_env(env={"DATABASE_URL": "postgresql://u@h/d", **env})
    assert value == getattr(s, field)


def test_bad_pool_size_refused() -> None:
    with pytest.raises(ConfigurationError, match="KINDLE_POOL_MAX='many' is not an integer"):
        Settings.from_env(env={"DATABASE_URL": "postgresql://u@h/d", "KINDLE_POOL_MAX": "many"})


def test_store_is_a_context_manager(settings: Settings) -> None:
    with Store(settings) as store, store.autocommit() as conn:
        assert (1,) == conn.execute("SELECT 1").fetchone()
    assert store._pool is None


@pytest.mark.parametrize(("zone", "stamp"), [("Asia/Tokyo", "9999-12-31T23:00:00"),
                                             ("America/New_York", "0001-01-01T01:00:00")])
def test_a_stamp_at_the_end_of_the_years_reads_back_in_any_server_zone(settings: Settings, store: Any,
                                                                     monkeypatch: pytest.MonkeyPatch, zone: str,
                                                                     stamp: str) -> None:
    # in the session's zone the instant is year 10000 (or 0): psycopg could not read it, nor any profile holding it
    monkeypatch.setenv("PGTZ", zone)
    with Store(settings) as other:
        manager = DbProfileManager(other)
        manager.register_profile("a@x", "avd")
        manager.set_user_field("a@x", "auth_date", stamp)
        assert stamp == manager.get_user_field("a@x", "auth_date")


def test_a_store_on_a_missing_database_says_so_at_once(database_url: str) -> None:
    # the pool retried for its whole timeout, logging each attempt, then said "pool initialization incomplete"
    url = urlunsplit(urlsplit(database_url)._replace(path="/kindle_no_such_db"))
    with pytest.raises(ConnectFailed, match=r'^database missing: .*"kindle_no_such_db" does not exist'):
        Store(Settings(database_url=url, timeout=2)).open()


def test_autocommit_commits_each_statement(settings: Settings, store: Any) -> None:
    with store.autocommit() as conn:
        store.profiles.register(conn, "a@x", "avd")
        assert conn.info.transaction_status.name == "IDLE"


def test_one_connection_switches_modes_as_each_caller_asks(settings: Settings, store: Any) -> None:
    """The mode is switched only when it differs from the last user's: a transaction after an autocommit call on
    the same connection still rolls back as a whole, and an autocommit call after a transaction commits at once."""
    with Store(dataclasses.replace(settings, min_size=1, max_size=1)) as one:
        with one.autocommit() as conn:
            first = conn.info.backend_pid
            one.profiles.register(conn, "a@x", "avd")
        with pytest.raises(RuntimeError), one.connection() as conn:
            assert (first, False) == (conn.info.backend_pid, conn.autocommit)
            one.profiles.register(conn, "b@x", "avd")
            raise RuntimeError("boom")
        with one.connection() as conn:
            one.profiles.register(conn, "c@x", "avd")
        with one.autocommit() as conn:
            assert (first, True) == (conn.info.backend_pid, conn.autocommit)
            one.profiles.register(conn, "d@x", "avd")
            assert "IDLE" == conn.info.transaction_status.name  # committed by itself, no transaction open
        with one.autocommit() as conn:
            emails = [p.email for p in one.profiles.all(conn)]
    assert ["a@x", "c@x", "d@x"] == emails


def test_fork_gives_the_child_its_own_pool(settings: Settings, store: Any) -> None:
    with Store(settings) as mine:
        with mine.autocommit() as conn:
            mine.profiles.register(conn, "parent@x", "avd")
        pid = os.fork()
        if pid == 0:  # the child: must not touch the parent's connections
            code = 1
            try:
                with mine.autocommit() as conn:
                    mine.profiles.register(conn, "child@x", "avd")
                    code = 0 if mine.profiles.get(conn, "parent@x") is not None else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        with mine.autocommit() as conn:  # the parent's pool still works: no protocol error
            assert (0, ["child@x", "parent@x"]) == (
                os.waitstatus_to_exitcode(status), sorted(p.email for p in mine.profiles.all(conn)))
