"""yoyo owns the schema: apply, roll back, apply again; concurrent and killed appliers; schema names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg
import pytest
from _helpers import KindleCli
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from yoyo.connections import parse_uri

from kindle_store.errors import SchemaBehind
from kindle_store.migrate import migrate, migration_ids, require_current, rollback, state, yoyo_url
from kindle_store.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def snapshot(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """The schema's shape as information_schema and pg_indexes describe it."""
    q = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
                   "FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 2",
        "constraints": "SELECT table_name, constraint_type, count(*) FROM information_schema.table_constraints "
                       "WHERE table_schema = %s GROUP BY 1, 2 ORDER BY 1, 2",
        "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1, 2",
        "routines": "SELECT routine_name FROM information_schema.routines WHERE routine_schema = %s ORDER BY 1",
    }
    return {k: conn.execute(v, [schema]).fetchall() for k, v in q.items()}


def fresh_settings(database_url: str, schema: str) -> Settings:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    return Settings(database_url=database_url, schema=schema)


def yoyo(args: list[str], url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KINDLE_SCHEMA",)}
    env["DATABASE_URL"] = url
    return subprocess.run(["yoyo", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_yoyo_cli_apply_rollback_apply_leaves_identical_schema(database_url: str) -> None:
    s = fresh_settings(database_url, "yoyo_cli")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA yoyo_cli")
        url = yoyo_url(s, conn)
        for args in (["apply"], ["rollback", "--all"], ["apply"]):
            result = yoyo(args, url)
            assert 0 == result.returncode, result.stderr
            if args == ["apply"] and "first" not in locals():
                first = snapshot(conn, "yoyo_cli")
            if args[0] == "rollback":
                assert [] == conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'yoyo_cli' "
                                          "AND tablename NOT LIKE '%%yoyo%%'").fetchall()
        assert first == snapshot(conn, "yoyo_cli")


def test_yoyo_bookkeeping_lives_in_the_schema(database_url: str, settings: Settings) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT table_schema, count(*) FROM information_schema.tables "
                            "WHERE table_name LIKE '%%yoyo%%' AND table_schema IN (%s, 'public') GROUP BY 1",
                            [settings.schema]).fetchall()
    assert [(settings.schema, 4)] == rows


def test_yoyo_refuses_public_schema(database_url: str) -> None:
    result = yoyo(["apply"], database_url.replace("postgresql://", "postgresql+psycopg://"))
    assert 0 != result.returncode and "not pointed at the project schema" in result.stderr


@pytest.mark.parametrize("schema", ["public", "information_schema", "pg_kindle"])
def test_migrate_refuses_a_system_schema_and_creates_nothing(kindle_cli: KindleCli, database_url: str,
                                                             schema: str) -> None:
    # public passed the name rule and the migration itself refused it, blaming yoyo; information_schema was
    # migrated: the tables landed among the server's own views
    code, out, err = kindle_cli("migrate", env={"KINDLE_SCHEMA": schema})
    with psycopg.connect(database_url) as conn:
        ours = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
                            "AND table_name IN ('users', 'vnc_instances')", [schema]).fetchone()
    assert (1, "", True, (0,)) == (
        code, out, f"KINDLE_SCHEMA={schema!r} is not allowed: kindle_store keeps its tables in a schema of its own"
        in err, ours)


def test_migrate_then_rollback_one_by_one(database_url: str) -> None:
    s = fresh_settings(database_url, "stepwise")
    assert migration_ids() == migrate(s)
    assert [] == migrate(s)
    assert migration_ids()[-1:] == rollback(s)
    with psycopg.connect(database_url) as conn:
        st = state(conn, "stepwise")
        assert (migration_ids()[:-1], migration_ids()[-1:]) == (st.applied, st.pending)
        with pytest.raises(SchemaBehind, match="run yoyo apply"):
            require_current(conn, "stepwise")


def test_rollback_of_a_schema_that_does_not_exist_creates_nothing(kindle_cli: KindleCli, database_url: str) -> None:
    # yoyo was pointed at it as for apply: the schema and yoyo's four tables were created to roll back nothing
    code, out, _ = kindle_cli("migrate", "--rollback", env={"KINDLE_SCHEMA": "never_created"})
    with psycopg.connect(database_url) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'never_created'").fetchone()
    assert (0, "rolled back 0 migration(s): -\n", (0,)) == (code, out, found)


def test_migrate_all_without_rollback_is_refused(kindle_cli: KindleCli) -> None:
    # it was ignored: `migrate --all`, meant as a rollback of everything, applied
    code, out, err = kindle_cli("migrate", "--all", env={"KINDLE_SCHEMA": "never_created"})
    assert (1, "", True) == (code, out, "--all goes with --rollback" in err)


def host_list(url: str) -> str:
    """`url` with its server named twice, as libpq's list of hosts to try (h:5432,h:5432)."""
    parts = urlsplit(url)
    if not parts.hostname:  # a unix socket: the list goes in the query
        host = parse_qs(parts.query)["host"][0]
        return url.replace(f"host={host}", f"host={host},{host}")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    server = hostport if parts.port else f"{hostport}:5432"
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{server},{server}"))


def test_migrate_takes_a_list_of_hosts(kindle_cli: KindleCli, database_url: str) -> None:
    # yoyo read the host and port with urlsplit: "Port could not be cast to integer value as '5432,h:5432'"
    fresh_settings(database_url, "host_list")
    code, out, err = kindle_cli("migrate", env={"DATABASE_URL": host_list(database_url), "KINDLE_SCHEMA": "host_list"})
    assert (0, f"applied {len(migration_ids())} migration(s): {', '.join(migration_ids())}\n") == (code, out), err


@pytest.mark.parametrize("query", ["password=a+b", "options=-c%20search_path%3Dx+y"])
def test_yoyo_reads_the_parameters_libpq_reads(database_url: str, query: str) -> None:
    # yoyo reads the query with parse_qsl, which takes a + for a space: a password a+b became "a b"
    url = f"{database_url}{'&' if '?' in database_url else '?'}{query}"
    with psycopg.connect(database_url) as conn:
        parsed = parse_uri(yoyo_url(Settings(database_url=url), conn))
    assert conninfo_to_dict(url) == {k: v for k, v in parsed.args.items() if k != "schema"}


def test_two_appliers_at_once_apply_once(database_url: str) -> None:
    s = fresh_settings(database_url, "racing")
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate(s))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert ([], sorted([[], migration_ids()])) == (errors, sorted(results))


HOLD_LOCK = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("SELECT pg_advisory_lock(hashtext('kindle_store.migrate:' || %s))", [sys.argv[2]])
conn.execute('CREATE SCHEMA IF NOT EXISTS "%s"' % sys.argv[2])
conn.execute('CREATE TABLE IF NOT EXISTS "%s".yoyo_lock (locked INT DEFAULT 1, ctime TIMESTAMP, pid INT NOT NULL, '
             'PRIMARY KEY (locked))' % sys.argv[2])
conn.execute('INSERT INTO "%s".yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)' % sys.argv[2])
print("locked", flush=True)
time.sleep(120)
"""


def test_killed_applier_leaves_no_lock_behind(database_url: str) -> None:
    s = fresh_settings(database_url, "killed")
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, database_url, "killed"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and "locked\n" == proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert migration_ids() == migrate(s)
