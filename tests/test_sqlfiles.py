"""The SQL-file loader: every failure mode names file and line; every shipped query runs on the real schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Json

from kindle_store._sqlfiles import load_file
from kindle_store.errors import SqlFileError
from kindle_store.queries import ALL


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.sql"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("-- name: f(a) :one\n-- doc\nSELECT :a\n-- name: f() :one\n-- doc\nSELECT 1\n",
     r"broken.sql:4: duplicate query name f \(first at broken.sql:1\)"),
    ("-- name: f(a) :one\n-- doc\nSELECT :a,\n       :b\n",
     r"broken.sql:4: parameter :b is used but not declared in f"),
    ("-- name: f :one\n-- doc\nSELECT 1\n", r"broken.sql:1: malformed name line"),
    ("-- name: f() :all\n-- doc\nSELECT 1\n", r"broken.sql:1: malformed name line"),
    ("SELECT 1\n-- name: f() :one\n-- doc\nSELECT 1\n", r"broken.sql:1: SQL before the first '-- name:' line"),
    ("-- name: f() :one\n-- doc only\n", r"broken.sql:1: query f has no SQL"),
    ("-- name: f() :one\nSELECT 1\n", r"broken.sql:1: query f has no doc comment"),
    ("-- name: f(a) :one\n-- doc\nSELECT 1\n", r"broken.sql:1: f declares \['a'\] but never uses it"),
    ("-- name: f() :one\n-- doc\nSELECT 1 FROM {table}\n", r"broken.sql:3: identifier \{table\} is not declared"),
    ("-- just a comment\n", r"broken.sql:1: no '-- name:' line"),
], ids=["duplicate", "undeclared", "no-signature", "bad-kind", "sql-before-name", "no-sql", "no-doc", "unused",
        "undeclared-ident", "empty"])
def test_loader_error_names_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SqlFileError, match=message):
        load_file(write(tmp_path, text))


def test_loader_turns_names_into_placeholders(tmp_path: Path) -> None:
    q = load_file(write(tmp_path, "-- name: f(a) :scalar\n-- doc\nSELECT :a::text || '%' -- why\n"))["f"]
    assert ("scalar", "SELECT %(a)s::text || '%%'") == (q.kind, q.text)


# One sample value per parameter name used in sql/, and identifiers per query: every query runs once.
SAMPLE: dict[str, Any] = {
    "email": "sample@x", "key": "k", "value": None, "raw": Json(1), "avd_name": "a", "avd_raw": None,
    "vnc_instance": None, "vnc_raw": Json("3"), "last_used": None, "last_used_date": None, "id": 1, "user_id": 1,
    "limit": 5,
    "row": Json({"user_id": 1, "extra": {}, "has_preferences": False}), "prefs": Json({}),
    "section": "reading_settings", "authenticated": True,
    "instance_id": None, "emulator_id": "emulator-5554", "first": 1, "last": 3, "running": True, "ids": [1],
    "rows": Json([{"id": 1, "absent": [], "extra": {}}]), "top": Json({"version": 1}),
    "emails": ["sample@x"], "n": 1, "columns": Json({"timezone": "UTC", "extra": {}}),
    "now": None, "locked": False,
    "users": Json([{"id": 1, "email": "sample@x", "extra": {}, "has_preferences": False}]),
}
IDENTS: dict[str, dict[str, str]] = {
    "set_user_column": {"column": "avd_name"},
    "set_section_column": {"table": "reading_settings", "column": "theme"},
    "set_section_extra": {"table": "reading_settings"},
    "delete_section": {"table": "reading_settings"},
    "insert_section": {"table": "reading_settings"},
    "delete_rows": {"table": "reading_settings"},
}


@pytest.mark.parametrize("family,name", [(f, n) for f, qs in ALL.items() for n in qs], ids=lambda x: str(x))
def test_every_query_runs(store: Any, family: str, name: str) -> None:
    query = ALL[family][name]
    params = {p: store.schema if p == "schema_name" else SAMPLE[p] for p in query.params}
    with store.connection() as conn:
        store.profiles.register(conn, "sample@x", "a")
        try:
            with conn.transaction():
                if name.startswith("copy_"):
                    with conn.cursor().copy(query.compose(store.schema)):
                        pass
                else:
                    query.run(conn, store.schema, params, **IDENTS.get(name, {}))
        except psycopg.errors.UniqueViolation:
            pass  # ran against the real schema; the sample row simply exists already


def test_pooled_connection_runs_every_query_on_one_cursor(tmp_path: Path, store: Any) -> None:
    """Query.run reuses the pooled connection's cursor; rows of queries of one width that alternate on it still
    come back under their own column names, and a failed statement leaves the cursor usable."""
    queries = load_file(write(tmp_path, "-- name: a(n) :one\n-- doc\nSELECT :n::int AS a, 1 AS x\n"
                                        "-- name: b(n) :many\n-- doc\nSELECT :n::int AS b, 2 AS y\n"))
    with store.connection() as conn:
        got = [queries["a"].run(conn, store.schema, {"n": 1}, dicts=True),
               queries["b"].run(conn, store.schema, {"n": 2}, dicts=True),
               queries["a"].run(conn, store.schema, {"n": 3})]
        cursor = conn.query_cursor
        with pytest.raises(psycopg.errors.InvalidTextRepresentation), conn.transaction():
            queries["a"].run(conn, store.schema, {"n": "not a number"})
        got.append(queries["b"].run(conn, store.schema, {"n": 4}, dicts=True))
        assert cursor is not None and cursor is conn.query_cursor
    assert [{"a": 1, "x": 1}, [{"b": 2, "y": 2}], (3, 1), [{"b": 4, "y": 2}]] == got
