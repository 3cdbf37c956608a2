"""The test-server chooser never hangs on a missing or silent Docker engine: it answers False and falls back."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _servers import docker_answers

HANG_S = 30.0  # a bound so that a probe that would wait forever fails the test instead of hanging the session


def returns(call: Callable[[], Any]) -> Any:
    """call()'s result, run in a thread; the test fails if it is still waiting after HANG_S (it would hang)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"still waiting after {HANG_S:g} s"
    assert out, "the call raised instead of answering"
    return out[0]


def test_no_docker_socket_is_detected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert returns(docker_answers) is False


def test_a_silent_docker_socket_times_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)  # accepts, never answers: a hung engine
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        assert returns(lambda: docker_answers(timeout=0.2)) is False  # without its timeout, it would wait forever
    finally:
        server.close()


def test_an_answering_engine_is_recognised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
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
