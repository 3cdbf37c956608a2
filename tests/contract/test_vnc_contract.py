"""VNCInstanceManager, DESIGN section 5: every rule, against every backend (the `vnc` fixture)."""


from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kindle_store._vnc_json import JsonVncManager
from kindle_store.avd import AVDProfileManager
from kindle_store.errors import InvalidProfile
from kindle_store.vnc_manager import VNCInstanceManager, new_instance, ports_for

Vnc = VNCInstanceManager
Avd = AVDProfileManager


def ids_of(instances: list[dict[str, object]]) -> list[object]:
    return [i["id"] for i in instances]


def run_appium(vnc: Vnc, instance_id: int, pid: int = 4242) -> None:
    """Mark instance `instance_id` as running Appium with `pid`, as the app records it (the managers have no call
    for that): a branch per backend, here rather than a fixture so that tests/test_ops.py's rerun can call it."""
    if isinstance(vnc, JsonVncManager):
        with vnc.map.update() as doc:
            (inst,) = [i for i in doc["instances"] if i["id"] == instance_id]
            inst.update(appium_pid=pid, appium_running=True)
        return
    from kindle_store._vnc_db import DbVncManager

    assert isinstance(vnc, DbVncManager), f"no branch for {vnc!r}"
    with vnc.store.connection() as conn:
        (slot,) = [i for i in vnc.instances.all(conn) if i.id == instance_id]
        slot.appium_pid, slot.appium_running = pid, True
        vnc.instances.upsert(conn, [slot])


def put_instances(vnc: Vnc, *instances: dict[str, Any]) -> None:
    """Store these instance dicts as they are, as an import or another version of the app may have written them."""
    if isinstance(vnc, JsonVncManager):
        with vnc.map.update() as doc:
            doc["instances"].extend(instances)
        return
    from kindle_store._vnc_db import DbVncManager
    from kindle_store.vnc import VncInstance

    assert isinstance(vnc, DbVncManager), f"no branch for {vnc!r}"
    with vnc.store.connection() as conn:
        vnc.instances.upsert(conn, [VncInstance.from_dict(d) for d in instances])


# -- the port formula --------------------------------------------------------------------------------

PORTS = {
    1: {"display": 1, "vnc_port": 5901, "appium_port": 4724, "emulator_port": 5554,
        "appium_system_port": 8201, "appium_chromedriver_port": 9516, "appium_mjpeg_server_port": 7811},
    2: {"display": 2, "vnc_port": 5902, "appium_port": 4725, "emulator_port": 5556,
        "appium_system_port": 8202, "appium_chromedriver_port": 9517, "appium_mjpeg_server_port": 7812},
    10: {"display": 10, "vnc_port": 5910, "appium_port": 4733, "emulator_port": 5572,
         "appium_system_port": 8210, "appium_chromedriver_port": 9525, "appium_mjpeg_server_port": 7820},
}


@pytest.mark.parametrize(("n", "ports"), PORTS.items(), ids=[f"instance_{n}" for n in PORTS])
def test_ports_for(n: int, ports: dict[str, int]) -> None:
    assert ports == ports_for(n)


@pytest.mark.parametrize("n", [1, 2, 3], ids=["instance_1", "instance_2", "instance_3"])
def test_assigned_instance_uses_the_formula(vnc: Vnc, n: int) -> None:
    for i in range(n):
        inst = vnc.assign_instance_to_profile(f"u{i}@x.com")
    assert {"id": n, **ports_for(n)} == {k: inst[k] for k in ("id", *ports_for(n))}  # type: ignore[index]


# -- assign_instance_to_profile -------------------------------------------------------------------------


def test_first_assignment_is_a_complete_instance_1(vnc: Vnc) -> None:
    assert {
        "id": 1,
        "display": 1,
        "vnc_port": 5901,
        "appium_port": 4724,
        "emulator_port": 5554,
        "emulator_id": None,
        "assigned_profile": "a@x.com",
        "appium_pid": None,
        "appium_running": False,
        "appium_last_health_check": None,
        "appium_system_port": 8201,
        "appium_chromedriver_port": 9516,
        "appium_mjpeg_server_port": 7811,
    } == vnc.assign_instance_to_profile("a@x.com")


def test_assign_needs_no_profile(vnc: Vnc, avd: Avd) -> None:
    vnc.assign_instance_to_profile("ghost@x.com")
    assert ("ghost@x.com", None) == (
        vnc.get_all_instances()[0]["assigned_profile"],
        avd.get_profile_for_email("ghost@x.com"),
    )


def test_assign_twice_returns_the_same_instance(vnc: Vnc) -> None:
    first = vnc.assign_instance_to_profile("a@x.com")
    assert first == vnc.assign_instance_to_profile("a@x.com")


def test_assign_twice_creates_one_instance(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.assign_instance_to_profile("a@x.com")
    assert [1] == ids_of(vnc.get_all_instances())


def test_assign_matches_email_case_insensitively(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("Alice@Example.com")
    assert 1 == vnc.assign_instance_to_profile("alice@example.COM")["id"]  # type: ignore[index]


def test_assign_keeps_the_given_spelling(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("Alice@Example.com")
    assert "Alice@Example.com" == vnc.get_instance_for_profile("alice@example.com")["assigned_profile"]  # type: ignore[index]


def test_each_new_email_gets_the_next_id(vnc: Vnc) -> None:
    got = [vnc.assign_instance_to_profile(f"u{i}@x.com")["id"] for i in range(3)]  # type: ignore[index]
    assert [1, 2, 3] == got


def test_assign_reuses_the_lowest_free_instance(vnc: Vnc) -> None:
    for e in ("a@x.com", "b@x.com", "c@x.com"):
        vnc.assign_instance_to_profile(e)
    vnc.release_instance_from_profile("c@x.com")
    vnc.release_instance_from_profile("b@x.com")
    assert 2 == vnc.assign_instance_to_profile("d@x.com")["id"]  # type: ignore[index]


def test_assign_free_instance_creates_nothing(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.release_instance_from_profile("a@x.com")
    vnc.assign_instance_to_profile("b@x.com")
    assert [1] == ids_of(vnc.get_all_instances())


def test_assign_given_free_id(vnc: Vnc) -> None:
    for e in ("a@x.com", "b@x.com", "c@x.com"):
        vnc.assign_instance_to_profile(e)
    vnc.release_instance_from_profile("a@x.com")
    vnc.release_instance_from_profile("c@x.com")
    assert 3 == vnc.assign_instance_to_profile("d@x.com", instance_id=3)["id"]  # type: ignore[index]


def test_assign_given_taken_id_is_none(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert vnc.assign_instance_to_profile("b@x.com", instance_id=1) is None


def test_assign_given_taken_id_leaves_the_holder(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.assign_instance_to_profile("b@x.com", instance_id=1)
    assert ("a@x.com", None) == (
        vnc.get_all_instances()[0]["assigned_profile"],
        vnc.get_instance_for_profile("b@x.com"),
    )


def test_assign_given_unknown_id_is_none(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert vnc.assign_instance_to_profile("b@x.com", instance_id=99) is None


def test_assign_given_unknown_id_creates_nothing(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("b@x.com", instance_id=99)
    assert [] == vnc.get_all_instances()


def test_assign_given_id_returns_the_email_s_own_instance(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.assign_instance_to_profile("b@x.com")
    vnc.release_instance_from_profile("b@x.com")
    assert 1 == vnc.assign_instance_to_profile("a@x.com", instance_id=2)["id"]  # type: ignore[index]


def test_assign_when_all_taken_creates_highest_plus_one(vnc: Vnc) -> None:
    for e in ("a@x.com", "b@x.com"):
        vnc.assign_instance_to_profile(e)
    assert 3 == vnc.assign_instance_to_profile("c@x.com")["id"]  # type: ignore[index]


@pytest.mark.parametrize("instance_id", [True, 1.0, "1", 2**31, -(2**31) - 1], ids=repr)
def test_assign_an_id_no_instance_can_have_is_none(vnc: Vnc, instance_id: Any) -> None:
    put_instances(vnc, new_instance(1))
    assert vnc.assign_instance_to_profile("b@x.com", instance_id) is None


BAD_EMAILS = {"empty": "", "nul": "a\x00b@x.com", "int": 5, "none": None, "too-long": "x" * 1025 + "@x.com"}


@pytest.mark.parametrize("email", BAD_EMAILS.values(), ids=BAD_EMAILS.keys())
def test_assign_refuses_a_bad_email(vnc: Vnc, email: Any) -> None:
    with pytest.raises(InvalidProfile, match="email"):
        vnc.assign_instance_to_profile(email)


# -- release_instance_from_profile -------------------------------------------------------------------


def test_release_returns_true(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert vnc.release_instance_from_profile("a@x.com") is True


def test_release_unknown_email_returns_false(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert vnc.release_instance_from_profile("b@x.com") is False


def test_release_clears_assignment_emulator_and_appium(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.set_emulator_id("a@x.com", "emulator-5554")
    run_appium(vnc, 1)
    vnc.release_instance_from_profile("a@x.com")
    assert [new_instance(1)] == vnc.get_all_instances()


def test_release_keeps_the_instance(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.release_instance_from_profile("a@x.com")
    assert {"id": 1, **ports_for(1)} == {k: vnc.get_all_instances()[0][k] for k in ("id", *ports_for(1))}


def test_release_matches_email_case_insensitively(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert vnc.release_instance_from_profile("A@X.COM") is True


def test_released_email_has_no_instance(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.release_instance_from_profile("a@x.com")
    assert vnc.get_instance_for_profile("a@x.com") is None


# -- lookups ---------------------------------------------------------------------------------------------


def test_get_instance_for_profile(vnc: Vnc) -> None:
    assigned = vnc.assign_instance_to_profile("a@x.com")
    assert assigned == vnc.get_instance_for_profile("A@x.com")


def test_get_instance_for_unknown_profile_is_none(vnc: Vnc) -> None:
    assert vnc.get_instance_for_profile("a@x.com") is None


LOOKUPS = {
    "get_vnc_port": 5902,
    "get_appium_port": 4725,
    "get_x_display": 2,
}


@pytest.mark.parametrize(("method", "expected"), LOOKUPS.items(), ids=LOOKUPS.keys())
def test_lookup_of_instance_2(vnc: Vnc, method: str, expected: int) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.assign_instance_to_profile("b@x.com")
    assert expected == getattr(vnc, method)("B@x.com")


@pytest.mark.parametrize("method", [*LOOKUPS, "get_emulator_id"])
def test_lookup_for_unknown_email_is_none(vnc: Vnc, method: str) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert getattr(vnc, method)("b@x.com") is None


def test_get_x_display_is_an_int(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert int is type(vnc.get_x_display("a@x.com"))


def test_get_emulator_id_unset_is_none(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert vnc.get_emulator_id("a@x.com") is None


def test_set_emulator_id(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    assert vnc.set_emulator_id("A@x.com", "emulator-5554") is True
    assert "emulator-5554" == vnc.get_emulator_id("a@x.com")


def test_set_emulator_id_to_none(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.set_emulator_id("a@x.com", "emulator-5554")
    vnc.set_emulator_id("a@x.com", None)
    assert vnc.get_emulator_id("a@x.com") is None


def test_set_emulator_id_unknown_email_returns_false(vnc: Vnc) -> None:
    assert vnc.set_emulator_id("a@x.com", "emulator-5554") is False


def test_set_emulator_id_unknown_email_creates_nothing(vnc: Vnc) -> None:
    vnc.set_emulator_id("a@x.com", "emulator-5554")
    assert [] == vnc.get_all_instances()


@pytest.mark.parametrize("email", BAD_EMAILS.values(), ids=BAD_EMAILS.keys())
def test_lookups_of_a_bad_email_find_nothing(vnc: Vnc, email: Any) -> None:
    put_instances(vnc, new_instance(1, ""))  # "": how some writers said "free"
    assert (None, False, False, False) == (vnc.get_instance_for_profile(email),
                                           vnc.release_instance_from_profile(email),
                                           vnc.set_emulator_id(email, "emulator-5554"),
                                           vnc.mark_running_for_deployment(email))


@pytest.mark.parametrize("emulator_id", [5554, 5554.0, ["emulator-5554"]], ids=["int", "float", "list"])
def test_set_emulator_id_refuses_a_non_string(vnc: Vnc, emulator_id: Any) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    with pytest.raises(InvalidProfile, match="emulator_id must be a string or None"):
        vnc.set_emulator_id("a@x.com", emulator_id)


def test_get_all_instances_empty(vnc: Vnc) -> None:
    assert [] == vnc.get_all_instances()


def test_get_all_instances_by_id(vnc: Vnc) -> None:
    for e in ("a@x.com", "b@x.com", "c@x.com"):
        vnc.assign_instance_to_profile(e)
    vnc.release_instance_from_profile("b@x.com")
    assert [1, 2, 3] == ids_of(vnc.get_all_instances())


def test_get_assigned_instances(vnc: Vnc) -> None:
    for e in ("a@x.com", "b@x.com", "c@x.com"):
        vnc.assign_instance_to_profile(e)
    vnc.release_instance_from_profile("b@x.com")
    assert [new_instance(1, "a@x.com"), new_instance(3, "c@x.com")] == vnc.get_assigned_instances()


def test_get_assigned_instances_empty(vnc: Vnc) -> None:
    assert [] == vnc.get_assigned_instances()


def test_reset_appium_states_clears_appium(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    run_appium(vnc, 1)
    vnc.reset_appium_states_on_startup()
    assert [new_instance(1, "a@x.com")] == vnc.get_all_instances()


def test_reset_appium_states_keeps_assignments_and_emulators(vnc: Vnc) -> None:
    vnc.assign_instance_to_profile("a@x.com")
    vnc.set_emulator_id("a@x.com", "emulator-5554")
    vnc.reset_appium_states_on_startup()
    assert ("a@x.com", "emulator-5554") == (
        vnc.get_instance_for_profile("a@x.com")["assigned_profile"],  # type: ignore[index]
        vnc.get_emulator_id("a@x.com"),
    )


def test_reset_appium_states_with_no_instances(vnc: Vnc) -> None:
    vnc.reset_appium_states_on_startup()
    assert [] == vnc.get_all_instances()


# -- was_running_at_restart -----------------------------------------------------------------------------


def test_mark_running_returns_true(vnc: Vnc, avd: Avd, alice: str) -> None:
    assert vnc.mark_running_for_deployment(alice) is True


def test_mark_running_sets_true(vnc: Vnc, avd: Avd, alice: str) -> None:
    vnc.mark_running_for_deployment(alice)
    assert avd.get_user_field(alice, "was_running_at_restart") is True


def test_mark_not_running_sets_null(vnc: Vnc, avd: Avd, alice: str) -> None:
    vnc.mark_running_for_deployment(alice)
    vnc.mark_running_for_deployment(alice, should_restart=False)
    assert avd.get_user_field(alice, "was_running_at_restart", default="absent") is None


def test_mark_running_unknown_email_returns_false(vnc: Vnc, avd: Avd) -> None:
    assert vnc.mark_running_for_deployment("nobody@x.com") is False


def test_mark_running_unknown_email_creates_nothing(vnc: Vnc, avd: Avd, alice: str) -> None:
    vnc.mark_running_for_deployment("nobody@x.com")
    assert [alice] == list(avd.get_all_profiles())


def test_mark_running_matches_email_case_insensitively(vnc: Vnc, avd: Avd, alice: str) -> None:
    vnc.mark_running_for_deployment("alice@example.com")
    assert ["Alice@Example.com"] == vnc.get_running_at_restart()


def test_get_running_at_restart_empty(vnc: Vnc, avd: Avd, alice: str) -> None:
    assert [] == vnc.get_running_at_restart()


def test_get_running_at_restart_lists_marked_emails(vnc: Vnc, avd: Avd, alice: str) -> None:
    for e in ("b@x.com", "c@x.com"):
        avd.register_profile(e, "AVD")
    vnc.mark_running_for_deployment("c@x.com")
    vnc.mark_running_for_deployment(alice)
    assert ["Alice@Example.com", "c@x.com"] == sorted(vnc.get_running_at_restart())


def test_get_running_at_restart_leaves_out_cleared(vnc: Vnc, avd: Avd, alice: str) -> None:
    vnc.mark_running_for_deployment(alice)
    vnc.mark_running_for_deployment(alice, should_restart=False)
    assert [] == vnc.get_running_at_restart()


def test_clear_running_at_restart_flags(vnc: Vnc, avd: Avd, alice: str) -> None:
    avd.register_profile("b@x.com", "AVD")
    vnc.mark_running_for_deployment(alice)
    vnc.mark_running_for_deployment("b@x.com")
    vnc.clear_running_at_restart_flags()
    assert [] == vnc.get_running_at_restart()


def test_clear_running_at_restart_flags_sets_null(vnc: Vnc, avd: Avd, alice: str) -> None:
    vnc.mark_running_for_deployment(alice)
    vnc.clear_running_at_restart_flags()
    assert avd.get_user_field(alice, "was_running_at_restart", default="absent") is None


def test_get_running_at_restart_leaves_out_a_flag_that_is_not_true(vnc: Vnc, avd: Avd, alice: str) -> None:
    avd.set_user_field(alice, "was_running_at_restart", 1)
    assert [] == vnc.get_running_at_restart()


def test_clear_running_at_restart_flags_leaves_a_flag_that_is_not_true(vnc: Vnc, avd: Avd, alice: str) -> None:
    avd.set_user_field(alice, "was_running_at_restart", "yes")
    vnc.clear_running_at_restart_flags()
    assert "yes" == avd.get_user_field(alice, "was_running_at_restart")


def test_clear_running_at_restart_flags_adds_no_key_to_unmarked(vnc: Vnc, avd: Avd, alice: str) -> None:
    vnc.clear_running_at_restart_flags()
    assert {"email": alice, "avd_name": "AVD_alice"} == avd.get_profile_for_email(alice)


# -- get_instance ----------------------------------------------------------------------------------


@pytest.fixture
def json_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    paths = (tmp_path / "map.json", tmp_path / "users.json")
    monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "0")
    monkeypatch.setenv("KINDLE_VNC_MAP_JSON", str(paths[0]))
    monkeypatch.setenv("KINDLE_USERS_JSON", str(paths[1]))
    VNCInstanceManager.reset_instance()
    yield paths
    VNCInstanceManager.reset_instance()


def test_get_instance_json_backend_uses_both_paths(json_env: tuple[Path, Path]) -> None:
    manager = VNCInstanceManager.get_instance()
    assert isinstance(manager, JsonVncManager)
    assert json_env == (manager.map.path, manager.profiles.file.path)
