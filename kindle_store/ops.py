"""Operator commands: stats, doctor, backup, restore (in monitoring.py and backup.py) and grant (here).

`grant` sets up least privilege: an owner role that owns the schema and everything in it (migrations run
as it), and an application role that may only read and write rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TextIO

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from .backup import BackupFailed, RestoreRefused, backup, restore
from .errors import ConfigurationError
from .migrate import YOYO_TABLES
from .monitoring import ConnectFailed, connect, doctor, stats
from .queries import queries
from .settings import NAME_RE, Settings

__all__ = ["BackupFailed", "ConnectFailed", "RestoreRefused", "backup", "doctor", "grant", "restore", "stats"]

G = queries("grants")
M = queries("monitoring")

# Role names follow the rule of schema names (NAME_RE); `pg_*` and the special role names are the server's.
_RESERVED = {"public", "none", "current_user", "current_role", "session_user"}

#: The ALTER statement of each kind schema_objects reports (looked up, never pasted from the catalog).
_ALTER = {
    "TABLE": sql.SQL("ALTER TABLE "),
    "VIEW": sql.SQL("ALTER VIEW "),
    "MATERIALIZED VIEW": sql.SQL("ALTER MATERIALIZED VIEW "),
    "SEQUENCE": sql.SQL("ALTER SEQUENCE "),
    "FOREIGN TABLE": sql.SQL("ALTER FOREIGN TABLE "),
    "TYPE": sql.SQL("ALTER TYPE "),
    "DOMAIN": sql.SQL("ALTER DOMAIN "),
    "ROUTINE": sql.SQL("ALTER ROUTINE "),
}

#: What the application role gets, and nothing more (anything granted before is revoked first).
_APP_PRIVILEGES = [
    sql.SQL(s)
    for s in (
        "REVOKE ALL ON SCHEMA {schema} FROM {app}",
        "GRANT USAGE ON SCHEMA {schema} TO {app}",
        "REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {app}",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app}",
        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {app}",
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {app}",
        "GRANT EXECUTE ON ALL ROUTINES IN SCHEMA {schema} TO {app}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema}"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {app}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT EXECUTE ON ROUTINES TO {app}",
    )
]


def check_role_name(option: str, name: str) -> str:
    """Return `name` if it may name a role (the schema-name rule, no `pg_*`), else raise ConfigurationError."""
    if not NAME_RE.fullmatch(name) or name.startswith("pg_") or name in _RESERVED:
        raise ConfigurationError(
            f"{option}={name!r} is not allowed: use ^[a-z_][a-z0-9_]{{0,62}}$ "
            "(lower case, digits, _), not pg_* or a reserved name"
        )
    return name


def _role(conn: psycopg.Connection[TupleRow], schema: str, name: str) -> dict[str, Any] | None:
    """The role's attributes (name, superuser, can_login); None if there is no such role."""
    rows: list[dict[str, Any]] = G["roles"].run(conn, schema, dicts=True)
    return next((r for r in rows if r["name"] == name), None)


def _ensure_role(conn: psycopg.Connection[TupleRow], schema: str, name: str, what: str, done: list[str]) -> None:
    if _role(conn, schema, name) is None:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        done.append(f"created role {name} (NOLOGIN), the {what}")


def _listing(noun: str, items: Iterable[str]) -> str:
    listed = sorted(items)
    return f"{len(listed)} {noun}: {', '.join(listed)}" if listed else f"no {noun}"


def _take_ownership(conn: psycopg.Connection[TupleRow], schema: str, owner: str) -> tuple[int, int]:
    """Make `owner` own the schema and every object in it; (objects, ownerships changed)."""
    changed = 0
    row = conn.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", [schema])
    if row.fetchone() != (owner,):
        conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), sql.Identifier(owner)))
        changed += 1
    objects = G["schema_objects"].run(conn, schema, {"schema_name": schema}, dicts=True)
    for obj in objects:
        if obj["owner"] == owner:
            continue
        target: sql.Composable = sql.Identifier(schema, obj["name"])
        if obj["kind"] == "ROUTINE":
            args = sql.SQL(", ").join(sql.Identifier(ns, typ) for ns, typ in obj["args"])
            target = sql.Composed([target, sql.SQL("("), args, sql.SQL(")")])
        conn.execute(sql.Composed([_ALTER[obj["kind"]], target, sql.SQL(" OWNER TO "), sql.Identifier(owner)]))
        changed += 1
    return len(objects), changed


def _refuse_unsafe_app(conn: psycopg.Connection[TupleRow], schema: str, app: str, owner: str, current: str) -> None:
    """ConfigurationError unless `app` is a plain role that cannot ALTER or DROP what `owner` owns."""
    info = _role(conn, schema, app)
    assert info is not None
    if app in (owner, current):
        raise ConfigurationError(
            f"--app-role {app} must differ from the owner role and from the user running "
            f"grant ({current}): it would own the tables"
        )
    if info["superuser"]:
        raise ConfigurationError(f"--app-role {app} is a superuser: it could DROP any table whatever is granted")
    members = G["schema_owner_members"].run(conn, schema, {"schema_name": schema})
    if (app,) in members:
        raise ConfigurationError(
            f"--app-role {app} is a member of the owner role {owner}: it could DROP its "
            f"tables (REVOKE {owner} FROM {app} first)"
        )


def grant(settings: Settings, *, app_role: str, owner_role: str | None, out: TextIO) -> int:
    """Set up (idempotently) the owner role and a least-privilege application role; print what was done; 0."""
    schema = settings.schema
    check_role_name("--app-role", app_role)
    if owner_role is not None:
        check_role_name("--owner-role", owner_role)
    done: list[str] = []
    with connect(settings) as conn, conn.transaction():
        if not M["schema_exists"].run(conn, schema, {"schema_name": schema}):
            raise ConfigurationError(f"schema {schema!r} does not exist: run kindle-store migrate first")
        current: str = M["server_version"].run(conn, schema, {}, dicts=True)["user"]
        owner = owner_role or current
        if owner_role is not None:
            _ensure_role(conn, schema, owner_role, "owner of the schema (run migrations as it)", done)
        _ensure_role(conn, schema, app_role, f"application role (ALTER ROLE {app_role} LOGIN PASSWORD '...')", done)
        total, changed = _take_ownership(conn, schema, owner)
        _refuse_unsafe_app(conn, schema, app_role, owner, current)
        done.append(f"{owner} owns schema {schema} and its {total} objects ({changed} ownership changes made now)")

        idents = {"schema": sql.Identifier(schema), "app": sql.Identifier(app_role), "owner": sql.Identifier(owner)}
        for statement in _APP_PRIVILEGES:
            conn.execute(statement.format(**idents))
        relations = M["schema_relations"].run(conn, schema, {"schema_name": schema}, dicts=True)
        tables = [r["name"] for r in relations if r["kind"] in ("table", "view", "materialized view")]
        yoyo = [t for t in tables if YOYO_TABLES.fullmatch(t)]
        if yoyo:  # the application reads the schema version; only migrations write it
            conn.execute(
                sql.SQL("REVOKE INSERT, UPDATE, DELETE ON {} FROM {}").format(
                    sql.SQL(", ").join(sql.Identifier(schema, t) for t in yoyo), idents["app"]
                )
            )
        sequences = [r["name"] for r in relations if r["kind"] == "sequence"]
        routines = [
            r["name"]
            for r in G["schema_objects"].run(conn, schema, {"schema_name": schema}, dicts=True)
            if r["kind"] == "ROUTINE"
        ]
    for line in done:
        print(line, file=out)
    print(f"{app_role}: USAGE on schema {schema}", file=out)
    print(
        f"{app_role}: SELECT, INSERT, UPDATE, DELETE on "
        f"{_listing('tables and views', (t for t in tables if t not in yoyo))}",
        file=out,
    )
    if yoyo:
        print(f"{app_role}: SELECT only on {_listing('tables of yoyo', yoyo)}", file=out)
    print(f"{app_role}: USAGE, SELECT on {_listing('sequences', sequences)}", file=out)
    print(f"{app_role}: EXECUTE on {_listing('routines', routines)}", file=out)
    print(
        f"default privileges: tables, sequences and routines {owner} creates in {schema} get the same grants", file=out
    )
    print(f"{app_role} cannot CREATE, ALTER, DROP or TRUNCATE anything in {schema}", file=out)
    return 0
