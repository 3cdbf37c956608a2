"""An import killed midway leaves the database exactly as it was: one transaction, never committed. Killed with
SIGKILL twice: while its COPY streams the profiles in, and while its last COPY runs (the preferences: every other
row written, nothing committed)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from kindle_store._avd_db import DbProfileManager
from kindle_store.store import Store
from kindle_store.users_file import import_file

PROFILES = 50_000
PRELOADED = 1_000  # the first profiles of the big file, stored before with other values: it would update them


def profile(i: int, tag: str) -> tuple[str, dict[str, Any]]:
    email = f"user{i}@example.com"
    return email, {
        "email": email, "avd_name": f"AVD_{i}_{tag}", "last_used": 1_700_000_000 + i,
        "last_used_date": "2023-11-14T22:13:20.123456", "auth_date": "2024-01-01T00:00:00", "auth_failed_date": None,
        "styles_updated": True, "vnc_instance": i % 100,
        "emulator_settings": {"hw_overlays_disabled": True, "memory_optimization_timestamp": 1_700_000_000},
        "device_identifiers": {"hw.wifi.mac": "00:11:22:33:44:55", "ro.serialno": f"SER{i}"},
        "library_settings": {"view_type": "list", "group_by_series": False},
        "reading_settings": {"theme": "dark", "font_size": "12"},
        "preferences": {"k": i, "tag": tag},
    }


def users_json(n: int, tag: str) -> bytes:
    return orjson.dumps(dict(profile(i, tag) for i in range(n)))


#: when to kill: while the COPY streams the profiles in, or while the last COPY runs (every other row written,
#: nothing committed; copy_preferences in sql/import.sql)
KILL_DURING = {"copy": r"^\s*copy\M", "last-copy": r"^\s*copy\s+\S*user_preferences"}


def import_in_flight(admin: psycopg.Connection[Any], dbname: str, app_name: str, process: subprocess.Popen[bytes],
                     statement: str, timeout: float = 90.0) -> int:
    """Wait until the import has COPYed at least half the profiles in and runs `statement` (a regular expression),
    all in one transaction; the pid of its backend. Fails if the import commits before that (its xid changes)."""
    deadline = time.monotonic() + timeout
    xids: set[str] = set()
    copied = 0
    while True:
        row = admin.execute(
            "SELECT a.pid, a.backend_xid::text, a.query ~* %s, coalesce(p.tuples_processed, 0)"
            "  FROM pg_stat_activity a LEFT JOIN pg_stat_progress_copy p ON p.pid = a.pid"
            " WHERE a.application_name = %s AND a.datname = %s AND a.state = 'active'"
            "   AND a.backend_xid IS NOT NULL", [statement, app_name, dbname]).fetchone()
        if row is not None:
            xids.add(row[1])
            copied = max(copied, row[3])
            assert len(xids) == 1, "the import committed part of its work: a second transaction began"
            if row[2] and copied >= PROFILES // 2:
                return int(row[0])
        assert process.poll() is None, "the import ended before it could be killed"
        assert time.monotonic() < deadline, "the import never reached the statement"
        time.sleep(0.002)


@pytest.mark.parametrize("during", KILL_DURING)
def test_import_killed_midway_changes_nothing(during: str, store: Store, admin: psycopg.Connection[Any], dbname: str,
                                              app_name: str, app_env: dict[str, str], db_state: Callable[[], Any],
                                              tmp_path: Path) -> None:
    small, big = tmp_path / "small.json", tmp_path / "users.json"
    small.write_bytes(users_json(PRELOADED, "old"))
    import_file(store, small, dry_run=False, backup=False, out=io.StringIO(), err=io.StringIO())
    big.write_bytes(users_json(PROFILES, "new"))
    before = db_state()

    process = subprocess.Popen([sys.executable, "-m", "kindle_store", "import-json", str(big), "--no-backup"],
                               env={**os.environ, **app_env}, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid = import_in_flight(admin, dbname, app_name, process, KILL_DURING[during])
        process.send_signal(signal.SIGKILL)
        assert -signal.SIGKILL == process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    deadline = time.monotonic() + 30
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is not None:
        assert time.monotonic() < deadline, "the killed import's session never ended"
        time.sleep(0.02)

    assert before == db_state()  # nothing of it: not one profile, not one version bump
    manager = DbProfileManager(store)  # and no lock left behind
    assert manager.set_user_field("user0@example.com", "after", True)
