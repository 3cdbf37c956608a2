"""The test-server chooser never hangs on a missing or silent Docker engine: it falls back in milliseconds."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from _servers import docker_answers


def test_no_docker_socket_is_detected_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    started = time.monotonic()
    assert (False, True) == (docker_answers(), time.monotonic() - started < 0.5)


def test_a_silent_docker_socket_times_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)  # accepts, never answers: a hung engine
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    started = time.monotonic()
    try:
        assert (False, True) == (docker_answers(timeout=0.2), time.monotonic() - started < 2)
    finally:
        server.close()


def test_an_answering_engine_is_recognised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import threading

    path = tmp_path / "docker.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(64)
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nOK")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        assert docker_answers(timeout=1.0) is True
    finally:
        server.close()
