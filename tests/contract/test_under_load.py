"""Both backends under load: 4 processes x 4 threads, each 50 edit_profile increments and 50 set_user_field
writes of its own key on one profile -> nothing lost; on PostgreSQL, version counts every write."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _helpers import BACKENDS
from test_json_locking import EMAIL, ITERATIONS, PROCESSES, THREADS, make_users, run_everywhere

from kindle_store._avd_json import JsonProfileManager
from kindle_store.avd import AVDProfileManager
from kindle_store.settings import Settings

pytestmark = pytest.mark.slow


def _db_manager(settings: Settings) -> AVDProfileManager:
    from kindle_store._avd_db import DbProfileManager
    from kindle_store.store import Store

    return DbProfileManager(Store(dataclasses.replace(settings, min_size=1, max_size=1)), owns_store=True)


@pytest.fixture(params=BACKENDS)
def new_manager(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], AVDProfileManager]:
    """Builds a manager on storage holding one profile, EMAIL, with counter 0 (one per thread)."""
    if request.param == "json":
        users = make_users(tmp_path)
        return lambda: JsonProfileManager(users)
    settings: Settings = request.getfixturevalue("settings")
    request.getfixturevalue("store")  # tables are emptied after the test
    with _db_manager(settings) as m:
        m.register_profile(EMAIL, "AVD")
        m.set_user_field(EMAIL, "counter", 0)
    return lambda: _db_manager(settings)


def version_of(manager: AVDProfileManager) -> int | None:
    store = getattr(manager, "store", None)
    if store is None:
        return None
    with store.autocommit() as conn:
        return int(store.profiles.get(conn, EMAIL).version)


def test_nothing_is_lost_under_load(new_manager: Callable[[], AVDProfileManager]) -> None:
    with new_manager() as m:
        before = version_of(m)

    def work(p: int, t: int) -> None:
        with new_manager() as manager:
            for i in range(ITERATIONS):
                with manager.edit_profile(EMAIL) as profile:
                    profile["counter"] += 1
                manager.set_user_field(EMAIL, f"key_{p}_{t}", i)

    assert [0] * PROCESSES == run_everywhere(work)
    with new_manager() as m:
        profile: dict[str, Any] = m.get_profile_for_email(EMAIL) or {}
        after = version_of(m)
    writes = 2 * PROCESSES * THREADS * ITERATIONS
    expected_keys = {f"key_{p}_{t}": ITERATIONS - 1 for p in range(PROCESSES) for t in range(THREADS)}
    assert (PROCESSES * THREADS * ITERATIONS, expected_keys) == (
        profile["counter"], {k: v for k, v in profile.items() if k.startswith("key_")})
    if before is not None:
        assert before + writes == after


def test_manager_used_before_fork_works_in_parent_and_child(new_manager: Callable[[], AVDProfileManager]) -> None:
    from test_json_locking import _in_child, _wait_child

    with new_manager() as manager:
        manager.set_user_field(EMAIL, "before_fork", True)

        def child() -> None:
            for i in range(20):
                manager.set_user_field(EMAIL, "child", i)
            with manager.edit_profile(EMAIL) as profile:
                profile["counter"] += 1

        pid = _in_child(child)
        for i in range(20):
            manager.set_user_field(EMAIL, "parent", i)
        with manager.edit_profile(EMAIL) as profile:
            profile["counter"] += 1
        code = _wait_child(pid)
        profile = manager.get_profile_for_email(EMAIL) or {}
    assert (0, 19, 19, 2) == (code, profile["child"], profile["parent"], profile["counter"])
