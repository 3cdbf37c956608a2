"""Operator commands against real PostgreSQL: stats, doctor, backup and restore, grant; no password printed."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import os
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from _helpers import KindleCli
from psycopg import sql

from kindle_store import cli
from kindle_store.backup import BackupFailed, find_tool
from kindle_store.migrate import migration_ids
from kindle_store.monitoring import EXPECTED
from kindle_store.settings import Settings, split_password
from kindle_store.store import Store

ROOT = Path(__file__).resolve().parent.parent
# A password with a percent-encoded character: neither its URL spelling nor its decoded one may be printed.
PASSWORD_RAW = f"Pw%21{uuid.uuid4().hex[:8]}"
PASSWORD = PASSWORD_RAW.replace("%21", "!")


def with_parts(url: str, *, user: str | None = None, password: str | None = None, db: str | None = None,
               host: str | None = None) -> str:
    """`url` with its user, password, database or host[:port] replaced (a unix-socket URL keeps its host=)."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    name = user or userinfo.partition(":")[0]
    netloc = f"{name}:{password}@" if password is not None else f"{name}@"
    query = parts.query
    if host is not None:
        hostport, query = host, ""
    path = f"/{db}" if db is not None else parts.path
    return urlunsplit(parts._replace(netloc=netloc + hostport, path=path, query=query))


def test_migrate_without_database_url_reports_what_it_applied_to_the_embedded_server(
        kindle_cli: KindleCli, tmp_path: Path) -> None:
    """The embedded path starts the server and (for every other command) migrates it; `migrate` itself must
    not, or it would report a fresh server as already up to date and re-apply before rolling back."""
    pgdata = tmp_path / "pgdata"
    embedded = {"DATABASE_URL": None, "KINDLE_EMBEDDED_PGDATA": str(pgdata), "KINDLE_SCHEMA": "kindle_cli_embedded"}
    ids = migration_ids()
    try:
        runs = [kindle_cli(*argv, env=embedded)
                for argv in (["migrate"], ["migrate"], ["migrate", "--rollback"], ["migrate", "--rollback"])]
    finally:
        from kindle_store.embedded import start_embedded

        start_embedded(pgdata, cleanup_mode="delete")[0].cleanup()
    announced = f"kindle-store: DATABASE_URL not set; using embedded PostgreSQL in {pgdata}\n"
    assert [
        (0, f"applied {len(ids)} migration(s): {', '.join(ids)}\n", announced),
        (0, "applied 0 migration(s): already up to date\n", announced),
        (0, f"rolled back 1 migration(s): {ids[-1]}\n", announced),
        (0, f"rolled back 1 migration(s): {ids[-2]}\n", announced),
    ] == runs


def test_just_with_another_dotenv_file_reads_that_file_only(database_url: str, tmp_path: Path) -> None:
    """`just --dotenv-path .env.staging doctor`: what .env.staging leaves out stays unset, not taken from .env."""
    (tmp_path / ".env").write_text("KINDLE_SCHEMA=from_dev_env\n")
    (tmp_path / ".env.staging").write_text(f"DATABASE_URL={database_url}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINDLE_", "DATABASE_URL"))}
    done = subprocess.run(["just", "--justfile", str(ROOT / "justfile"), "--working-directory", str(tmp_path),
                           "--dotenv-path", str(tmp_path / ".env.staging"), "doctor"],
                          capture_output=True, text=True, env=env, timeout=60)
    connect_line = done.stdout.splitlines()[0]
    assert connect_line.startswith("ok") and connect_line.endswith("(schema kindle_automator)"), done.stdout


def test_just_passes_a_path_with_a_space_as_one_argument(app_env: dict[str, str], tmp_path: Path) -> None:
    # the recipes pasted {{ARGS}} into the shell line: `-o my users.json` reached the CLI as three words
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KINDLE_", "DATABASE_URL"))}
    done = subprocess.run(["just", "--justfile", str(ROOT / "justfile"), "--working-directory", str(tmp_path),
                           "export-json", "-o", "my users.json"],
                          capture_output=True, text=True, env={**env, **app_env}, timeout=60)
    assert (0, True) == (done.returncode, (tmp_path / "my users.json").is_file()), done.stderr


def stats_json(kindle_cli: KindleCli) -> dict[str, Any]:
    code, out, err = kindle_cli("stats", "--json")
    assert (0, "") == (code, err)
    data: dict[str, Any] = json.loads(out)
    return data


def flush_stats(conn: psycopg.Connection[Any]) -> None:
    """Make this backend report its table statistics when its transaction ends (PostgreSQL 15+)."""
    if conn.info.server_version >= 150000:
        conn.execute("SELECT pg_stat_force_next_flush()")


def docs(store: Store) -> list[dict[str, Any]]:
    with store.connection() as c:
        return [p.to_dict() for p in store.profiles.all(c)]


# -- stats ------------------------------------------------------------------------------------------------------


def test_stats_json_has_every_section(kindle_cli: KindleCli) -> None:
    data = stats_json(kindle_cli)
    assert {"connections", "active_queries", "tables", "indexes", "pool"} <= set(data)
    assert {"pool_min", "pool_max", "pool_size"} <= set(data["pool"])


def test_stats_on_a_schema_that_does_not_exist_is_an_error_naming_it(kindle_cli: KindleCli) -> None:
    code, out, err = kindle_cli("stats", env={"KINDLE_SCHEMA": "kindle_no_such_schema"})
    assert code == 1
    assert out == ""
    assert "'kindle_no_such_schema' does not exist" in err and "KINDLE_SCHEMA" in err


def test_stats_json_counts_inserts(kindle_cli: KindleCli, store: Store) -> None:
    def inserted() -> int:
        return int(next(t["n_tup_ins"] for t in stats_json(kindle_cli)["tables"] if t["table"] == "users"))

    before = inserted()
    with store.connection() as c:
        for i in range(3):
            store.profiles.register(c, f"stats{i}@x", "avd")
        flush_stats(c)
    deadline = time.monotonic() + 5
    while inserted() < before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert inserted() >= before + 3


def test_stats_json_lists_the_schema_indexes(kindle_cli: KindleCli) -> None:
    names = {i["index"] for i in stats_json(kindle_cli)["indexes"]}
    assert {"users_email_lower_key", "users_pkey"} <= names


def test_stats_flags_a_never_scanned_index(kindle_cli: KindleCli, conn: psycopg.Connection[Any],
                                           store: Store) -> None:
    conn.execute(sql.SQL("CREATE INDEX ops_probe_idx ON {} (timezone)").format(sql.Identifier(store.schema, "users")))
    conn.commit()
    try:
        code, out, _ = kindle_cli("stats")
        line = next(ln for ln in out.splitlines() if "ops_probe_idx" in ln)
    finally:
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(store.schema, "ops_probe_idx")))
    assert (0, "UNUSED") == (code, line.split()[-1])


def test_stats_screen_has_every_heading_and_table(kindle_cli: KindleCli, settings: Settings) -> None:
    code, out, _ = kindle_cli("stats")
    headings = ["Connections to this database, by state", "Active queries", f"Tables in {settings.schema}",
                f"Indexes in {settings.schema}", "Pool of this process"]
    assert (0, []) == (code, [h for h in headings if h not in out])
    assert re.search(r"^\s+users\s+\d+\s+\d+\s+\d+", out, re.M)


def test_stats_shows_a_running_query(kindle_cli: KindleCli, database_url: str) -> None:
    probe = psycopg.connect(database_url, autocommit=True, application_name="ops_probe")
    pid = probe.info.backend_pid

    def sleep() -> None:
        with contextlib.suppress(psycopg.errors.QueryCanceled):
            probe.execute("SELECT 'ops-probe', pg_sleep(30)")

    sleeper = threading.Thread(target=sleep)
    sleeper.start()
    try:
        deadline = time.monotonic() + 5
        while True:
            found = [q for q in stats_json(kindle_cli)["active_queries"] if q["pid"] == pid]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        probe.cancel_safe()
        sleeper.join()
        probe.close()
    assert [("ops_probe", True)] == [(q["application"], "ops-probe" in q["query"]) for q in found]


# -- doctor -----------------------------------------------------------------------------------------------------


def test_doctor_all_ok(kindle_cli: KindleCli) -> None:
    code, out, _ = kindle_cli("doctor")
    assert (0, []) == (code, [ln for ln in out.splitlines() if ln.startswith("FAIL")])


@pytest.mark.parametrize("line", [
    r"ok\s+server\s+PostgreSQL \d+", r"ok\s+migrations\s+\d+ applied, up to date", r"ok\s+table users$",
    r"ok\s+view profile_rows$", r"ok\s+index users_email_lower_key$",
], ids=["server", "migrations", "table", "view", "index"])
def test_doctor_reports(kindle_cli: KindleCli, line: str) -> None:
    assert re.search(line, kindle_cli("doctor")[1], re.M)


def test_doctor_fails_on_a_missing_index(kindle_cli: KindleCli, conn: psycopg.Connection[Any],
                                         store: Store) -> None:
    (definition,) = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
                                 [store.schema, "users_last_used_idx"]).fetchone() or ("",)
    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(store.schema, "users_last_used_idx")))
    conn.commit()
    try:
        code, out, _ = kindle_cli("doctor")
    finally:
        conn.execute(definition)
    assert (1, True) == (code, bool(re.search(r"^FAIL\s+index users_last_used_idx\s+missing", out, re.M)))


def test_doctor_fails_on_a_schema_behind(kindle_cli: KindleCli) -> None:
    code, out, _ = kindle_cli("doctor", env={"KINDLE_SCHEMA": "ops_never_migrated"})
    pending = len(migration_ids())
    assert (1, True) == (code, f"0 applied, {pending} pending" in out)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


FAILURES = {
    "unreachable": (lambda url: with_parts(url, password=PASSWORD_RAW, host=f"127.0.0.1:{closed_port()}"),
                    r"FAIL\s+connect\s+host unreachable: .*Connection refused"),
    # The test servers trust every local login, so a wrong password passes: a missing role is what the
    # server's authentication step rejects here.
    "auth-missing-role": (lambda url: with_parts(url, user="ops_no_such_role", password=PASSWORD_RAW),
                          r'FAIL\s+connect\s+authentication failed: .*role "ops_no_such_role" does not exist'),
    "missing-database": (lambda url: with_parts(url, password=PASSWORD_RAW, db="ops_no_such_db"),
                         r'FAIL\s+connect\s+database missing: .*database "ops_no_such_db" does not exist'),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_doctor_names_the_connection_failure(kindle_cli: KindleCli, database_url: str, case: str) -> None:
    make_url, message = FAILURES[case]
    code, out, _ = kindle_cli("doctor", env={"DATABASE_URL": make_url(database_url)})
    assert (1, True) == (code, bool(re.search(message, out)))


@pytest.mark.parametrize("case", list(FAILURES))
def test_doctor_failure_masks_the_password(kindle_cli: KindleCli, database_url: str, case: str) -> None:
    code, out, err = kindle_cli("doctor", env={"DATABASE_URL": FAILURES[case][0](database_url)})
    assert (1, [], True) == (code, [p for p in (PASSWORD, PASSWORD_RAW) if p in out + err], ":***@" in out)


def test_every_migration_has_its_expected_objects_listed() -> None:
    assert [m for m in migration_ids() if m.split("_", 1)[0] not in EXPECTED] == []


# -- backup and restore ---------------------------------------------------------------------------------------------


def test_backup_writes_the_default_path(kindle_cli: KindleCli, settings: Settings, tmp_path: Path) -> None:
    code, out, _ = kindle_cli("backup")
    path = out.strip()
    assert re.fullmatch(rf"backups/kindle_{settings.schema}_\d{{8}}T\d{{6}}Z\.dump", path)
    assert (0, b"PGDMP") == (code, (tmp_path / path).read_bytes()[:5])


def test_a_taken_default_name_gets_a_suffix_even_if_the_clock_moved_on(
        kindle_cli: KindleCli, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = iter(range(10))  # every call of the default name is a new second
    monkeypatch.setattr("kindle_store.backup.default_backup_path",
                        lambda schema: Path("backups") / f"kindle_{schema}_{next(seconds)}.dump")
    taken = tmp_path / "backups" / f"kindle_{settings.schema}_0.dump"
    taken.parent.mkdir()
    taken.touch()
    code, out, _ = kindle_cli("backup")
    assert (0, f"backups/kindle_{settings.schema}_0_2.dump\n", b"") == (code, out, taken.read_bytes())


@pytest.fixture
def dump(kindle_cli: KindleCli, store: Store, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A backup of two profiles, then the data changed: (the dump, the profiles at backup time)."""
    with store.connection() as c:
        store.profiles.register(c, "Kept@x", "avd_1", vnc_instance=2)
        store.profiles.set_field(c, "Kept@x", "theme", "dark", section="reading_settings")
        store.profiles.set_field(c, "Kept@x", "langs", ["en", 1.5, None], section="preferences")
        store.profiles.register(c, "deleted@x", "avd_2")
    before = docs(store)
    path = tmp_path / "kindle.dump"
    assert (0, f"{path}\n", "") == kindle_cli("backup", "-o", str(path))
    with store.connection() as c:
        store.profiles.set_field(c, "Kept@x", "theme", "light", section="reading_settings")
        store.profiles.delete(c, "deleted@x")
        store.profiles.register(c, "new@x", "avd_3")
    return path, before


def test_restore_clean_brings_back_the_backup(kindle_cli: KindleCli, store: Store,
                                              dump: tuple[Path, list[dict[str, Any]]]) -> None:
    path, before = dump
    code, out, _ = kindle_cli("restore", str(path), "--clean")
    assert (0, f"restored {path} into schema {store.schema}: 2 profiles\n", before) == (code, out, docs(store))


def test_restore_refuses_a_schema_with_data(kindle_cli: KindleCli, store: Store,
                                            dump: tuple[Path, list[dict[str, Any]]]) -> None:
    after = docs(store)
    code, _, err = kindle_cli("restore", str(dump[0]))
    assert (1, True, after) == (code, "already holds data (in " in err and "--clean" in err, docs(store))


def test_restore_no_owner_onto_a_server_without_the_dumps_roles(kindle_cli: KindleCli, database_url: str,
                                                                tmp_path: Path) -> None:
    """A dump whose objects belong to a role the target lacks fails whole (nothing changed); --no-owner restores
    it owned by the user restoring, the grants to the missing roles left out."""
    tag = uuid.uuid4().hex[:8]
    schema, owner, app = f"kindle_ops_move_{tag}", f"kindle_ops_gone_{tag}", f"kindle_ops_gone_app_{tag}"
    env = {"KINDLE_SCHEMA": schema}
    users = sql.Identifier(schema, "users")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(app)))
        try:
            assert kindle_cli("migrate", env=env)[0] == 0
            conn.execute(sql.SQL("INSERT INTO {} (email) VALUES ('moved@x')").format(users))
            assert kindle_cli("grant", "--app-role", app, "--owner-role", owner, env=env)[0] == 0
            path = tmp_path / "move.dump"
            assert kindle_cli("backup", "-o", str(path), env=env)[0] == 0
            for role in (owner, app):  # as on a server that never had them
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("UPDATE {} SET avd_name = 'changed since'").format(users))

            code, _, err = kindle_cli("restore", str(path), "--clean", env=env)
            assert (1, True) == (code, f'role "{owner}" does not exist' in err)
            assert conn.execute(sql.SQL("SELECT avd_name FROM {}").format(users)).fetchall() == [("changed since",)]

            code, out, _ = kindle_cli("restore", str(path), "--clean", "--no-owner", env=env)
            assert (0, f"restored {path} into schema {schema}: 1 profiles\n") == (code, out)
            assert conn.execute(sql.SQL("SELECT avd_name FROM {}").format(users)).fetchall() == [(None,)]
            owners = conn.execute("SELECT DISTINCT tableowner = current_user FROM pg_tables WHERE schemaname = %s",
                                  [schema]).fetchall()
            assert owners == [(True,)]
        finally:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            for role in (owner, app):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_restore_refuses_a_file_that_is_no_dump(kindle_cli: KindleCli, tmp_path: Path) -> None:
    (tmp_path / "x.dump").write_text("not a dump")
    code, _, err = kindle_cli("restore", str(tmp_path / "x.dump"))
    assert (1, True) == (code, "is not a dump pg_restore can read" in err)


def test_backup_of_a_missing_schema_is_a_clear_error(kindle_cli: KindleCli, tmp_path: Path) -> None:
    code, _, err = kindle_cli("backup", "-o", str(tmp_path / "x.dump"), env={"KINDLE_SCHEMA": "ops_never_migrated"})
    assert (1, True, []) == (code, "pg_dump failed: " in err and "no matching schemas" in err,
                             list(tmp_path.iterdir()))


def test_pg_dump_chosen_can_dump_the_server(conn: psycopg.Connection[Any]) -> None:
    major = conn.info.server_version // 10000
    assert find_tool("pg_dump", major).major >= major


def test_no_pg_dump_for_a_future_server_is_a_clear_error() -> None:
    with pytest.raises(BackupFailed, match="no pg_dump of version 99 or newer"):
        find_tool("pg_dump", 99)


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u:p%40ss@h:5/d?sslmode=require", ("postgresql://u@h:5/d?sslmode=require", "p@ss")),
    ("postgresql://u@h/d?password=s3&host=/tmp", ("postgresql://u@h/d?host=/tmp", "s3")),
    ("postgresql://u:@/d?host=/tmp/x", ("postgresql://u@/d?host=/tmp/x", None)),
    ("postgresql://u@h/d?options=-c%20a%3Db+c&password=p%2Bq", ("postgresql://u@h/d?options=-c%20a%3Db+c", "p+q")),
], ids=["userinfo", "query", "empty", "query-kept-as-written"])
def test_split_password_takes_it_out_of_the_url(url: str, expected: tuple[str, str | None]) -> None:
    assert expected == split_password(url)


def test_no_command_prints_the_password(kindle_cli: KindleCli, database_url: str, store: Store) -> None:
    url = with_parts(database_url, password=PASSWORD_RAW)  # the test servers trust local logins
    with store.connection() as c:
        store.profiles.register(c, "sweep@x", "avd")
    runs = [kindle_cli(*argv, env={"DATABASE_URL": url}) for argv in (
        ["stats"], ["stats", "--json"], ["doctor"], ["backup", "-o", "sweep.dump"], ["restore", "sweep.dump"],
        ["restore", "sweep.dump", "--clean"], ["restore", "missing.dump"])]
    runs += [kindle_cli("doctor", env={"DATABASE_URL": make(url)}) for make, _ in FAILURES.values()]
    printed = "\n".join(out + err for _, out, err in runs)
    codes = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1]  # the restore without --clean, the missing file, doctor's failures
    assert ([], codes) == ([p for p in (PASSWORD, PASSWORD_RAW) if p in printed], [r[0] for r in runs])


def test_backup_into_a_directory_names_the_directory(kindle_cli: KindleCli, tmp_path: Path) -> None:
    (tmp_path / "dumps").mkdir()
    code, _, err = kindle_cli("backup", "-o", "dumps")
    assert (1, "kindle-store: error: dumps: is a directory (give the dump file's path)\n", []) == (
        code, err, list((tmp_path / "dumps").iterdir()))


# -- what the commands read: the URL, the env file, the KINDLE_* settings, the embedded server --------------------


@pytest.mark.parametrize("argv", [["stats"], ["export-json"], ["export-vnc"], ["migrate"]], ids=" ".join)
def test_a_missing_database_is_one_line_naming_it(kindle_cli: KindleCli, database_url: str,
                                                  argv: list[str]) -> None:
    # the pool retried for KINDLE_POOL_TIMEOUT, logging each try, then said "pool initialization incomplete"
    url = with_parts(database_url, password=PASSWORD_RAW, db="ops_no_such_db")
    code, out, err = kindle_cli(*argv, env={"DATABASE_URL": url, "KINDLE_POOL_TIMEOUT": "0.5"})
    assert (1, "", 1, True) == (code, out, err.count("\n"),
                                err.startswith("kindle-store: error: database missing: ") and ":***@" in err)


def socket_style(url: str) -> str:
    """`url` as postgresql:///db?host=...: no authority at all, everything in the query."""
    parts = urlsplit(url)
    query = [parts.query] if parts.query else []
    if parts.hostname:
        query += [f"host={parts.hostname}", f"port={parts.port or 5432}"]
    if parts.username:
        query.append(f"user={parts.username}")
    if parts.password:
        query.append(f"password={parts.password}")
    return f"postgresql:///{parts.path.lstrip('/')}?{'&'.join(query)}"


@pytest.mark.parametrize("spell", [
    lambda url: url.replace("postgresql://", "postgresql+psycopg://"),
    lambda url: f" {url}\n",
    socket_style,
], ids=["psycopg-scheme", "surrounding-space", "empty-authority"])
def test_doctor_works_and_shows_the_url_given(kindle_cli: KindleCli, database_url: str, spell: Any) -> None:
    url = spell(database_url)
    code, out, _ = kindle_cli("doctor", env={"DATABASE_URL": url})
    shown = out.splitlines()[0].split(None, 2)[2].rpartition(" (schema ")[0]  # ok  connect  URL (schema x)
    expected = url.strip().replace("+psycopg", "")
    if (password := urlsplit(database_url).password) is not None:  # an empty one is masked too
        expected = expected.replace(f":{password}@", ":***@").replace(f"password={password}", "password=***")
    assert (0, expected) == (code, shown)


def test_a_missing_env_file_given_is_an_error(kindle_cli: KindleCli) -> None:
    # it was skipped without a word: with DATABASE_URL in it, the command ran against the embedded server
    assert (1, "", "kindle-store: error: nope.env: No such file or directory\n") == kindle_cli(
        "--env-file", "nope.env", "doctor")


@pytest.mark.parametrize(("content", "message"), [
    (f"KINDLE_SCHEMA=x\nDATABASE_URL: postgresql://u:{PASSWORD_RAW}@h/d\n".encode(), "bad.env:2: not a KEY=value line"),
    (b"KINDLE_SCHEMA=caf\xe9\n", "bad.env: not UTF-8 text (byte 17)"),
], ids=["not-key-value", "not-utf8"])
def test_an_env_file_that_cannot_be_read_is_an_error_naming_the_place(kindle_cli: KindleCli, tmp_path: Path,
                                                                     content: bytes, message: str) -> None:
    (tmp_path / "bad.env").write_bytes(content)
    assert (1, "", f"kindle-store: error: {message}\n") == kindle_cli("--env-file", "bad.env", "doctor")


@pytest.mark.parametrize(("name", "value"), [
    ("KINDLE_POOL_TIMEOUT", "inf"), ("KINDLE_POOL_TIMEOUT", "nan"), ("KINDLE_POOL_TIMEOUT", "-1"),
    ("KINDLE_STATEMENT_TIMEOUT_MS", "-5"), ("KINDLE_STATEMENT_TIMEOUT_MS", str(2**31)), ("KINDLE_POOL_MIN", "-1"),
    ("KINDLE_POOL_MAX", "0"),
])
def test_an_out_of_range_setting_is_refused_naming_it(kindle_cli: KindleCli, name: str, value: str) -> None:
    code, out, err = kindle_cli("stats", env={"KINDLE_POOL_TIMEOUT": "1", name: value})
    assert (1, "", 1, True) == (code, out, err.count("\n"), err.startswith(f"kindle-store: error: {name}="))


def test_export_vnc_from_a_schema_never_migrated_says_so(kindle_cli: KindleCli) -> None:
    code, out, err = kindle_cli("export-vnc", env={"KINDLE_SCHEMA": "ops_never_migrated"})
    assert (1, "", True) == (code, out, "schema 'ops_never_migrated' is behind (0 applied" in err)


def test_the_embedded_server_leaves_a_directory_not_its_own_alone(kindle_cli: KindleCli, tmp_path: Path) -> None:
    # the wheel took it over (chown to its own user, as root) and ran initdb in it, which failed with a traceback
    (tmp_path / "notes.txt").write_text("mine")
    owner = tmp_path.stat().st_uid
    code, _, err = kindle_cli("stats", env={"DATABASE_URL": None, "KINDLE_EMBEDDED_PGDATA": str(tmp_path)})
    assert (1, ["notes.txt"], owner, True) == (code, [p.name for p in tmp_path.iterdir()], tmp_path.stat().st_uid,
                                               f"error: {tmp_path} is not a PostgreSQL data directory" in err)


def test_an_empty_embedded_pgdata_means_the_default(kindle_cli: KindleCli, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")  # the working directory: "" was taken to mean it
    env = {"DATABASE_URL": None, "KINDLE_EMBEDDED_PGDATA": "", "KINDLE_SCHEMA": "kindle_cli_embedded"}
    try:
        code, _, err = kindle_cli("migrate", "--rollback", env=env)
    finally:
        from kindle_store.embedded import start_embedded

        if (tmp_path / ".kindle_store").exists():
            start_embedded(tmp_path / ".kindle_store/pgdata", cleanup_mode="delete")[0].cleanup()
    assert (0, "kindle-store: DATABASE_URL not set; using embedded PostgreSQL in .kindle_store/pgdata\n") == (code, err)


class ClosedPipe(io.StringIO):
    """A stdout whose reader has gone (`kindle-store stats | head -1`)."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stdout_ends_the_command_quietly(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for k, v in app_env.items():
        monkeypatch.setenv(k, v)
    err = io.StringIO()
    assert (141, "") == (cli.main(["stats"], out=ClosedPipe(), err=err), err.getvalue())


# -- grant: the least-privilege application role -----------------------------------------------------------------


@pytest.fixture(scope="module")
def roles(database_url: str, settings: Settings) -> Iterator[tuple[str, str]]:
    """(application role, owner role), unique to this session: set up by `grant`, dropped at the end."""
    tag = uuid.uuid4().hex[:8]
    app, owner = f"kindle_ops_app_{tag}", f"kindle_ops_owner_{tag}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(app)))
    from kindle_store.ops import grant

    try:
        grant(settings, app_role=app, owner_role=owner, out=io.StringIO())
        yield app, owner
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for role in (owner, app):
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                    if role == owner:
                        conn.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def app_url(roles: tuple[str, str], database_url: str) -> str:
    return with_parts(database_url, user=roles[0])


@pytest.fixture
def app_conn(app_url: str, store: Store) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the application role (autocommit; the tables are emptied after the test)."""
    with psycopg.connect(app_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def app_store(app_url: str, settings: Settings) -> Iterator[Store]:
    with Store(Settings(database_url=app_url, schema=settings.schema, max_size=2)) as s:
        yield s


def test_grant_prints_what_it_granted(kindle_cli: KindleCli, roles: tuple[str, str],
                                      settings: Settings) -> None:
    app, owner = roles
    code, out, _ = kindle_cli("grant", "--app-role", app, "--owner-role", owner)
    expected = [f"{owner} owns schema {settings.schema} and its", f"{app}: USAGE on schema {settings.schema}",
                f"{app}: SELECT, INSERT, UPDATE, DELETE on ", "users", f"{app}: USAGE, SELECT on 1 sequences"]
    assert (0, []) == (code, [e for e in expected if e not in out])


def test_grant_twice_changes_no_ownership(kindle_cli: KindleCli, roles: tuple[str, str]) -> None:
    code, out, _ = kindle_cli("grant", "--app-role", roles[0], "--owner-role", roles[1])
    assert (0, True) == (code, "(0 ownership changes made now)" in out)


@pytest.mark.parametrize("name", ["Bad", "pg_app", "public", "a-b", ""], ids=repr)
def test_grant_refuses_a_bad_role_name(kindle_cli: KindleCli, name: str) -> None:
    code, _, err = kindle_cli("grant", "--app-role", name)
    assert (1, True) == (code, "is not allowed" in err)


def test_grant_refuses_the_user_running_it_as_app_role(kindle_cli: KindleCli,
                                                       conn: psycopg.Connection[Any]) -> None:
    (me,) = conn.execute("SELECT current_user").fetchone() or ("",)
    code, _, err = kindle_cli("grant", "--app-role", me)
    assert (1, True) == (code, "must differ from the owner role and from the user running grant" in err)


def test_grant_refuses_a_superuser_app_role(kindle_cli: KindleCli, database_url: str) -> None:
    superuser = f"kindle_ops_su_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER NOLOGIN").format(sql.Identifier(superuser)))
        try:
            code, _, err = kindle_cli("grant", "--app-role", superuser)
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(superuser)))
    assert (1, True) == (code, "is a superuser: it could DROP any table" in err)


def test_grant_refuses_an_app_role_that_is_a_member_of_the_owner(kindle_cli: KindleCli, database_url: str,
                                                                 roles: tuple[str, str]) -> None:
    member = f"kindle_ops_member_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} IN ROLE {}").format(sql.Identifier(member), sql.Identifier(roles[1])))
        try:
            code, _, err = kindle_cli("grant", "--app-role", member, "--owner-role", roles[1])
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(member)))
    assert (1, True) == (code, f"is a member of the owner role {roles[1]}" in err)


def test_app_store_logs_in_as_the_app_role(app_store: Store, roles: tuple[str, str]) -> None:
    with app_store.connection() as c:
        assert (roles[0],) == c.execute("SELECT current_user").fetchone()


def test_app_role_reads_and_writes_rows(app_conn: psycopg.Connection[Any], settings: Settings) -> None:
    users = sql.Identifier(settings.schema, "users")
    app_conn.execute(sql.SQL("INSERT INTO {} (email) VALUES ('row@x')").format(users))
    app_conn.execute(sql.SQL("UPDATE {} SET avd_name = 'a' WHERE email = 'row@x'").format(users))
    row = app_conn.execute(sql.SQL("SELECT avd_name FROM {} WHERE email = 'row@x'").format(users)).fetchone()
    deleted = app_conn.execute(sql.SQL("DELETE FROM {} WHERE email = 'row@x'").format(users)).rowcount
    assert (("a",), 1) == (row, deleted)


def test_app_role_runs_the_repository(app_store: Store, store: Store) -> None:
    app_store.require_current_schema()
    with app_store.connection() as c:
        app_store.profiles.register(c, "App@x", "avd", vnc_instance=1)
        app_store.profiles.set_field(c, "app@x", "font_size", "12", section="reading_settings")
        app_store.profiles.set_field(c, "app@x", "k", {"n": 1}, section="preferences")
        with app_store.profiles.edit(c, "app@x") as doc:
            doc["emulator_settings"] = {"sleep_disabled": True}
    assert [{"email": "App@x", "avd_name": "avd", "vnc_instance": 1, "reading_settings": {"font_size": "12"},
             "preferences": {"k": {"n": 1}}, "emulator_settings": {"sleep_disabled": True}}] == docs(store)


@pytest.mark.parametrize("statement", [
    "DROP TABLE {schema}.users CASCADE", "ALTER TABLE {schema}.users ADD COLUMN x int",
    "ALTER TABLE {schema}.users DROP COLUMN avd_name", "TRUNCATE {schema}.users CASCADE",
    "CREATE TABLE {schema}.x (id int)", "DROP SCHEMA {schema} CASCADE",
    "DELETE FROM {schema}._yoyo_migration",
], ids=["drop-table", "alter-add", "alter-drop", "truncate", "create", "drop-schema", "yoyo-delete"])
def test_app_role_cannot_change_the_schema(app_conn: psycopg.Connection[Any], settings: Settings,
                                           statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_conn.execute(sql.SQL(statement).format(schema=sql.Identifier(settings.schema)))  # type: ignore[arg-type]


def test_tables_the_owner_creates_later_are_granted(app_conn: psycopg.Connection[Any], roles: tuple[str, str],
                                                    conn: psycopg.Connection[Any], settings: Settings) -> None:
    table = sql.Identifier(settings.schema, "ops_future")
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(roles[1])))
    conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(table))
    conn.commit()
    try:
        inserted = app_conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table)).rowcount
    finally:
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    assert 1 == inserted


# -- the manager contract suite, once more, as the application role ----------------------------------------------
# The contract tests of tests/contract are collected a second time here, with `avd` and `vnc` built on a Store
# that logs in as the role `grant` set up: what it granted suffices for the whole application API.


def _contract_tests() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for module in ("test_avd_contract", "test_vnc_contract"):
        for name, obj in vars(importlib.import_module(f"contract.{module}")).items():
            if name.startswith("test_") and {"avd", "vnc"} & set(inspect.signature(obj).parameters):
                found[f"test_as_app_role__{name[5:]}"] = obj
    return found


globals().update(_contract_tests())


@pytest.fixture
def avd(app_store: Store, store: Store) -> Any:
    """The PostgreSQL profile manager, logged in as the application role (tables emptied after the test)."""
    from kindle_store._avd_db import DbProfileManager

    return DbProfileManager(app_store)


@pytest.fixture
def vnc(app_store: Store, store: Store) -> Any:
    """The PostgreSQL VNC manager, logged in as the application role."""
    from kindle_store._vnc_db import DbVncManager

    return DbVncManager(app_store)


@pytest.fixture
def alice(avd: Any) -> str:
    assert avd.register_profile("Alice@Example.com", "AVD_alice")
    return "Alice@Example.com"
