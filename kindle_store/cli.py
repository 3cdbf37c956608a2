"""`kindle-store`: migrate, import/export/verify the JSON files, monitor, back up, restore and grant roles.

With no DATABASE_URL (in the environment or `.env`), every command uses the embedded PostgreSQL in
`.kindle_store/pgdata`, started on demand and migrated, and says so on stderr.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import psycopg

from .connecting import connect
from .embedded import DEFAULT_PGDATA
from .errors import ConfigurationError, KindleStoreError
from .migrate import migrate, rollback
from .settings import Settings, error_line
from .store import Store

__all__ = ["main"]

DEFAULT_USERS = "user_data/users.json"
DEFAULT_VNC = "user_data/vnc_instance_map.json"


def _load_dotenv(path: str | None) -> None:
    """Set what the env file (`path`, else `.env` if there is one) sets and the environment does not.

    A file that cannot be read, or a line that is not KEY=value, is a ConfigurationError naming the file and
    line (not the line itself: it may hold a password); skipping it could leave DATABASE_URL unset, and the
    commands would quietly run against the embedded server.
    """
    from dotenv import load_dotenv
    from dotenv.parser import parse_stream

    name = path or ".env"
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if path is None:
            return
        raise
    except UnicodeDecodeError as e:
        raise ConfigurationError(f"{name}: not UTF-8 text (byte {e.start})") from None
    bad = next((b.original.line for b in parse_stream(io.StringIO(text)) if b.error), None)
    if bad is not None:
        raise ConfigurationError(f"{name}:{bad}: not a KEY=value line")
    load_dotenv(stream=io.StringIO(text), override=False)


def settings_from_env(err: TextIO, *, migrated: bool = True) -> tuple[Settings, Any]:
    """Settings from DATABASE_URL; without it, the embedded server (started here, and migrated if `migrated`),
    named on `err`."""
    if os.environ.get("DATABASE_URL"):
        return Settings.from_env(), None
    from .embedded import start_embedded

    pgdata = Path(os.environ.get("KINDLE_EMBEDDED_PGDATA") or DEFAULT_PGDATA)
    print(f"kindle-store: DATABASE_URL not set; using embedded PostgreSQL in {pgdata}", file=err)
    server, url = start_embedded(pgdata)
    settings = Settings.from_env(database_url=url)
    if migrated:
        migrate(settings)
    return settings, server


def open_store(err: TextIO, *, current: bool = False) -> Store:
    """A store on the configured database, checked reachable; with `current`, SchemaBehind unless migrated."""
    settings, server = settings_from_env(err)
    store = Store(settings, embedded=server).open()  # a database it cannot reach is one line at once
    return store.checked() if current else store


def _path(value: str | None, env: str, default: str) -> Path:
    return Path(value or os.environ.get(env) or default)


# -- commands: each takes the parsed arguments and the output streams, returns the exit code --------------------


def cmd_migrate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.all and not args.rollback:
        raise ConfigurationError("--all goes with --rollback (migrate alone always applies every migration)")
    settings, server = settings_from_env(err, migrated=False)  # what this command does is the report
    if server is None:
        connect(settings).close()  # a database it cannot reach is one line at once, not yoyo's traceback
    if args.rollback:
        done = rollback(settings, all=args.all)
        print(f"rolled back {len(done)} migration(s): {', '.join(done) or '-'}", file=out)
    else:
        done = migrate(settings)
        print(f"applied {len(done)} migration(s): {', '.join(done) or 'already up to date'}", file=out)
    return 0


def cmd_import_json(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .users_file import import_file

    with open_store(err) as store:
        return import_file(store, _path(args.path, "KINDLE_USERS_JSON", DEFAULT_USERS),
                           dry_run=args.dry_run, backup=not args.no_backup, out=out, err=err)


def cmd_export_json(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .users_file import export_file

    with open_store(err) as store:
        return export_file(store, Path(args.output) if args.output else None, out=out)


def cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .users_file import verify_file

    with open_store(err) as store:
        return verify_file(store, _path(args.path, "KINDLE_USERS_JSON", DEFAULT_USERS), out=out)


def cmd_import_vnc(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .vnc_file import import_file

    with open_store(err) as store:
        return import_file(store, _path(args.path, "KINDLE_VNC_MAP_JSON", DEFAULT_VNC),
                           dry_run=args.dry_run, backup=not args.no_backup, out=out, err=err)


def cmd_export_vnc(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .vnc_file import export_file

    with open_store(err, current=True) as store:
        return export_file(store, Path(args.output) if args.output else None, out=out)


def cmd_stats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .ops import stats

    with open_store(err) as store:
        return stats(store, as_json=args.json, out=out)


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .ops import doctor

    settings, _server = settings_from_env(err)
    return doctor(settings, out=out)


def cmd_backup(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .ops import backup

    settings, _server = settings_from_env(err)
    return backup(settings, Path(args.output) if args.output else None, out=out)


def cmd_restore(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .ops import restore

    settings, _server = settings_from_env(err)
    return restore(settings, Path(args.file), clean=args.clean, no_owner=args.no_owner, out=out)


def cmd_grant(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .ops import grant

    settings, _server = settings_from_env(err)
    return grant(settings, app_role=args.app_role, owner_role=args.owner_role, out=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kindle-store", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", help="read settings from this file too (default .env, if there is one)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[..., int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("migrate", cmd_migrate, "bring the schema to the newest version (or roll back)")
    p.add_argument("--rollback", action="store_true", help="undo the newest migration instead")
    p.add_argument("--all", action="store_true", help="with --rollback: undo every migration")
    for name, func, env, what in (("import-json", cmd_import_json, "KINDLE_USERS_JSON", "users.json"),
                                  ("import-vnc", cmd_import_vnc, "KINDLE_VNC_MAP_JSON", "vnc_instance_map.json")):
        p = add(name, func, f"import {what} in one transaction (creates and updates, never deletes)")
        p.add_argument("path", nargs="?", help=f"the file (default ${env}, then user_data/{what})")
        p.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
        p.add_argument("--no-backup", action="store_true", help="do not write PATH.backup first")
    for name, func, what in (("export-json", cmd_export_json, "users.json"),
                             ("export-vnc", cmd_export_vnc, "vnc_instance_map.json")):
        p = add(name, func, f"write {what} from the database (stdout, or atomically to a file)")
        p.add_argument("-o", "--output", help="write this file instead of stdout")
    p = add("verify", cmd_verify, "compare users.json with the database; exit 1 and list every difference")
    p.add_argument("path", nargs="?", help="the file (default $KINDLE_USERS_JSON, then user_data/users.json)")
    p = add("stats", cmd_stats, "monitoring: connections, active queries, table and index statistics")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add("doctor", cmd_doctor, "check connection, server version, schema version, tables and indexes")
    p = add("backup", cmd_backup, "pg_dump of the schema to backups/kindle_<schema>_<UTC time>.dump")
    p.add_argument("-o", "--output", help="the dump file to write")
    p = add("restore", cmd_restore, "restore a dump made by backup into the configured database")
    p.add_argument("file", help="the dump file")
    p.add_argument("--clean", action="store_true", help="replace a schema that already holds data")
    p.add_argument("--no-owner", action="store_true",
                   help="onto another server: owned by the user restoring, the dump's grants left out")
    p = add("grant", cmd_grant, "set up an owner role and a least-privilege application role")
    p.add_argument("--app-role", required=True, help="the application's login role")
    p.add_argument("--owner-role", help="the role owning the schema (migrations); default: the current user")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; errors are one line on stderr and a non-zero exit, never a traceback."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        _load_dotenv(args.env_file)
        code: int = args.func(args, out, err)
        return code
    except BrokenPipeError:  # the reader left (`| head`): nothing is wrong, and no one is left to tell
        if out is sys.stdout:  # nor to flush to at exit, which would raise again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command the closed pipe stopped
    except KindleStoreError as e:
        print(f"kindle-store: error: {e}", file=err)
    except psycopg.Error as e:
        print(f"kindle-store: database error: {error_line(e, os.environ.get('DATABASE_URL', ''))}", file=err)
    except OSError as e:
        print(f"kindle-store: error: {f'{e.filename}: ' if e.filename else ''}{e.strerror or e}", file=err)
    except KeyboardInterrupt:
        print("kindle-store: interrupted; nothing was committed by the interrupted step", file=err)
        return 130
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
