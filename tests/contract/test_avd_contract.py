"""AVDProfileManager, DESIGN section 5: every rule, against every backend (the `avd` fixture)."""


from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kindle_store.avd import AVDProfileManager
from kindle_store.errors import ConfigurationError, InvalidProfile, ProfileNotFound
from kindle_store.profiles import same_json

Manager = AVDProfileManager


def iso_between(before: datetime, value: Any, after: datetime) -> bool:
    """True if `value` is a naive `datetime.now().isoformat()` string taken between the two instants."""
    stamp = datetime.fromisoformat(value)
    return stamp.tzinfo is None and before <= stamp <= after


# -- register_profile ----------------------------------------------------------------------------


def test_register_profile_creates(avd: Manager) -> None:
    assert avd.register_profile("a@x.com", "AVD_a") is True


def test_register_profile_stores_email_and_avd_name(avd: Manager) -> None:
    avd.register_profile("a@x.com", "AVD_a")
    assert {"email": "a@x.com", "avd_name": "AVD_a"} == avd.get_profile_for_email("a@x.com")


def test_register_profile_stores_vnc_instance(avd: Manager) -> None:
    avd.register_profile("a@x.com", "AVD_a", vnc_instance=3)
    expected = {"email": "a@x.com", "avd_name": "AVD_a", "vnc_instance": 3}
    assert expected == avd.get_profile_for_email("a@x.com")


def test_register_existing_returns_false(avd: Manager, alice: str) -> None:
    assert avd.register_profile(alice, "AVD_new") is False


def test_register_existing_updates_avd_name(avd: Manager, alice: str) -> None:
    avd.register_profile(alice, "AVD_new")
    assert "AVD_new" == avd.get_avd_for_email(alice)


def test_register_existing_without_vnc_instance_keeps_it(avd: Manager) -> None:
    avd.register_profile("a@x.com", "AVD_a", vnc_instance=3)
    avd.register_profile("a@x.com", "AVD_b")
    assert 3 == avd.get_user_field("a@x.com", "vnc_instance")


def test_register_existing_with_vnc_instance_updates_it(avd: Manager) -> None:
    avd.register_profile("a@x.com", "AVD_a", vnc_instance=3)
    avd.register_profile("a@x.com", "AVD_a", vnc_instance=5)
    assert 5 == avd.get_user_field("a@x.com", "vnc_instance")


@pytest.mark.parametrize("odd", ["3", 2**40, 1.5, [3]])
def test_register_keeps_any_vnc_instance_as_written(avd: Manager, odd: Any) -> None:
    # the JSON backend stores whatever it is given; PostgreSQL keeps what its integer column cannot hold as written
    assert avd.register_profile("a@x.com", "AVD_a", vnc_instance=odd) is True
    assert {"email": "a@x.com", "avd_name": "AVD_a", "vnc_instance": odd} == avd.get_profile_for_email("a@x.com")
    assert avd.register_profile("a@x.com", "AVD_b") is False  # not given: kept
    assert odd == avd.get_user_field("a@x.com", "vnc_instance")
    assert avd.register_profile("a@x.com", "AVD_b", vnc_instance=odd) is False
    assert odd == avd.get_user_field("a@x.com", "vnc_instance")
    avd.register_profile("a@x.com", "AVD_b", vnc_instance=4)  # an int replaces it, and back
    assert 4 == avd.get_user_field("a@x.com", "vnc_instance")
    avd.register_profile("a@x.com", "AVD_b", vnc_instance=odd)
    assert {"email": "a@x.com", "avd_name": "AVD_b", "vnc_instance": odd} == avd.get_profile_for_email("a@x.com")


NO_PROFILE_EMAILS = {"empty": "", "over_1024_bytes": "é" * 512 + "@x", "not_a_string": None}
CREATORS: dict[str, Callable[[Manager, Any], bool]] = {
    "register_profile": lambda m, e: m.register_profile(e, "AVD_x"),
    "save_profile_status": lambda m, e: m.save_profile_status(e, "AVD_x"),
}


@pytest.mark.parametrize("create", CREATORS.values(), ids=CREATORS.keys())
@pytest.mark.parametrize("email", NO_PROFILE_EMAILS.values(), ids=NO_PROFILE_EMAILS.keys())
def test_an_email_no_profile_can_have_is_refused(avd: Manager, email: Any, create: Callable[..., bool]) -> None:
    # what the importer refuses in a file, neither backend creates
    with pytest.raises(InvalidProfile, match="email"):
        create(avd, email)
    assert {} == avd.get_all_profiles()


def test_register_other_spelling_is_the_same_profile(avd: Manager, alice: str) -> None:
    assert avd.register_profile("alice@example.COM", "AVD_new") is False
    assert ["Alice@Example.com"] == list(avd.get_all_profiles())


# -- reading profiles ------------------------------------------------------------------------------


def test_get_profile_for_unknown_email_is_none(avd: Manager) -> None:
    assert avd.get_profile_for_email("nobody@x.com") is None


def test_get_profile_matches_email_case_insensitively(avd: Manager, alice: str) -> None:
    assert {"email": alice, "avd_name": "AVD_alice"} == avd.get_profile_for_email("ALICE@example.com")


def test_get_profile_returns_a_copy(avd: Manager, alice: str) -> None:
    avd.get_profile_for_email(alice)["avd_name"] = "changed"  # type: ignore[index]
    assert "AVD_alice" == avd.get_avd_for_email(alice)


def test_get_all_profiles_empty(avd: Manager) -> None:
    assert {} == avd.get_all_profiles()


def test_get_all_profiles_keyed_by_stored_email(avd: Manager, alice: str) -> None:
    avd.register_profile("bob@x.com", "AVD_bob")
    assert {
        "Alice@Example.com": {"email": "Alice@Example.com", "avd_name": "AVD_alice"},
        "bob@x.com": {"email": "bob@x.com", "avd_name": "AVD_bob"},
    } == avd.get_all_profiles()


# -- get_recently_used_profiles ----------------------------------------------------------------------


def _used(avd: Manager, last_used: dict[str, int | None]) -> None:
    for email, stamp in last_used.items():
        avd.register_profile(email, f"AVD_{email}")
        if stamp is not None:
            avd.set_user_field(email, "last_used", stamp)


def test_recently_used_newest_first(avd: Manager) -> None:
    _used(avd, {"a@x.com": 200, "b@x.com": 300, "c@x.com": 100})
    assert ["b@x.com", "a@x.com", "c@x.com"] == [p["email"] for p in avd.get_recently_used_profiles()]


def test_recently_used_leaves_out_profiles_without_last_used(avd: Manager) -> None:
    _used(avd, {"a@x.com": 200, "b@x.com": None})
    assert ["a@x.com"] == [p["email"] for p in avd.get_recently_used_profiles()]


def test_recently_used_honours_limit(avd: Manager) -> None:
    _used(avd, {"a@x.com": 200, "b@x.com": 300, "c@x.com": 100})
    assert ["b@x.com", "a@x.com"] == [p["email"] for p in avd.get_recently_used_profiles(limit=2)]


def test_recently_used_default_limit_is_10(avd: Manager) -> None:
    _used(avd, {f"u{i:02}@x.com": 1000 + i for i in range(12)})
    assert 10 == len(avd.get_recently_used_profiles())


def test_recently_used_returns_whole_profiles(avd: Manager) -> None:
    _used(avd, {"a@x.com": 200})
    assert [{"email": "a@x.com", "avd_name": "AVD_a@x.com", "last_used": 200}] == (
        avd.get_recently_used_profiles()
    )


def test_recently_used_empty(avd: Manager) -> None:
    assert [] == avd.get_recently_used_profiles()


# -- avd name ----------------------------------------------------------------------------------------


def test_get_avd_for_email(avd: Manager, alice: str) -> None:
    assert "AVD_alice" == avd.get_avd_for_email(alice)


def test_get_avd_for_unknown_email_is_none(avd: Manager) -> None:
    assert avd.get_avd_for_email("nobody@x.com") is None


def test_update_avd_name_for_email(avd: Manager, alice: str) -> None:
    assert avd.update_avd_name_for_email(alice, "AVD_2") is True
    assert "AVD_2" == avd.get_avd_for_email(alice)


# -- unknown emails: False, nothing created ----------------------------------------------------------

WRITERS_OF_KNOWN_PROFILES: dict[str, Callable[[Manager, str], bool]] = {
    "set_user_field": lambda m, e: m.set_user_field(e, "timezone", "UTC"),
    "set_user_field_section": lambda m, e: m.set_user_field(e, "k", 1, section="preferences"),
    "update_auth_state_true": lambda m, e: m.update_auth_state(e, True),
    "update_auth_state_false": lambda m, e: m.update_auth_state(e, False),
    "update_avd_name_for_email": lambda m, e: m.update_avd_name_for_email(e, "AVD_x"),
    "save_style_setting": lambda m, e: m.save_style_setting("view_type", "grid", e),
    "save_reading_setting": lambda m, e: m.save_reading_setting("theme", "dark", e),
    "update_style_preference": lambda m, e: m.update_style_preference(True, e),
}


@pytest.mark.parametrize("write", WRITERS_OF_KNOWN_PROFILES.values(), ids=WRITERS_OF_KNOWN_PROFILES.keys())
def test_unknown_email_returns_false(avd: Manager, write: Callable[[Manager, str], bool]) -> None:
    assert write(avd, "nobody@x.com") is False


@pytest.mark.parametrize("write", WRITERS_OF_KNOWN_PROFILES.values(), ids=WRITERS_OF_KNOWN_PROFILES.keys())
def test_unknown_email_creates_nothing(avd: Manager, alice: str, write: Callable[..., bool]) -> None:
    write(avd, "nobody@x.com")
    assert [alice] == list(avd.get_all_profiles())


@pytest.mark.parametrize("write", WRITERS_OF_KNOWN_PROFILES.values(), ids=WRITERS_OF_KNOWN_PROFILES.keys())
def test_known_email_in_other_case_returns_true(avd: Manager, alice: str, write: Callable[..., bool]) -> None:
    assert write(avd, alice.upper()) is True


# -- set_user_field / get_user_field -------------------------------------------------------------

VALUES: dict[str, Any] = {
    "int": 42,
    "int_zero": 0,
    "int_negative": -7,
    "int_beyond_double": 2**53 + 1,
    "int_64bit": 2**63 - 1,
    "float": 2.5,
    "float_whole": 2.0,
    "float_zero": 0.0,
    "float_1e16": 1e16,
    "float_tiny": 1e-7,
    "float_negative": -0.125,
    "true": True,
    "false": False,
    "none": None,
    "str": "grid",
    "str_empty": "",
    "str_unicode": "héllo ✓ 日本 😀",
    "str_numeric": "42",
    "str_iso": "2024-05-06T07:08:09.123456",
    "str_escapes": 'quote " backslash \\ newline \n tab \t',
    "list": [1, "two", 3.0, None, True],
    "list_empty": [],
    "dict": {"a": 1, "b": "two"},
    "dict_empty": {},
    "nested": {"a": [1, 2.0, {"b": None, "c": [True, {"d": "e"}]}], "f": {"g": {"h": -1.5}}},
}


@pytest.mark.parametrize("section", [None, "preferences"], ids=["top_level", "in_section"])
@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_get_user_field_returns_value_with_its_type(
    avd: Manager, alice: str, section: str | None, value: Any
) -> None:
    avd.set_user_field(alice, "field", value, section=section)
    assert same_json(value, avd.get_user_field(alice, "field", default="absent", section=section))


WELL_KNOWN: list[tuple[str | None, str, Any]] = [
    (None, "avd_name", "KindleAVD_x"),
    (None, "avd_name", None),
    (None, "timezone", "America/New_York"),
    (None, "last_used", 1714980000),
    (None, "last_used_date", "2024-05-06T07:08:09.123456"),
    (None, "auth_date", "2024-05-06T07:08:09"),
    (None, "auth_failed_date", None),
    (None, "cold_storage_date", "2024-05-06T07:08:09+02:00"),
    (None, "last_snapshot_timestamp", 1714980000),
    (None, "last_snapshot_timestamp", "2024-05-06T07:08:09.5"),
    (None, "was_running_at_restart", True),
    (None, "styles_updated", False),
    (None, "created_from_seed_clone", True),
    (None, "vnc_instance", 4),
    (None, "vnc_instance", None),
    (None, "vnc_instance", 2**40),  # beyond the 32-bit column: kept as written, on both backends
    (None, "last_used", 10**13),  # Unix seconds beyond year 9999: the same
    (None, "kindle_version_code", "1286055411"),
    (None, "some_future_key", {"x": [1, 2]}),
    ("emulator_settings", "hw_overlays_disabled", True),
    ("emulator_settings", "memory_optimization_timestamp", 1714980000),
    ("emulator_settings", "memory_optimization_timestamp", -(10**13)),
    ("device_identifiers", "hw.wifi.mac", "02:00:00:4a:5b:6c"),
    ("device_identifiers", "android_id", "a1b2c3d4e5f60718"),
    ("library_settings", "view_type", "list"),
    ("library_settings", "group_by_series", False),
    ("library_settings", "actively_reading_title", "Dune"),
    ("reading_settings", "font_size", "14"),
    ("reading_settings", "real_time_highlighting", True),
    ("reading_settings", "some_future_key", 1.5),
    ("preferences", "anything", [{"a": None}]),
]


@pytest.mark.parametrize(
    ("section", "field", "value"), WELL_KNOWN, ids=[f"{s or 'top'}.{f}={v!r}" for s, f, v in WELL_KNOWN]
)
def test_well_known_field_round_trips(
    avd: Manager, alice: str, section: str | None, field: str, value: Any
) -> None:
    avd.set_user_field(alice, field, value, section=section)
    assert same_json(value, avd.get_user_field(alice, field, default="absent", section=section))


def test_set_user_field_returns_true(avd: Manager, alice: str) -> None:
    assert avd.set_user_field(alice, "timezone", "UTC") is True


def test_set_user_field_in_other_case_writes_the_stored_profile(avd: Manager, alice: str) -> None:
    avd.set_user_field("alice@EXAMPLE.com", "timezone", "UTC")
    assert "UTC" == avd.get_user_field(alice, "timezone")


def test_set_user_field_creates_the_section(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "theme", "dark", section="preferences")
    assert {"theme": "dark"} == avd.get_user_field(alice, "preferences")


def test_set_user_field_keeps_the_section_s_other_keys(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "theme", "dark", section="reading_settings")
    avd.set_user_field(alice, "font_size", "12", section="reading_settings")
    assert {"theme": "dark", "font_size": "12"} == avd.get_user_field(alice, "reading_settings")


@pytest.mark.parametrize("section", ["library_settings", "custom"])  # a known section, and any other key
def test_set_user_field_on_a_null_section_creates_it(avd: Manager, alice: str, section: str) -> None:
    avd.set_user_field(alice, section, None)
    avd.set_user_field(alice, "view_type", "grid", section=section)
    assert {"view_type": "grid"} == avd.get_user_field(alice, section)


# (section, field): any other key, and each kind of key a known section or the preferences can take
NON_OBJECT_TARGETS = [("custom_section", "theme"), ("reading_settings", "theme"), ("reading_settings", "other"),
                      ("emulator_settings", "memory_optimization_timestamp"), ("preferences", "theme")]


@pytest.mark.parametrize(("section", "field"), NON_OBJECT_TARGETS, ids=[f"{s}.{f}" for s, f in NON_OBJECT_TARGETS])
def test_set_user_field_in_a_non_object_section_is_refused(avd: Manager, alice: str, section: str,
                                                           field: str) -> None:
    avd.set_user_field(alice, section, "not an object")
    with pytest.raises(ValueError, match=section):
        avd.set_user_field(alice, field, 1, section=section)


@pytest.mark.parametrize(("section", "field"), NON_OBJECT_TARGETS, ids=[f"{s}.{f}" for s, f in NON_OBJECT_TARGETS])
def test_refused_section_write_changes_nothing(avd: Manager, alice: str, section: str, field: str) -> None:
    avd.set_user_field(alice, section, [1, 2])
    before = avd.get_all_profiles()
    with pytest.raises(ValueError):
        avd.set_user_field(alice, field, 1, section=section)
    assert before == avd.get_all_profiles()


def test_set_user_field_dict_replaces_the_section(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "theme", "dark", section="reading_settings")
    avd.set_user_field(alice, "reading_settings", {"font_size": "12"})
    assert {"font_size": "12"} == avd.get_user_field(alice, "reading_settings")


def test_set_user_field_overwrites(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "timezone", "UTC")
    avd.set_user_field(alice, "timezone", None)
    assert avd.get_user_field(alice, "timezone", default="absent") is None


def test_set_user_field_leaves_other_fields_alone(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "timezone", "UTC")
    assert {"email": alice, "avd_name": "AVD_alice", "timezone": "UTC"} == avd.get_profile_for_email(alice)


def test_get_user_field_missing_key_gives_default(avd: Manager, alice: str) -> None:
    assert "dflt" == avd.get_user_field(alice, "timezone", default="dflt")


def test_get_user_field_missing_key_gives_none_without_default(avd: Manager, alice: str) -> None:
    assert avd.get_user_field(alice, "timezone") is None


def test_get_user_field_unknown_email_gives_default(avd: Manager) -> None:
    assert "dflt" == avd.get_user_field("nobody@x.com", "avd_name", default="dflt")


def test_get_user_field_missing_section_gives_default(avd: Manager, alice: str) -> None:
    assert "dflt" == avd.get_user_field(alice, "theme", default="dflt", section="reading_settings")


def test_get_user_field_missing_key_in_section_gives_default(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "theme", "dark", section="reading_settings")
    assert "dflt" == avd.get_user_field(alice, "font_size", default="dflt", section="reading_settings")


def test_get_user_field_stored_null_gives_none_not_default(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "timezone", None)
    assert avd.get_user_field(alice, "timezone", default="dflt") is None


def test_get_user_field_stored_null_in_section_gives_none(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "theme", None, section="reading_settings")
    assert avd.get_user_field(alice, "theme", default="dflt", section="reading_settings") is None


# -- values that cannot be stored ----------------------------------------------------------------------

def nested_lists(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


UNSTORABLE: dict[str, Any] = {
    "nul_in_string": "a\x00b",
    "nul_alone": "\x00",
    "nul_in_key": {"k\x00": 1},
    "nul_in_list": ["ok", "bad\x00"],
    "nul_nested": {"a": [{"b": "\x00"}]},
    "lone_surrogate": "\ud800",
    "lone_surrogate_in_key": {"\udfff": 1},
    "nan": float("nan"),
    "infinity": float("inf"),
    "minus_infinity": float("-inf"),
    "nan_nested": {"a": [1.0, float("nan")]},
    "int_beyond_64_bits": 2**64,
    "key_not_a_string": {1: "a"},
    "tuple": (1, 2),
    "set": {1, 2},
    "bytes": b"abc",
    "nested_too_deep": nested_lists(300),
}


@pytest.mark.parametrize("value", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_unstorable_value_is_refused_naming_the_field(avd: Manager, alice: str, value: Any) -> None:
    with pytest.raises(InvalidProfile, match="bad_field"):
        avd.set_user_field(alice, "bad_field", value)


@pytest.mark.parametrize("value", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_unstorable_value_in_section_writes_nothing(avd: Manager, alice: str, value: Any) -> None:
    before = avd.get_all_profiles()
    with pytest.raises(ValueError):
        avd.set_user_field(alice, "bad_field", value, section="preferences")
    assert before == avd.get_all_profiles()


@pytest.mark.parametrize("section", [None, "preferences", "reading_settings"], ids=["top_level", "preferences",
                                                                               "section"])
def test_edit_profile_takes_whatever_set_user_field_took(avd: Manager, alice: str, section: str | None) -> None:
    for depth in range(130, 120, -1):  # the deepest value set_user_field takes there
        with contextlib.suppress(InvalidProfile):
            avd.set_user_field(alice, "deep", nested_lists(depth), section=section)
            break
    with avd.edit_profile(alice) as profile:
        profile["timezone"] = "UTC"
    assert "UTC" == avd.get_user_field(alice, "timezone")


NOT_STRING_NAMES = {"field": (1, None), "field_in_section": (None, "preferences"), "section": ("k", 1)}


@pytest.mark.parametrize(("field", "section"), NOT_STRING_NAMES.values(), ids=NOT_STRING_NAMES.keys())
def test_a_name_that_is_not_a_string_is_refused(avd: Manager, alice: str, field: Any, section: Any) -> None:
    with pytest.raises(InvalidProfile, match="name must be a string"):
        avd.set_user_field(alice, field, 1, section=section)


def test_nul_in_field_name_is_refused(avd: Manager, alice: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        avd.set_user_field(alice, "bad\x00field", 1)


def test_nul_in_section_name_is_refused(avd: Manager, alice: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        avd.set_user_field(alice, "field", 1, section="bad\x00section")


def test_nul_refused_even_for_unknown_email(avd: Manager) -> None:
    with pytest.raises(ValueError, match="NUL"):
        avd.set_user_field("nobody@x.com", "field", "\x00")


# -- update_auth_state ------------------------------------------------------------------------------


def test_auth_success_returns_true(avd: Manager, alice: str) -> None:
    assert avd.update_auth_state(alice, True) is True


def test_auth_success_stamps_auth_date_now(avd: Manager, alice: str) -> None:
    before = datetime.now()
    avd.update_auth_state(alice, True)
    assert iso_between(before, avd.get_user_field(alice, "auth_date"), datetime.now())


def test_auth_success_sets_auth_failed_date_to_null(avd: Manager, alice: str) -> None:
    avd.update_auth_state(alice, False)
    avd.update_auth_state(alice, True)
    assert avd.get_user_field(alice, "auth_failed_date", default="absent") is None


def test_auth_success_writes_auth_failed_date_key(avd: Manager, alice: str) -> None:
    avd.update_auth_state(alice, True)
    assert "auth_failed_date" in avd.get_profile_for_email(alice)  # type: ignore[operator]


def test_auth_failure_stamps_auth_failed_date_now(avd: Manager, alice: str) -> None:
    before = datetime.now()
    avd.update_auth_state(alice, False)
    assert iso_between(before, avd.get_user_field(alice, "auth_failed_date"), datetime.now())


def test_auth_failure_leaves_auth_date_untouched(avd: Manager, alice: str) -> None:
    avd.update_auth_state(alice, True)
    auth_date = avd.get_user_field(alice, "auth_date")
    avd.update_auth_state(alice, False)
    assert auth_date == avd.get_user_field(alice, "auth_date")


def test_auth_failure_does_not_create_auth_date(avd: Manager, alice: str) -> None:
    avd.update_auth_state(alice, False)
    assert "absent" == avd.get_user_field(alice, "auth_date", default="absent")


# -- save_profile_status -------------------------------------------------------------------------------


def test_save_profile_status_returns_true(avd: Manager, alice: str) -> None:
    assert avd.save_profile_status(alice, "AVD_2") is True


def test_save_profile_status_sets_last_used_int_seconds_now(avd: Manager, alice: str) -> None:
    before = int(time.time())
    avd.save_profile_status(alice, "AVD_2")
    last_used = avd.get_user_field(alice, "last_used")
    assert type(last_used) is int
    assert before <= last_used <= int(time.time())


def test_save_profile_status_sets_last_used_date_now(avd: Manager, alice: str) -> None:
    before = datetime.now()
    avd.save_profile_status(alice, "AVD_2")
    assert iso_between(before, avd.get_user_field(alice, "last_used_date"), datetime.now())


def test_save_profile_status_sets_avd_name(avd: Manager, alice: str) -> None:
    avd.save_profile_status(alice, "AVD_2")
    assert "AVD_2" == avd.get_avd_for_email(alice)


def test_save_profile_status_in_other_case_keeps_stored_email(avd: Manager, alice: str) -> None:
    avd.save_profile_status("ALICE@EXAMPLE.COM", "AVD_2")
    assert (["Alice@Example.com"], "Alice@Example.com") == (
        list(avd.get_all_profiles()),
        avd.get_user_field(alice, "email"),
    )


def test_save_profile_status_keeps_other_fields(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "timezone", "UTC")
    avd.save_profile_status(alice, "AVD_2")
    assert "UTC" == avd.get_user_field(alice, "timezone")


def test_save_profile_status_creates_unknown_profile(avd: Manager) -> None:
    assert avd.save_profile_status("new@x.com", "AVD_new") is True
    assert ["avd_name", "email", "last_used", "last_used_date"] == sorted(
        avd.get_profile_for_email("new@x.com") or {}
    )


def test_save_profile_status_created_profile_has_email(avd: Manager) -> None:
    avd.save_profile_status("new@x.com", "AVD_new")
    assert "new@x.com" == avd.get_user_field("new@x.com", "email")


# -- section shortcuts ---------------------------------------------------------------------------------


def test_save_style_setting_sets_library_settings(avd: Manager, alice: str) -> None:
    assert avd.save_style_setting("view_type", "grid", alice) is True
    assert {"view_type": "grid"} == avd.get_user_field(alice, "library_settings")


def test_save_reading_setting_sets_reading_settings(avd: Manager, alice: str) -> None:
    assert avd.save_reading_setting("real_time_highlighting", False, alice) is True
    assert {"real_time_highlighting": False} == avd.get_user_field(alice, "reading_settings")


@pytest.mark.parametrize("flag", [True, False], ids=["updated", "not_updated"])
def test_update_style_preference_sets_styles_updated(avd: Manager, alice: str, flag: bool) -> None:
    assert avd.update_style_preference(flag, alice) is True
    assert flag is avd.get_user_field(alice, "styles_updated")


# -- edit_profile ------------------------------------------------------------------------------------


def test_edit_profile_yields_the_profile(avd: Manager, alice: str) -> None:
    with avd.edit_profile(alice) as profile:
        assert {"email": alice, "avd_name": "AVD_alice"} == profile


def test_edit_profile_writes_changes(avd: Manager, alice: str) -> None:
    with avd.edit_profile(alice) as profile:
        profile["timezone"] = "UTC"
        profile["reading_settings"] = {"theme": "dark"}
    expected = {
        "email": alice, "avd_name": "AVD_alice", "timezone": "UTC", "reading_settings": {"theme": "dark"},
    }
    assert expected == avd.get_profile_for_email(alice)


def test_edit_profile_writes_nested_changes(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "theme", "dark", section="reading_settings")
    with avd.edit_profile(alice) as profile:
        profile["reading_settings"]["font_size"] = "12"
    assert {"theme": "dark", "font_size": "12"} == avd.get_user_field(alice, "reading_settings")


def test_edit_profile_writes_deletions(avd: Manager, alice: str) -> None:
    avd.set_user_field(alice, "timezone", "UTC")
    with avd.edit_profile(alice) as profile:
        del profile["timezone"]
    assert "absent" == avd.get_user_field(alice, "timezone", default="absent")


def test_edit_profile_preserves_types(avd: Manager, alice: str) -> None:
    with avd.edit_profile(alice) as profile:
        profile["preferences"] = VALUES["nested"]
    assert same_json(VALUES["nested"], avd.get_user_field(alice, "preferences"))


def test_edit_profile_in_other_case(avd: Manager, alice: str) -> None:
    with avd.edit_profile("alice@example.com") as profile:
        profile["timezone"] = "UTC"
    assert "UTC" == avd.get_user_field(alice, "timezone")


def test_edit_profile_writes_nothing_if_the_block_raises(avd: Manager, alice: str) -> None:
    before = avd.get_all_profiles()
    with pytest.raises(RuntimeError, match="boom"), avd.edit_profile(alice) as profile:
        profile["timezone"] = "UTC"
        profile["avd_name"] = "changed"
        raise RuntimeError("boom")
    assert before == avd.get_all_profiles()


def test_edit_profile_unknown_email_raises_profile_not_found(avd: Manager) -> None:
    with pytest.raises(ProfileNotFound, match=r"nobody@x\.com"), avd.edit_profile("nobody@x.com"):
        pass


def test_edit_profile_unknown_email_raises_key_error(avd: Manager) -> None:
    with pytest.raises(KeyError), avd.edit_profile("nobody@x.com"):
        pass


def test_edit_profile_unknown_email_creates_nothing(avd: Manager) -> None:
    with pytest.raises(KeyError), avd.edit_profile("nobody@x.com"):
        pass
    assert {} == avd.get_all_profiles()


def test_edit_profile_refuses_unstorable_result(avd: Manager, alice: str) -> None:
    before = avd.get_all_profiles()
    with pytest.raises(ValueError, match="NUL"), avd.edit_profile(alice) as profile:
        profile["timezone"] = "bad\x00"
    assert before == avd.get_all_profiles()


@pytest.mark.parametrize("section", ["reading_settings", "preferences", "custom"])
def test_edit_profile_refuses_a_key_that_is_not_a_string_in_a_section(avd: Manager, alice: str, section: str) -> None:
    before = avd.get_all_profiles()
    with pytest.raises(InvalidProfile), avd.edit_profile(alice) as profile:
        profile[section] = {"theme": "dark", 1: "x"}
    assert before == avd.get_all_profiles()


# -- get_instance ----------------------------------------------------------------------------------


@pytest.fixture
def json_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    users = tmp_path / "users.json"
    monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "false")
    monkeypatch.setenv("KINDLE_USERS_JSON", str(users))
    AVDProfileManager.reset_instance()
    yield users
    AVDProfileManager.reset_instance()


# the JSON files it uses, process-wide, reset_instance: tests/contract/test_process_wide.py, for both managers


def test_get_instance_refuses_a_malformed_flag(json_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "maybe")
    with pytest.raises(ConfigurationError, match="USE_DATABASE_PROFILE_MANAGER"):
        AVDProfileManager.get_instance()
