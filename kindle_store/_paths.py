"""Where the package's SQL files and migrations live: in the wheel, or beside the package in a checkout."""

from __future__ import annotations

from pathlib import Path

__all__ = ["MIGRATIONS_DIR", "SQL_DIR"]

_HERE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    packaged = _HERE / "_data" / name  # a built wheel carries them here
    return packaged if packaged.is_dir() else _HERE.parent / name


SQL_DIR = _data_dir("sql")
MIGRATIONS_DIR = _data_dir("migrations")
