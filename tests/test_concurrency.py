"""8 setters and 8 editors on one profile, 100 writes each: nothing lost, version counts every write."""

from __future__ import annotations

import dataclasses
import multiprocessing
from typing import Any

import pytest
from _workers import hammer_repository, repository_process, run_threads

from kindle_store.settings import Settings
from kindle_store.store import Store

N = 100


def check(store: Any, workers: int, n: int) -> None:
    """workers/2 setters and workers/2 editors each made n writes."""
    with store.connection() as conn:
        p = store.profiles.get(conn, "hot@x")
    expected = {f"w{w}_k{k}": n - 10 + k for w in range(0, workers, 2) for k in range(10)}
    assert (workers // 2 * n, expected, 1 + workers * n) == (p.extra["counter"], p.preferences, p.version)


def test_threads_lose_nothing(settings: Settings, store: Any) -> None:
    with Store(dataclasses.replace(settings, max_size=16)) as big:
        with big.connection() as conn:
            big.profiles.register(conn, "hot@x", "avd")
        run_threads(hammer_repository, [(big, "hot@x", w, N) for w in range(16)])
    check(store, 16, N)


@pytest.mark.slow
def test_processes_lose_nothing(settings: Settings, store: Any) -> None:
    with store.connection() as conn:
        store.profiles.register(conn, "hot@x", "avd")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=repository_process,
                         args=(settings, "hot@x", p * 4, 4, N))
             for p in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [0, 0, 0, 0] == [p.exitcode for p in procs]
    check(store, 16, N)
