"""The JSON backend: forks, and what a lock-free writer loses (the shared load proof is test_under_load.py)."""


from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kindle_store._avd_json import JsonProfileManager
from kindle_store.avd import AVDProfileManager
from kindle_store.vnc_manager import VNCInstanceManager

pytestmark = pytest.mark.slow

FORK = multiprocessing.get_context("fork")
PROCESSES, THREADS, ITERATIONS = 4, 4, 50
EMAIL = "load@x.com"


def run_everywhere(work: Callable[[int, int], None]) -> list[int | None]:
    """Run work(process, thread) in PROCESSES forked processes x THREADS threads; their exit codes."""

    def process(p: int) -> None:
        with ThreadPoolExecutor(THREADS) as pool:
            for f in [pool.submit(work, p, t) for t in range(THREADS)]:
                f.result()  # an exception in any thread fails the process

    procs = [FORK.Process(target=process, args=(p,)) for p in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    return [proc.exitcode for proc in procs]


def make_users(directory: Path) -> Path:
    """users.json holding one profile, EMAIL, with counter 0."""
    path = directory / "users.json"
    path.write_text(json.dumps({EMAIL: {"email": EMAIL, "avd_name": "AVD", "counter": 0}}, indent=2))
    return path


@pytest.fixture
def users(tmp_path: Path) -> Path:
    """users.json holding one profile, EMAIL, with counter 0."""
    return make_users(tmp_path)


def naive_increment(path: Path, p: int, t: int) -> None:
    """What the old app did: load, modify, save, no lock (the save is even atomic, and still not enough)."""
    doc = json.loads(path.read_text())
    doc[EMAIL]["counter"] += 1
    time.sleep(0.001)  # the work an app does between load and save widens the window
    tmp = path.with_name(f".{path.name}.{p}.{t}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def test_naive_load_modify_save_loses_updates(users: Path) -> None:
    def work(p: int, t: int) -> None:
        for _ in range(ITERATIONS):
            naive_increment(users, p, t)

    assert [0] * PROCESSES == run_everywhere(work)
    lost = PROCESSES * THREADS * ITERATIONS - json.loads(users.read_text())[EMAIL]["counter"]
    assert lost > 0


def _wait_child(pid: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9


def _in_child(body: Callable[[], None]) -> int:
    """Fork; the child runs body and exits 0 (1 on error); the parent gets the child's pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def increment(manager: JsonProfileManager, times: int) -> None:
    for _ in range(times):
        with manager.edit_profile(EMAIL) as profile:
            profile["counter"] += 1


def test_fork_while_another_thread_holds_the_lock(users: Path) -> None:
    manager = JsonProfileManager(users)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with manager.edit_profile(EMAIL) as profile:
            profile["counter"] += 1
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(10)
    pid = _in_child(lambda: increment(manager, 1))  # waits for the parent's lock, not for its own copy
    release.set()
    holder.join()
    assert 0 == _wait_child(pid)
    assert 2 == manager.get_user_field(EMAIL, "counter")


def test_child_forked_inside_an_update_does_not_write(users: Path) -> None:
    manager = JsonProfileManager(users)
    pid = -1
    try:
        with manager.edit_profile(EMAIL) as profile:
            pid = os.fork()
            if pid == 0:
                time.sleep(0.2)  # leave the block after the parent has written
            profile["counter"] = 99 if pid == 0 else 5
    except RuntimeError:
        if pid == 0:
            os._exit(3)  # refused to write: what we want
        raise
    finally:
        if pid == 0:
            os._exit(1)
    assert (3, 5) == (_wait_child(pid), manager.get_user_field(EMAIL, "counter"))


@pytest.mark.parametrize("manager_class", [AVDProfileManager, VNCInstanceManager], ids=["avd", "vnc"])
def test_get_instance_in_a_forked_child_is_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, manager_class: Any
) -> None:
    monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "false")
    monkeypatch.setenv("KINDLE_USERS_JSON", str(tmp_path / "users.json"))
    monkeypatch.setenv("KINDLE_VNC_MAP_JSON", str(tmp_path / "map.json"))
    manager_class.reset_instance()
    parent = manager_class.get_instance()

    def child() -> None:
        assert manager_class.get_instance() is not parent
        assert manager_class.get_instance() is manager_class.get_instance()

    pid = _in_child(child)
    assert (0, parent) == (_wait_child(pid), manager_class.get_instance())
    manager_class.reset_instance()
