"""The slot repository and DbVncManager on real PostgreSQL: exact dicts, the SQL port formula, the trigger, races."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.errors import UniqueViolation

from kindle_store._vnc_db import ASSIGN_ATTEMPTS, DbVncManager
from kindle_store.errors import InvalidVncFile
from kindle_store.profiles import same_json
from kindle_store.settings import Settings
from kindle_store.store import Store
from kindle_store.vnc import VncInstance, VncInstances
from kindle_store.vnc_manager import VNCInstanceManager, new_instance, ports_for


@pytest.fixture
def repo(store: Store) -> VncInstances:
    return VncInstances(store.schema)


@pytest.fixture
def vnc(store: Store) -> DbVncManager:
    return DbVncManager(store)


def slot(n: int, email: str | None = None, **changes: Any) -> dict[str, Any]:
    """Instance n as the application writes it, with `changes`."""
    return {**new_instance(n, email), **changes}


def put(store: Store, repo: VncInstances, *docs: dict[str, Any]) -> None:
    with store.connection() as conn:
        repo.upsert(conn, [VncInstance.from_dict(d) for d in docs])


def profile(store: Store, email: str) -> dict[str, Any] | None:
    with store.connection() as conn:
        p = store.profiles.get(conn, email)
    return None if p is None else p.to_dict()


def version(store: Store, email: str) -> int:
    with store.connection() as conn:
        p = store.profiles.get(conn, email)
    assert p is not None
    return int(p.version)


def register(store: Store, *emails: str) -> None:
    with store.connection() as conn:
        for e in emails:
            store.profiles.register(conn, e, "AVD")


# -- the port formula: SQL and Python agree ----------------------------------------------------------------


def test_sql_port_formula_matches_ports_for(store: Store, repo: VncInstances) -> None:
    with store.connection() as conn:
        assert {n: ports_for(n) for n in range(1, 65)} == repo.port_formula(conn, 1, 64)


def test_new_slot_is_new_instance(vnc: DbVncManager) -> None:
    for i in range(6):
        vnc.assign_instance_to_profile(f"u{i}@x.com")
    assert [new_instance(n, f"u{n - 1}@x.com") for n in range(1, 7)] == vnc.get_all_instances()


# -- the instance dict: exact both ways ----------------------------------------------------------------------

DICTS = {
    "assigned": slot(1, "a@x", emulator_id="emulator-5554", appium_pid=4242, appium_running=True,
                     appium_last_health_check=1718031234.5678911),
    "free": slot(2),
    "int-health-check": slot(3, appium_last_health_check=1718000000),
    "empty-string-free": slot(4, ""),
    "old-format": {k: v for k, v in slot(5, "c@x").items() if "system" not in k and "driver" not in k
                   and "mjpeg" not in k and "health" not in k},
    "only-id": {"id": 6},
    "null-ports": slot(7, vnc_port=None, display=None, appium_running=None),
    "unknown-keys": {**slot(8, "d@x"), "notes": {"n": 1e16, "list": [1, 2.5, None], "s": "é"}, "z": None},
}


@pytest.mark.parametrize("doc", DICTS.values(), ids=DICTS.keys())
def test_from_dict_to_dict_is_exact(doc: dict[str, Any]) -> None:
    assert same_json(doc, VncInstance.from_dict(doc).to_dict())


@pytest.mark.parametrize("doc", DICTS.values(), ids=DICTS.keys())
def test_database_gives_the_dict_back_exactly(store: Store, repo: VncInstances, doc: dict[str, Any]) -> None:
    put(store, repo, doc)
    with store.connection() as conn:
        (back,) = repo.all(conn)
    assert same_json(doc, back.to_dict())


def test_health_check_float_is_bit_identical(store: Store, repo: VncInstances) -> None:
    value = 1718031234.5678911
    put(store, repo, slot(1, appium_last_health_check=value))
    with store.connection() as conn:
        (back,) = repo.all(conn)
    assert struct.pack("<d", value) == struct.pack("<d", back.to_dict()["appium_last_health_check"])


def test_health_check_is_a_timestamptz_too(store: Store, repo: VncInstances) -> None:
    put(store, repo, slot(1, appium_last_health_check=1718031234.5))
    with store.connection() as conn:
        (back,) = repo.all(conn)
    assert datetime(2024, 6, 10, 14, 53, 54, 500000, tzinfo=UTC) == back.appium_last_health_check_at


BAD = {
    "string-port": ({"id": 1, "vnc_port": "5901"},
                    r"x \(id 1\): vnc_port must be a 32-bit integer or null, got string"),
    "bool-id": ({"id": True}, r"x: id must be a 32-bit integer, got boolean"),
    "no-id": ({"display": 1}, r'x: the key "id" is missing'),
    "float-pid": ({"id": 1, "appium_pid": 12.0}, r"appium_pid must be a 32-bit integer or null, got float"),
    "string-running": ({"id": 1, "appium_running": "yes"}, r"appium_running must be a boolean or null"),
    "string-health": ({"id": 1, "appium_last_health_check": "now"}, r"appium_last_health_check must be Unix"),
    "int-emulator": ({"id": 1, "emulator_id": 5554}, r"emulator_id must be a string or null, got integer"),
    "huge-port": ({"id": 1, "display": 2**31}, r"display must be a 32-bit integer"),
    "nul": ({"id": 1, "assigned_profile": "a\x00b"}, r"assigned_profile: a NUL character cannot be stored"),
    "not-object": ([1], r"x: expected an object, got array"),
}


@pytest.mark.parametrize(("doc", "message"), BAD.values(), ids=BAD.keys())
def test_from_dict_refuses_wrong_types(doc: Any, message: str) -> None:
    with pytest.raises(InvalidVncFile, match=message):
        VncInstance.from_dict(doc, "x")


# -- the database's own guarantees ----------------------------------------------------------------------------


def test_database_refuses_one_email_on_two_slots(store: Store, repo: VncInstances) -> None:
    put(store, repo, slot(1, "a@x"))
    with pytest.raises(UniqueViolation, match="vnc_instances_assigned_profile_key"):
        put(store, repo, slot(2, "A@X"))


@pytest.mark.parametrize("key", list(ports_for(1)))
def test_database_refuses_a_display_or_port_twice(store: Store, repo: VncInstances, key: str) -> None:
    put(store, repo, slot(1))
    with pytest.raises(UniqueViolation, match=f"vnc_instances_{key}_key"):
        put(store, repo, {**slot(2), key: ports_for(1)[key]})


def test_deleting_a_profile_releases_its_slot(store: Store, vnc: DbVncManager, repo: VncInstances) -> None:
    register(store, "Alice@Example.com")
    put(store, repo, slot(1, "alice@example.com", emulator_id="emulator-5554", appium_pid=7, appium_running=True,
                          appium_last_health_check=1.5))
    with store.connection() as conn:
        store.profiles.delete(conn, "ALICE@example.com")
    assert [slot(1, appium_last_health_check=1.5)] == vnc.get_all_instances()


def test_deleting_profiles_leaves_other_slots(store: Store, vnc: DbVncManager) -> None:
    register(store, "a@x", "b@x", "c@x")
    for e in ("a@x", "b@x", "c@x", "ghost@x"):
        vnc.assign_instance_to_profile(e)
    with store.connection() as conn:
        conn.execute(sql.SQL("DELETE FROM {}.users WHERE email <> 'b@x'").format(
            sql.Identifier(store.schema)))
    assert [None, "b@x", None, "ghost@x"] == [i["assigned_profile"] for i in vnc.get_all_instances()]


# -- DbVncManager ----------------------------------------------------------------------------------------------


def test_release_makes_old_format_keys_present(store: Store, repo: VncInstances, vnc: DbVncManager) -> None:
    put(store, repo, {"id": 1, "display": 1, "assigned_profile": "a@x"})
    vnc.release_instance_from_profile("a@x")
    expected = {"id": 1, "display": 1, "emulator_id": None, "assigned_profile": None, "appium_pid": None,
                "appium_running": False}
    assert same_json(expected, vnc.get_all_instances()[0])


def test_assign_takes_a_slot_freed_by_empty_string(store: Store, repo: VncInstances, vnc: DbVncManager) -> None:
    put(store, repo, slot(1, ""))
    assert slot(1, "a@x") == vnc.assign_instance_to_profile("a@x")


def test_reset_appium_states_writes_only_changed_slots(store: Store, repo: VncInstances, vnc: DbVncManager) -> None:
    put(store, repo, slot(1, appium_running=True), slot(2))
    with store.connection() as conn:
        assert 1 == repo.reset_appium_states(conn)


def test_close_leaves_a_borrowed_store_open(store: Store) -> None:
    DbVncManager(store).close()
    assert [] == DbVncManager(store).get_all_instances()


# -- races, staged with a second connection --------------------------------------------------------------------


@pytest.fixture
def other(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A second session, for holding locks."""
    with psycopg.connect(settings.database_url) as conn:
        yield conn


def test_assign_skips_a_free_slot_being_taken(store: Store, vnc: DbVncManager, repo: VncInstances,
                                              other: psycopg.Connection[Any]) -> None:
    put(store, repo, slot(1), slot(2))
    other.execute(sql.SQL("SELECT * FROM {}.vnc_instances WHERE id = 1 FOR UPDATE").format(
        sql.Identifier(store.schema)))
    assert 2 == vnc.assign_instance_to_profile("a@x")["id"]  # type: ignore[index]


def test_assign_requested_slot_taken_meanwhile_is_none(store: Store, vnc: DbVncManager,
                                                       other: psycopg.Connection[Any]) -> None:
    vnc.assign_instance_to_profile("a@x")
    vnc.release_instance_from_profile("a@x")
    VncInstances(store.schema).assign(other, "b@x", 1)  # other's transaction: slot 1 locked, not committed
    threading.Timer(0.2, other.commit).start()
    got = vnc.assign_instance_to_profile("c@x", 1)
    assert (None, "b@x") == (got, vnc.get_all_instances()[0]["assigned_profile"])


def test_assign_waits_for_a_slot_being_created(store: Store, vnc: DbVncManager,
                                               other: psycopg.Connection[Any]) -> None:
    """Another transaction holds the slot-creation lock: the new slot comes once it is done, with the next id."""
    mine = VncInstances(store.schema)
    mine.assign(other, "first@x", wait_for_lock=True)  # other's transaction: slot 1, lock held until commit
    committing = threading.Event()

    def commit() -> None:
        committing.set()
        other.commit()

    threading.Timer(0.3, commit).start()
    got = vnc.assign_instance_to_profile("second@x")
    assert (slot(2, "second@x"), True) == (got, committing.is_set())  # it returned only after the commit began


def test_assign_takes_a_free_slot_another_transaction_gives_back(store: Store, vnc: DbVncManager, repo: VncInstances,
                                                                other: psycopg.Connection[Any]) -> None:
    """Slot 1 is being taken by a transaction that rolls back (the loser of a race for one email, a dry-run
    import): the lowest free slot is still 1, so no slot 2 is created."""
    put(store, repo, slot(1))
    repo.assign(other, "a@x")  # other's transaction: slot 1 locked, not committed
    threading.Timer(0.3, other.rollback).start()
    got = vnc.assign_instance_to_profile("b@x")
    assert (slot(1, "b@x"), [1]) == (got, [i["id"] for i in vnc.get_all_instances()])


def test_assign_retries_a_unique_violation(vnc: DbVncManager, monkeypatch: pytest.MonkeyPatch) -> None:
    real = VncInstances.assign
    calls: list[bool] = []

    def flaky(self: VncInstances, conn: Any, email: str, instance_id: int | None = None, *,
              wait_for_lock: bool = False) -> VncInstance | None:
        calls.append(wait_for_lock)
        if len(calls) == 1:
            raise UniqueViolation("injected")
        return real(self, conn, email, instance_id, wait_for_lock=wait_for_lock)

    monkeypatch.setattr(VncInstances, "assign", flaky)
    assert (slot(1, "a@x"), [False, True]) == (vnc.assign_instance_to_profile("a@x"), calls)


def test_assign_gives_up_after_bounded_attempts(vnc: DbVncManager, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def always(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise UniqueViolation("injected")

    monkeypatch.setattr(VncInstances, "assign", always)
    with pytest.raises(UniqueViolation):
        vnc.assign_instance_to_profile("a@x")
    assert ASSIGN_ATTEMPTS == len(calls)


# -- was_running_at_restart: one statement each, the profile's users.json rendering exact ---------------------


def test_mark_running_renders_true_and_bumps_version(store: Store, vnc: DbVncManager) -> None:
    register(store, "Alice@x")
    vnc.mark_running_for_deployment("alice@X")
    assert ({"email": "Alice@x", "avd_name": "AVD", "was_running_at_restart": True}, 2) == (
        profile(store, "alice@x"), version(store, "alice@x"))


def test_mark_not_running_renders_null(store: Store, vnc: DbVncManager) -> None:
    register(store, "a@x")
    vnc.mark_running_for_deployment("a@x")
    vnc.mark_running_for_deployment("a@x", should_restart=False)
    assert ({"email": "a@x", "avd_name": "AVD", "was_running_at_restart": None}, 3) == (
        profile(store, "a@x"), version(store, "a@x"))


def test_mark_running_again_changes_nothing(store: Store, vnc: DbVncManager) -> None:
    register(store, "a@x")
    vnc.mark_running_for_deployment("a@x")
    assert vnc.mark_running_for_deployment("a@x") is True
    assert 2 == version(store, "a@x")


def test_running_at_restart_lists_stored_spellings(store: Store, vnc: DbVncManager) -> None:
    register(store, "B@x", "a@x", "c@x")
    for e in ("b@x", "A@X"):
        vnc.mark_running_for_deployment(e)
    assert ["B@x", "a@x"] == vnc.get_running_at_restart()


def test_clear_flags_bumps_only_marked_profiles(store: Store, vnc: DbVncManager) -> None:
    register(store, "a@x", "b@x")
    vnc.mark_running_for_deployment("a@x")
    vnc.clear_running_at_restart_flags()
    assert ({"email": "a@x", "avd_name": "AVD", "was_running_at_restart": None}, 3, 1) == (
        profile(store, "a@x"), version(store, "a@x"), version(store, "b@x"))


# -- get_instance ---------------------------------------------------------------------------------------------


def test_get_instance_picks_the_database(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "true")
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KINDLE_SCHEMA", settings.schema)
    VNCInstanceManager.reset_instance()
    try:
        manager = VNCInstanceManager.get_instance()
        assert (DbVncManager, slot(1, "a@x")) == (type(manager), manager.assign_instance_to_profile("a@x"))
    finally:
        VNCInstanceManager.reset_instance()
