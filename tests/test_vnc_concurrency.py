"""The concurrency proof, one body for both backends: 8 processes ask at once for slots for 64 new emails, each
email asked twice (by two different processes); then half are released and new requests reuse the lowest ids."""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import random
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from _helpers import BACKENDS

from kindle_store.settings import Settings
from kindle_store.vnc_manager import VNCInstanceManager, ports_for

PROCESSES = 8
EMAILS = [f"user{i:02d}@example.com" for i in range(64)]


def make_manager(backend: str, where: Settings | Path) -> VNCInstanceManager:
    """A manager of `backend` on the storage `where` names: the database's settings, or a directory."""
    if backend == "json":
        from kindle_store._vnc_json import JsonVncManager

        assert isinstance(where, Path)
        return JsonVncManager(where / "vnc_instance_map.json", where / "users.json")
    if backend == "db":
        from kindle_store._vnc_db import DbVncManager
        from kindle_store.store import Store

        assert isinstance(where, Settings)
        return DbVncManager(Store(dataclasses.replace(where, min_size=1, max_size=1)), owns_store=True)
    raise ValueError(f"unknown backend {backend!r}")


def assign_all(manager: VNCInstanceManager, emails: list[str]) -> list[tuple[str, int, dict[str, int]]]:
    """(email, slot id, display and ports) for each email, asked in turn."""
    got = []
    for email in emails:
        inst = manager.assign_instance_to_profile(email)
        assert inst is not None
        got.append((email, inst["id"], {k: inst[k] for k in ports_for(1)}))
    return got


def ask(backend: str, where: Settings | Path, first: list[str], second: list[str], start: Barrier,
        between: Barrier, results: Any) -> None:
    """One process with its own manager: the first round at the start line, the second once the parent says."""
    with make_manager(backend, where) as manager:
        manager.get_all_instances()  # connected before the start line
        start.wait(60)
        results.put(assign_all(manager, first))
        between.wait(120)  # the parent checks the first round and releases half meanwhile
        results.put(assign_all(manager, second))


class Processes:
    """PROCESSES spawned processes running `ask`, started at once; the parent collects each round's answers."""

    def __init__(self, backend: str, where: Settings | Path, first: list[list[str]], second: list[list[str]]):
        ctx = multiprocessing.get_context("spawn")
        self.between = ctx.Barrier(PROCESSES + 1)
        self.results = ctx.Queue()
        self.start = ctx.Barrier(PROCESSES)  # kept referenced: the children attach to it after start()
        self.procs = [ctx.Process(target=ask, args=(backend, where, a, b, self.start, self.between, self.results))
                      for a, b in zip(first, second, strict=True)]
        for p in self.procs:
            p.start()

    def round(self) -> list[tuple[str, int, dict[str, int]]]:
        """Every process's answers to the current round; AssertionError at once if a process failed."""
        answers: list[tuple[str, int, dict[str, int]]] = []
        deadline = time.monotonic() + 120
        for _ in self.procs:
            while True:
                failed = [p.exitcode for p in self.procs if p.exitcode not in (None, 0)]
                assert not failed and time.monotonic() < deadline, f"a process failed or hung: {failed}"
                try:
                    answers.extend(self.results.get(timeout=0.5))
                    break
                except queue.Empty:
                    pass
        return answers

    def next_round(self) -> None:
        self.between.wait(60)

    def finish(self) -> list[int | None]:
        """Exit codes (an aborted proof breaks the barrier so that no process waits on)."""
        self.between.abort()
        for p in self.procs:
            p.join(60)
        return [p.exitcode for p in self.procs]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Settings | Path]:
    """The backend's name and storage (the database's tables are emptied after the test)."""
    if request.param == "db":
        request.getfixturevalue("store")
        return "db", request.getfixturevalue("settings")
    return "json", tmp_path


@pytest.mark.slow
def test_many_processes_never_share_a_slot(backend: tuple[str, Settings | Path]) -> None:
    name, where = backend
    rng = random.Random(5)
    # email i goes to processes i % 8 and (i + 3) % 8: asked twice, by two different processes
    first: list[list[str]] = [[] for _ in range(PROCESSES)]
    for i, email in enumerate(EMAILS):
        first[i % PROCESSES].append(email)
        first[(i + 3) % PROCESSES].append(email)
    for emails in first:
        rng.shuffle(emails)
    newcomers = [f"new{i:02d}@example.com" for i in range(16)]
    procs = Processes(name, where, first, [newcomers[p::PROCESSES] for p in range(PROCESSES)])
    try:
        answers = procs.round()
        ids_of: dict[str, set[int]] = {}
        for email, n, ports in answers:
            ids_of.setdefault(email, set()).add(n)
            assert ports_for(n) == ports
        assert all(len(ids) == 1 for ids in ids_of.values())  # each email always got the same slot
        slots = {email: ids.pop() for email, ids in ids_of.items()}
        assert list(range(1, 65)) == sorted(slots.values())  # 64 slots, none shared

        with make_manager(name, where) as manager:
            assert {n: e for e, n in slots.items()} == {i["id"]: i["assigned_profile"]
                                                        for i in manager.get_all_instances()}
            released = sorted(slots[e] for e in EMAILS[::2])
            for email in EMAILS[::2]:
                assert manager.release_instance_from_profile(email)
        procs.next_round()
        # 16 newcomers at once take the 16 lowest free ids; no slot is created
        assert released[:16] == sorted(n for _, n, _ in procs.round())
    finally:
        codes = procs.finish()
    assert [0] * PROCESSES == codes

    with make_manager(name, where) as manager:
        late = manager.assign_instance_to_profile("late@example.com")
        assert (released[16], 64) == (late and late["id"], len(manager.get_all_instances()))
