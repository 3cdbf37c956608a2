"""Work done by the threads and processes of the concurrency proofs (importable, so spawn can run it)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from kindle_store.settings import Settings
from kindle_store.store import Store


def hammer_repository(store: Store, email: str, worker: int, n: int) -> None:
    """Even workers: n set calls on their own keys; odd workers: n edit blocks incrementing the counter."""
    for i in range(n):
        if worker % 2 == 0:
            with store.autocommit() as conn:
                store.profiles.set_field(conn, email, f"w{worker}_k{i % 10}", i, section="preferences")
        else:
            with store.connection() as conn, store.profiles.edit(conn, email) as doc:
                doc["counter"] = doc.get("counter", 0) + 1


def repository_process(settings: Settings, email: str, first_worker: int, threads: int, n: int) -> None:
    """One process: its own pool, `threads` threads each running hammer_repository."""
    with Store(dataclasses.replace(settings, max_size=threads)) as store:
        ts = [threading.Thread(target=hammer_repository, args=(store, email, first_worker + t, n))
              for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def run_threads(target: Any, args_for: list[tuple[Any, ...]]) -> None:
    ts = [threading.Thread(target=target, args=a) for a in args_for]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
