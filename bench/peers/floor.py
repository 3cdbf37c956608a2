"""The floor: the least work PostgreSQL allows from Python for each operation.

Raw psycopg on one connection opened beforehand (autocommit, no pool), one prepared statement per operation
(two, in one transaction, for edit_profile's increment: `increment_profile` locks and reads the whole profile,
as edit_profile must hand it to its block; `increment`, shown beside it, the counter alone), parameters by
position, and the raw tuples back: no validation, no conversion. Each write has the same effect on the tables as
kindle_store's (typed column, the key's override dropped from `extra`, version and updated_at bumped), so the
ratio shows the client's cost and the server work kindle_store's statements add: the test that skips a write
changing nothing, and the fallback that tells an unknown email from an unchanged profile.

`copy_import` is the import floor: binary COPY of rows already built in memory straight into the six tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import Connection, sql
from psycopg.types.json import Json, set_json_dumps, set_json_loads

from kindle_store.profile import SECTIONS, Profile
from kindle_store.users_file import COPY_TYPES

__all__ = ["CopyRows", "Floor", "copy_import", "copy_rows"]

_SQL = {
    "get": "SELECT * FROM {s}.profile_rows WHERE lower(email) = lower(%s)",
    "recent": "SELECT * FROM {s}.profile_rows WHERE last_used IS NOT NULL ORDER BY last_used DESC, id LIMIT %s",
    "set_timezone": """
        UPDATE {s}.users SET timezone = %s, extra = {s}.json_put(extra, 'timezone', NULL),
               version = version + 1, updated_at = now()
         WHERE lower(email) = lower(%s) RETURNING id""",
    "set_theme": """
        WITH u AS (UPDATE {s}.users SET extra = {s}.json_put(extra, 'reading_settings', NULL),
                          version = version + 1, updated_at = now()
                    WHERE lower(email) = lower(%s) RETURNING id)
        INSERT INTO {s}.reading_settings AS t (user_id, theme) SELECT id, %s FROM u
        ON CONFLICT (user_id) DO UPDATE SET theme = EXCLUDED.theme, extra = {s}.json_put(t.extra, 'theme', NULL)
        RETURNING user_id""",
    "set_preference": """
        WITH u AS (UPDATE {s}.users SET has_preferences = true, extra = {s}.json_put(extra, 'preferences', NULL),
                          version = version + 1, updated_at = now()
                    WHERE lower(email) = lower(%s) RETURNING id)
        INSERT INTO {s}.user_preferences (user_id, key, value) SELECT id, %s, %s FROM u
        ON CONFLICT (user_id, key) DO UPDATE SET value = EXCLUDED.value
        RETURNING user_id""",
    "auth_ok": """
        UPDATE {s}.users SET auth_date = %s, auth_failed_date = NULL,
               extra = {s}.json_put({s}.json_put(extra, 'auth_date', NULL), 'auth_failed_date', 'null'),
               version = version + 1, updated_at = now()
         WHERE lower(email) = lower(%s) RETURNING id""",
    "lock": "SELECT id, vnc_instance FROM {s}.users WHERE lower(email) = lower(%s) FOR UPDATE",
    "lock_profile": """
        SELECT p.*, l.version FROM (SELECT id, version FROM {s}.users WHERE lower(email) = lower(%s) FOR UPDATE) l
          JOIN {s}.profile_rows p ON p.id = l.id""",
    "bump": "UPDATE {s}.users SET vnc_instance = %s, version = version + 1, updated_at = now() WHERE id = %s",
}


class Floor:
    """The operations of the single-profile benchmark on one open autocommit connection."""

    def __init__(self, conn: Connection[Any], schema: str) -> None:
        assert conn.autocommit
        set_json_loads(orjson.loads, conn)
        set_json_dumps(orjson.dumps, conn)
        conn.execute("SET TimeZone TO 'UTC'")  # as kindle_store's pool sets it (timestamps load a little faster too)
        self.conn = conn
        self.cur = conn.cursor()
        s = sql.Identifier(schema)
        self.q = {name: sql.SQL(text).format(s=s).as_string(conn) for name, text in _SQL.items()}
        self.cur.execute(self.q["get"], ("",))
        #: the position of vnc_instance in a profile_rows row
        self.vnc_column = [c.name for c in self.cur.description or ()].index("vnc_instance")

    def _one(self, name: str, *params: Any) -> Any:
        return self.cur.execute(self.q[name], params, prepare=True).fetchone()

    def get(self, email: str) -> Any:
        return self._one("get", email)

    def recent(self, limit: int = 10) -> list[Any]:
        return self.cur.execute(self.q["recent"], (limit,), prepare=True).fetchall()

    def set_timezone(self, email: str, value: str) -> Any:
        return self._one("set_timezone", value, email)

    def set_theme(self, email: str, value: str) -> Any:
        return self._one("set_theme", email, value)

    def set_preference(self, email: str, key: str, value: Any) -> Any:
        return self._one("set_preference", email, key, Json(value))

    def auth_ok(self, email: str) -> Any:
        return self._one("auth_ok", datetime.now().replace(tzinfo=UTC), email)

    def increment(self, email: str) -> int:
        """SELECT ... FOR UPDATE, then UPDATE, in one transaction."""
        with self.conn.transaction():
            user_id, n = self._one("lock", email)
            self.cur.execute(self.q["bump"], ((n or 0) + 1, user_id), prepare=True)
        return (n or 0) + 1

    def increment_profile(self, email: str) -> int:
        """The same, reading what edit_profile hands its block: the whole profile, locked (raw tuples)."""
        with self.conn.transaction():
            row = self._one("lock_profile", email)
            n = row[self.vnc_column]
            self.cur.execute(self.q["bump"], ((n or 0) + 1, row[0]), prepare=True)
        return (n or 0) + 1


class CopyRows:
    """The rows of a set of profiles per table, ids 1..n, ready for COPY."""

    def __init__(self) -> None:
        self.tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}

    def add(self, table: str, columns: list[str], row: tuple[Any, ...]) -> None:
        self.tables.setdefault(table, (columns, []))[1].append(row)


def copy_rows(docs: dict[str, dict[str, Any]]) -> CopyRows:
    """The table rows kindle_store would store for `docs` (built with its Profile type, outside any timing)."""
    rows = CopyRows()
    users = ["id", "email", *Profile.columns(), "has_preferences"]
    for user_id, (email, doc) in enumerate(docs.items(), start=1):
        p = Profile.from_dict(email, doc)
        values = [getattr(p, c) for c in Profile.columns()]
        rows.add("users", users, (user_id, email, *values[:-1], Json(p.extra), p.preferences is not None))
        for name in SECTIONS:
            section = getattr(p, name)
            if section is not None:
                cols = list(section.columns())
                values = [getattr(section, c) for c in cols]
                rows.add(name, ["user_id", *cols], (user_id, *values[:-1], Json(section.extra)))
        for key, value in (p.preferences or {}).items():
            rows.add("user_preferences", ["user_id", "key", "value"], (user_id, key, Json(value)))
    return rows


#: each table's column types for binary COPY, as kindle_store's import names them
_TYPES = {"users": COPY_TYPES["copy_users"], "user_preferences": COPY_TYPES["copy_preferences"],
          **{name: COPY_TYPES[f"copy_{name}"] for name in SECTIONS}}


def copy_import(conn: Connection[Any], schema: str, rows: CopyRows) -> None:
    """COPY (binary, as kindle_store's import does) every table's rows in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        for table, (columns, values) in rows.tables.items():
            stmt = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
            with cur.copy(stmt) as copy:
                copy.set_types(_TYPES[table])
                for row in values:
                    copy.write_row(row)
