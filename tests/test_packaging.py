"""A built wheel carries sql/ and migrations/ and works outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import kindle_store, kindle_store.queries as q, kindle_store.migrate as m
assert kindle_store.__file__.startswith(%r), kindle_store.__file__
print(sorted(q.ALL), m.migration_ids())
"""


def test_wheel_carries_sql_and_migrations(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, timeout=120)
    (wheel,) = tmp_path.glob("kindle_store-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"kindle_store/_data/sql/users.sql", "kindle_store/_data/migrations/0001_profiles.py"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", PROBE % str(site)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "'users'" in out and "0001_profiles" in out
