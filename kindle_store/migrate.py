"""Schema versions: apply and roll back the yoyo migrations in migrations/, and report where a database stands."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ._paths import MIGRATIONS_DIR
from .errors import SchemaBehind
from .queries import queries
from .settings import Settings

__all__ = ["YOYO_TABLES", "MigrationState", "migrate", "migration_ids", "require_current", "rollback", "state"]

logger = logging.getLogger("kindle_store")

#: yoyo's bookkeeping tables in the project schema (not data: left out of backups, owned like the rest)
YOYO_TABLES = re.compile(r"_yoyo_.*|yoyo_lock")

_LOCK_SQL = "SELECT pg_advisory_lock(hashtext('kindle_store.migrate:' || %s))"
_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('kindle_store.migrate:' || %s))"
_EXISTS = queries("monitoring")["schema_exists"]


def migration_ids() -> list[str]:
    """The migrations this package ships, oldest first."""
    return sorted(p.stem for p in MIGRATIONS_DIR.glob("[0-9]*.py"))


def yoyo_url(settings: Settings, conn: psycopg.Connection[Any]) -> str:
    """The URL yoyo needs: psycopg 3 driver, pointed at the project schema (quoted: yoyo pastes it as is).

    Every connection parameter goes in the query, as libpq reads the URL: yoyo reads host and port with
    urlsplit, which fails on a list of hosts (h1:5432,h2:5432), and the query with parse_qsl, which takes a
    `+` (a `+` to libpq) for a space.
    """
    params = {**conninfo_to_dict(settings.database_url), "schema": sql.Identifier(settings.schema).as_string(conn)}
    return urlunsplit(("postgresql+psycopg", "", "/", urlencode(params, quote_via=quote), ""))


@dataclass(frozen=True)
class MigrationState:
    applied: list[str]
    pending: list[str]
    #: migrations the database has applied that this package does not ship (the package is older)
    unknown: list[str]

    @property
    def current(self) -> bool:
        return not self.pending

    def __str__(self) -> str:
        if not self.pending:
            return f"{len(self.applied)} applied, up to date"
        return f"{len(self.applied)} applied, {len(self.pending)} pending: run kindle-store migrate (or yoyo apply)"


def state(conn: psycopg.Connection[Any], schema: str) -> MigrationState:
    """Which of the package's migrations the database has applied (none if the schema is missing)."""
    exists = conn.execute(
        "SELECT to_regclass(format('%%I._yoyo_migration', %s::text)) IS NOT NULL", [schema]
    ).fetchone()
    applied: set[str] = set()
    if exists and exists[0]:
        rows = conn.execute(sql.SQL("SELECT migration_id FROM {}._yoyo_migration").format(sql.Identifier(schema)))
        applied = {r[0] for r in rows}
    ids = migration_ids()
    return MigrationState([m for m in ids if m in applied], [m for m in ids if m not in applied],
                          sorted(applied - set(ids)))


def require_current(conn: psycopg.Connection[Any], schema: str) -> None:
    """Raise SchemaBehind unless every migration of this package is applied."""
    st = state(conn, schema)
    if st.pending:
        raise SchemaBehind(f"schema {schema!r} is behind ({len(st.applied)} applied, {len(st.pending)} pending): "
                           "run yoyo apply (or kindle-store migrate)")


def _run_yoyo(settings: Settings, action: str) -> list[str]:
    from yoyo import get_backend, read_migrations

    with psycopg.connect(settings.database_url, autocommit=True) as lock_conn:
        # A session-level advisory lock: a second applier waits here; a killed one's lock dies with its session.
        lock_conn.execute(_LOCK_SQL, [settings.schema])
        try:
            if action != "apply" and not _EXISTS.run(lock_conn, settings.schema, {"schema_name": settings.schema}):
                logger.info("%s: schema %s does not exist, nothing to do", action, settings.schema)
                return []  # creating it (and yoyo's tables) to roll back nothing would leave a stray schema
            lock_conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(settings.schema)))
            backend = get_backend(yoyo_url(settings, lock_conn))
            try:
                # Every kindle-store applier holds the advisory lock, so a yoyo lock row seen now was
                # left behind by a killed applier.
                backend.break_lock()
                migrations = read_migrations(str(MIGRATIONS_DIR))
                with backend.lock():
                    if action == "apply":
                        todo = backend.to_apply(migrations)
                        backend.apply_migrations(todo)
                    else:
                        todo = backend.to_rollback(migrations)
                        if action == "rollback-one":
                            todo = todo[:1]
                        backend.rollback_migrations(todo)
            finally:
                backend.connection.close()
            done = [m.id for m in todo]
            logger.info("%s: %s", action, ", ".join(done) or "nothing to do")
            return done
        finally:
            lock_conn.execute(_UNLOCK_SQL, [settings.schema])


def migrate(settings: Settings) -> list[str]:
    """Bring the schema to the newest version; returns the ids applied (empty if it was current)."""
    return _run_yoyo(settings, "apply")


def rollback(settings: Settings, *, all: bool = False) -> list[str]:
    """Undo the newest migration (or every one, with `all`); returns the ids rolled back."""
    return _run_yoyo(settings, "rollback-all" if all else "rollback-one")
