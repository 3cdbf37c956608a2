"""Secrets: the password of DATABASE_URL appears in no log record, exception, repr or CLI output.

One sweep: successful and failing library calls and CLI commands with a password in the URL, every log record at
DEBUG, every exception with its whole chain. On the TCP server the URL names a role created with that password;
elsewhere (embedded socket, PgBouncer) trust authentication ignores it, which changes nothing for the sweep.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from _helpers import KindleCli
from psycopg import sql

from kindle_store._avd_db import DbProfileManager
from kindle_store.errors import ConfigurationError, ConnectFailed, ConnectionLost, PoolTimeout, StatementTimeout
from kindle_store.settings import Settings
from kindle_store.store import Store

SECRET = f"S3cr3t-{uuid.uuid4().hex[:12]}"
PASSWORD = f"{SECRET}@:/?#%'\""  # characters a URL must quote, so both spellings are swept
SPELLINGS = [SECRET, PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)]


def with_password(url: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    _, _, hostport = parts.netloc.rpartition("@")
    name = user or parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{name}:{quote(PASSWORD, safe='')}@{hostport}"))


@pytest.fixture
def secret_urls(settings: Settings, database_url: str, dbname: str, admin: psycopg.Connection[Any],
                pooled: bool) -> Iterator[tuple[str, str]]:
    """(the app's URL, a direct URL), both with the password; on TCP without a pooler, as a role of its own."""
    tcp = bool(urlsplit(database_url).hostname)
    if pooled or not tcp:
        yield with_password(settings.database_url), with_password(database_url)
        return
    role = f"kindle_rel_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
    names = {"s": sql.Identifier(settings.schema), "r": sql.Identifier(role), "d": sql.Identifier(dbname)}
    for grant in ("GRANT CREATE ON DATABASE {d} TO {r}", "GRANT ALL ON SCHEMA {s} TO {r}",
                  "GRANT ALL ON ALL TABLES IN SCHEMA {s} TO {r}", "GRANT ALL ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
                  "GRANT EXECUTE ON ALL ROUTINES IN SCHEMA {s} TO {r}"):
        admin.execute(sql.SQL(grant).format(**names))
    try:
        url = with_password(database_url, role)
        yield url, url
    finally:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def caught(fn: Any, *expected: type[BaseException]) -> str:
    """Run fn(), which must raise one of `expected`; the whole traceback text (every chained exception)."""
    with pytest.raises(expected) as info:
        fn()
    return "".join(traceback.format_exception(info.value)) + repr(info.value)


def test_password_appears_nowhere(settings: Settings, secret_urls: tuple[str, str], app_env: dict[str, str],
                                  kindle_cli: KindleCli, caplog: pytest.LogCaptureFixture,
                                  capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    app_url, direct_url = secret_urls
    app = dataclasses.replace(settings, database_url=app_url)
    unreachable = with_password("postgresql://postgres@127.0.0.1:1/kindle")
    texts: list[str] = []

    # the library, working
    with Store(dataclasses.replace(app, min_size=1, max_size=1, timeout=0.3)) as mine:
        manager = DbProfileManager(mine)
        assert manager.register_profile("a@x", "avd")
        texts += [repr(app), str(app), repr(mine), app.masked_url, repr(manager.get_all_profiles())]
        # ... and failing: a lost connection, a pool timeout, a statement timeout, configuration errors
        real = manager.profiles.register

        def dies(conn: psycopg.Connection[Any], *args: Any) -> Any:
            real(conn, *args)
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        monkeypatch.setattr(manager.profiles, "register", dies)
        texts.append(caught(lambda: manager.register_profile("b@x", "avd"), ConnectionLost))
        with mine.connection():
            texts.append(caught(lambda: manager.get_profile_for_email("a@x"), PoolTimeout))
    with Store(Settings(database_url=direct_url, schema=app.schema, statement_timeout_ms=50)) as slow:
        texts.append(caught(lambda: slow.call(lambda c: c.execute("SELECT pg_sleep(2)"), idempotent=True),
                            StatementTimeout))
    texts.append(caught(lambda: Settings.from_env(env={"DATABASE_URL": unreachable.replace("postgresql", "mysql")}),
                        ConfigurationError))
    texts.append(caught(lambda: Settings.from_env(env={"DATABASE_URL": unreachable, "KINDLE_SCHEMA": "A"}),
                        ConfigurationError))
    down = Store(Settings(database_url=unreachable, timeout=0.5))
    try:
        texts.append(caught(down.open, ConnectFailed))  # at once, not after the pool timeout
    finally:
        down.close()

    # the CLI, in process: failing and succeeding commands
    for argv, url in ((["doctor"], app_url), (["stats"], app_url), (["stats", "--json"], app_url),
                      (["export-json"], app_url), (["migrate"], direct_url)):
        code, out, err = kindle_cli(*argv, env={"DATABASE_URL": url})
        texts += [out, err]
        assert 0 == code, err
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a@x": {"styles_updated": "yes"}}')
    for argv, url in ((["doctor"], unreachable), (["import-json", str(bad)], app_url)):
        code, out, err = kindle_cli(*argv, env={"DATABASE_URL": url})
        texts += [out, err]
        assert 1 == code

    # the CLI as a user runs it: a real process, its stdout and stderr
    done = subprocess.run([sys.executable, "-m", "kindle_store", "doctor"], capture_output=True, text=True,
                          env={**os.environ, **app_env, "DATABASE_URL": unreachable}, cwd=tmp_path, timeout=60)
    texts += [done.stdout, done.stderr]
    assert 1 == done.returncode and "Traceback" not in done.stderr

    captured = capfd.readouterr()
    texts += [captured.out, captured.err, *(r.getMessage() for r in caplog.records),
              *(logging.Formatter().format(r) for r in caplog.records)]
    leaks = [t for t in texts if any(s in t for s in SPELLINGS)]
    assert [] == leaks
    assert len(caplog.records) > 5 and sum("***" in t for t in texts) >= 5  # the sweep saw URLs, masked


@pytest.mark.parametrize("url", [f"postgresql://postgres:{quote(PASSWORD, safe='')}@[::1/kindle",
                                 f"postgresql://postgres:[{SECRET}]@localhost/kindle"],
                         ids=["unclosed-ipv6-bracket", "bracket-in-password"])
@pytest.mark.parametrize("argv", [["doctor"], ["migrate"], ["stats"], ["backup", "-o", "x.dump"]], ids=" ".join)
def test_a_url_urlsplit_refuses_is_one_line_without_the_password(kindle_cli: KindleCli, url: str,
                                                                  argv: list[str]) -> None:
    # scrubbing the error parsed the URL again: a ValueError, its traceback quoting the URL
    code, out, err = kindle_cli(*argv, env={"DATABASE_URL": url})
    assert (1, "", 1, []) == (code, out, err.count("\n"), [s for s in SPELLINGS if s in out + err])


@pytest.mark.parametrize("url", [f"postgresql://u:{SECRET}%zz@127.0.0.1:1/kindle",
                                 f"postgresql://u:{SECRET} x@127.0.0.1:1/kindle"], ids=["bad-escape", "space"])
def test_a_url_libpq_cannot_parse_is_refused_before_a_pool_logs_it(url: str) -> None:
    # the pool logged libpq's complaint at every try, password quoted: "invalid percent-encoded token: "S3cr3t-…%zz""
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not a URL libpq accepts") as info:
        Settings(database_url=url)
    assert [] == [s for s in SPELLINGS if s in str(info.value)]
