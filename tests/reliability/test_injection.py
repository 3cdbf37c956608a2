"""Injection: what callers pass is data, never SQL. Values are parameters; the schema name is checked at configuration
time and quoted; field and section names choose a column only through a fixed map, never by concatenation."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
import pytest
from psycopg import sql

from kindle_store._avd_db import DbProfileManager
from kindle_store.errors import ConfigurationError
from kindle_store.migrate import migrate
from kindle_store.settings import Settings
from kindle_store.store import Store

NASTY = [
    "o'brien", 'quote"d', "semi;colon", "dash--dash", "back\\slash", "dollar$$quote$$", "pct%s", "named%(x)s",
    "{schema}", "x'); DROP TABLE users; --", '"; DROP TABLE users; --', "$1", "'||pg_sleep(5)||'", "%%", "{}",
    "$tag$ x $tag$", "E'\\x41'", "\\0",
]
IDS = [f"nasty{i}" for i in range(len(NASTY))]


def tables(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    """Every table of the schema with its row count."""
    names = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])]
    return {n: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, n))).fetchone()[0]
            for n in names}  # type: ignore[index]


def users_row(manager: DbProfileManager) -> tuple[Any, ...]:
    with manager.store.autocommit() as conn:
        row = conn.execute(sql.SQL("SELECT id, email, avd_name, version FROM {}").format(
            sql.Identifier(manager.store.schema, "users"))).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("nasty", NASTY, ids=IDS)
def test_nasty_email_is_data(manager: DbProfileManager, nasty: str) -> None:
    email = f"{nasty}@x"
    assert manager.register_profile(email, nasty)
    assert manager.set_user_field(email.upper(), nasty, nasty)
    assert {email: {"email": email, "avd_name": nasty, nasty: nasty}} == manager.get_all_profiles()


@pytest.mark.parametrize("nasty", NASTY, ids=IDS)
def test_nasty_names_are_data(manager: DbProfileManager, nasty: str) -> None:
    manager.register_profile("a@x", "avd")
    assert manager.set_user_field("a@x", nasty, 1, section=nasty)  # a section of its own
    assert manager.set_user_field("a@x", f"{nasty}!", 2)  # a top-level key
    assert manager.set_user_field("a@x", nasty, 3, section="preferences")  # a preference key
    assert manager.save_reading_setting(nasty, 4, "a@x")  # a key inside a well-known section
    with manager.edit_profile("a@x") as doc:
        doc["emulator_settings"] = {nasty: 5}
    assert {"email": "a@x", "avd_name": "avd", nasty: {nasty: 1}, f"{nasty}!": 2, "preferences": {nasty: 3},
            "reading_settings": {nasty: 4}, "emulator_settings": {nasty: 5}} == manager.get_profile_for_email("a@x")


def test_names_choose_columns_only_through_the_fixed_map(manager: DbProfileManager) -> None:
    # Names of real columns and tables, and SQL fragments: had any of them reached the SQL text, a column
    # (version, id, extra, user_id, email) or a table would have changed. They are all stored as keys.
    manager.register_profile("a@x", "avd")
    manager.save_reading_setting("theme", "dark", "a@x")
    before = users_row(manager)
    with manager.store.autocommit() as conn:
        tables_before = tables(conn, manager.store.schema)
    hostile: list[tuple[str, Any, str | None]] = [
        ("version", 999, None), ("id", 0, None), ("extra", {"x": 1}, None), ("user_id", 7, None),
        ("avd_name = 'x', version", 1, None), ("hw_overlays_disabled", True, None),  # a column of another table
        ("email", "hijack@x", "users"), ("theme", "light", "user_preferences"),
        ("theme", "light", 'reading_settings"; DROP TABLE users; --'), ("user_id", 9, "reading_settings"),
        ("version", 5, "reading_settings"), ('theme" = NULL, "extra', 1, "reading_settings"),
    ]
    for field, value, section in hostile:
        assert manager.set_user_field("a@x", field, value, section)
    expected = {"email": "a@x", "avd_name": "avd", "version": 999, "id": 0, "extra": {"x": 1}, "user_id": 7,
                "avd_name = 'x', version": 1, "hw_overlays_disabled": True, "users": {"email": "hijack@x"},
                "user_preferences": {"theme": "light"}, 'reading_settings"; DROP TABLE users; --': {"theme": "light"},
                "reading_settings": {"theme": "dark", "user_id": 9, "version": 5, 'theme" = NULL, "extra': 1}}
    assert expected == manager.get_profile_for_email("a@x")
    assert (*before[:3], before[3] + len(hostile)) == users_row(manager)  # id, email, avd_name as they were
    with manager.store.autocommit() as conn:
        assert tables_before == tables(conn, manager.store.schema)  # no table gained or lost a row
    assert manager.get_profile_for_email("hijack@x") is None


BAD_SCHEMAS = ['x"; DROP TABLE users; --', "Users", "a-b", "1abc", "", " ", "a" * 64, "kindle automator", "a;b",
               "public.users", "x\x00", "ünï", "x'", "x$$", "public", "information_schema", "pg_kindle"]


@pytest.mark.parametrize("schema", BAD_SCHEMAS, ids=[f"schema{i}" for i in range(len(BAD_SCHEMAS))])
def test_bad_schema_refused_at_configuration_time(schema: str) -> None:
    # an unreachable URL: the refusal comes before any connection is tried
    url = "postgresql://u@192.0.2.1:1/d"
    with pytest.raises(ConfigurationError, match=r"KINDLE_SCHEMA=.* is not allowed"):
        Settings(database_url=url, schema=schema)
    with pytest.raises(ConfigurationError, match=r"KINDLE_SCHEMA=.* is not allowed"):
        Settings.from_env(env={"DATABASE_URL": url, "KINDLE_SCHEMA": schema})


def test_reserved_word_schema_is_quoted(settings: Settings, database_url: str, store: Store) -> None:
    # `select` passes the name rule and is a reserved word: it works only if it is always quoted
    direct = Settings(database_url=database_url, schema="select")
    migrate(direct)
    try:
        with DbProfileManager(Store(dataclasses.replace(settings, schema="select")), owns_store=True) as manager:
            assert manager.register_profile("a@x", "avd")
            assert {"a@x": {"email": "a@x", "avd_name": "avd"}} == manager.get_all_profiles()
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute('DROP SCHEMA "select" CASCADE')
