"""Every AVDProfileManager method on PostgreSQL, fed hostile arguments: each call either stores exactly what it
was given (read back type-exact) or refuses with InvalidProfile (a ValueError) and changes nothing. It refuses
exactly when an input cannot be stored (NUL, lone surrogates, integers beyond 64 bits, NaN/Infinity, non-string
keys, deeper than 128 levels; an email must also be non-empty and at most 1024 bytes). A value a typed column
cannot hold (an integer beyond the 32 bits of `vnc_instance`, Unix seconds beyond years 1-9999) is kept as written,
as the JSON backend keeps it."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from _fuzz import BASE, BASE_EMAIL, FUZZ, emails, ints, names, sections, targets, values
from hypothesis import Phase, event, find, given, settings
from hypothesis import strategies as st
from psycopg import sql

from kindle_store._avd_db import DbProfileManager
from kindle_store._values import is_storable
from kindle_store.errors import InvalidProfile, ProfileNotFound
from kindle_store.profiles import same_json

pytestmark = [
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
    # pool threads (reconnect and expiry jitter) draw from `random` while hypothesis generates
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]
DELETE = object()
Profiles = dict[str, dict[str, Any]]


@pytest.fixture
def fresh(manager: DbProfileManager) -> Callable[[], Profiles]:
    """fresh() empties the tables, stores BASE, and returns every profile: the state before one example's call."""

    def reset() -> Profiles:
        with manager.store.autocommit() as conn:
            conn.execute(sql.SQL("DELETE FROM {}.users").format(sql.Identifier(manager.store.schema)))
        manager.register_profile(BASE_EMAIL, "AVD")
        with manager.edit_profile(BASE_EMAIL) as doc:
            doc.update(copy.deepcopy(BASE))
        everyone = manager.get_all_profiles()
        assert same_json({BASE_EMAIL: BASE}, everyone)
        return everyone

    return reset


def storable_email(email: Any) -> bool:
    """Whether a profile can have this email: a storable, non-empty string of at most 1024 bytes (UTF-8)."""
    return type(email) is str and email != "" and is_storable(email) and len(email.encode()) <= 1024


def outcome(manager: DbProfileManager, before: Profiles, call: Callable[[], Any], *, storable: bool,
            fits: bool = True) -> Any:
    """The call's result, or the InvalidProfile it raised (after asserting that nothing changed).

    It must refuse when an input is not storable; it may when `fits` is False (a typed column cannot hold a value,
    or the value is nested too deep only counted from the profile); otherwise it must not refuse.
    """
    try:
        result = call()
    except ValueError as e:
        assert isinstance(e, InvalidProfile), repr(e)
        assert not (storable and fits), f"refused storable input: {e}"
        assert same_json(before, manager.get_all_profiles())
        event("refused")
        return e
    assert storable, f"accepted input that cannot be stored, returned {result!r:.40}"
    event(f"returned {result!r:.10}")
    return result


def with_field(profile: dict[str, Any], field: str, value: Any, section: str | None) -> dict[str, Any] | None:
    """The profile after set_user_field by the contract; None where the contract cannot set it."""
    out = copy.deepcopy(profile)
    if section is None:
        out[field] = value
        return out
    if out.get(section) is None:
        out[section] = {}
    if type(out[section]) is not dict:
        return None
    out[section][field] = value
    return out


def settable(before: Profiles, email: str, field: str, value: Any, section: str | None) -> bool:
    """False where set_user_field may refuse storable input: the section of the profile is not an object, or the
    value is nested too deep counted from the profile."""
    known = email.lower() == BASE_EMAIL and with_field(before[BASE_EMAIL], field, value, section) is None
    # nested 128 levels from the value, but deeper counted from the profile: either count may be the one applied
    deep = not is_storable(value, 1 if section is None else 2)
    return not known and not deep


def assert_fields_set(manager: DbProfileManager, before: Profiles, result: Any, email: str, field: str, value: Any,
                      section: str | None) -> None:
    if isinstance(result, InvalidProfile):
        return
    if email.lower() != BASE_EMAIL:
        assert (False, True) == (result, same_json(before, manager.get_all_profiles()))
        return
    expected = with_field(before[BASE_EMAIL], field, value, section)
    assert expected is not None and result is True
    assert same_json({BASE_EMAIL: expected}, manager.get_all_profiles())


@FUZZ
@given(email=targets, field=names, value=values, section=sections)
def test_set_user_field(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str, field: str,
                        value: Any, section: str | None) -> None:
    before = fresh()
    result = outcome(manager, before, lambda: manager.set_user_field(email, field, value, section),
                     storable=all(is_storable(x) for x in (field, section, value)),
                     fits=settable(before, email, field, value, section))
    assert_fields_set(manager, before, result, email, field, value, section)


@FUZZ
@given(email=targets, name=names, value=values,
       which=st.sampled_from(["save_style_setting", "save_reading_setting"]))
def test_save_style_and_reading_settings(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str,
                                         name: str, value: Any, which: str) -> None:
    before = fresh()
    section = "library_settings" if which == "save_style_setting" else "reading_settings"
    result = outcome(manager, before, lambda: getattr(manager, which)(name, value, email),
                     storable=is_storable(name) and is_storable(value),
                     fits=settable(before, email, name, value, section))
    assert_fields_set(manager, before, result, email, name, value, section)


@FUZZ
@given(email=targets, value=values,
       which=st.sampled_from(["update_style_preference", "update_avd_name_for_email"]))
def test_update_style_preference_and_avd_name(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str,
                                              value: Any, which: str) -> None:
    before = fresh()
    if which == "update_style_preference":
        result = outcome(manager, before, lambda: manager.update_style_preference(value, email),
                         storable=is_storable(value), fits=is_storable(value, 1))
        field = "styles_updated"
    else:
        result = outcome(manager, before, lambda: manager.update_avd_name_for_email(email, value),
                         storable=is_storable(value), fits=is_storable(value, 1))
        field = "avd_name"
    assert_fields_set(manager, before, result, email, field, value, None)


@FUZZ
@given(email=emails, avd_name=values, vnc_instance=st.one_of(st.none(), ints, values))
def test_register_profile(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str, avd_name: Any,
                          vnc_instance: Any) -> None:
    before = fresh()
    result = outcome(manager, before, lambda: manager.register_profile(email, avd_name, vnc_instance),
                     storable=storable_email(email) and is_storable(avd_name) and is_storable(vnc_instance),
                     fits=is_storable(avd_name, 1) and is_storable(vnc_instance, 1))
    if isinstance(result, InvalidProfile):
        return
    expected = copy.deepcopy(before)
    existing = email.lower() == BASE_EMAIL
    profile = expected[BASE_EMAIL] if existing else expected.setdefault(email, {"email": email})
    profile["avd_name"] = avd_name
    if vnc_instance is not None:
        profile["vnc_instance"] = vnc_instance
    assert (not existing, True) == (result, same_json(expected, manager.get_all_profiles()))


@FUZZ
@given(email=targets, avd_name=values)
def test_save_profile_status(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str,
                             avd_name: Any) -> None:
    before = fresh()
    result = outcome(manager, before, lambda: manager.save_profile_status(email, avd_name),
                     storable=storable_email(email) and is_storable(avd_name), fits=is_storable(avd_name, 1))
    if isinstance(result, InvalidProfile):
        return
    after = manager.get_all_profiles()
    key = BASE_EMAIL if email.lower() == BASE_EMAIL else email
    profile = after[key]
    stamp, stamp_date = profile.pop("last_used"), profile.pop("last_used_date")
    expected = {**copy.deepcopy(before.get(key, {})), "email": key, "avd_name": avd_name}
    expected.pop("last_used", None)
    assert (True, int, str) == (result, type(stamp), type(stamp_date))
    assert abs(time.time() - stamp) < 120
    assert same_json({**before, key: expected}, after)


@FUZZ
@given(email=targets, authenticated=st.booleans())
def test_update_auth_state(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str,
                           authenticated: bool) -> None:
    before = fresh()
    result = manager.update_auth_state(email, authenticated)
    after = manager.get_all_profiles()
    if email.lower() != BASE_EMAIL:
        assert (False, True) == (result, same_json(before, after))
        return
    profile, expected = after[BASE_EMAIL], copy.deepcopy(before[BASE_EMAIL])
    if authenticated:
        assert (str, None) == (type(profile.pop("auth_date")), profile.pop("auth_failed_date"))
        expected.pop("auth_date")
    else:
        assert str is type(profile.pop("auth_failed_date"))
    assert (True, True) == (result, same_json(expected, profile))


@FUZZ
@given(email=emails, field=names, section=sections, default=values, limit=ints)
def test_reads_never_crash(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str, field: str,
                           section: str | None, default: Any, limit: int) -> None:
    before = fresh()
    known = email.lower() == BASE_EMAIL
    assert known == (manager.get_profile_for_email(email) is not None)
    assert (before[BASE_EMAIL]["avd_name"] if known else None) == manager.get_avd_for_email(email)
    got = manager.get_user_field(email, field, default, section)
    if not known:
        assert got is default
    assert len(manager.get_recently_used_profiles(limit)) == (1 if limit > 0 else 0)


edits = st.lists(st.tuples(
    st.one_of(names, st.integers(), st.tuples(st.sampled_from(["library_settings", "preferences", "custom"]), names)),
    st.one_of(values, st.just(DELETE)),
), max_size=4)


@FUZZ
@given(email=targets, changes=edits)
def test_edit_profile(manager: DbProfileManager, fresh: Callable[[], Profiles], email: str,
                      changes: list[tuple[Any, Any]]) -> None:
    before = fresh()
    left: list[dict[str, Any]] = []

    def edit() -> None:
        with manager.edit_profile(email) as doc:
            for key, value in changes:
                target = doc
                if isinstance(key, tuple):
                    target = doc[key[0]] if isinstance(doc.get(key[0]), dict) else doc
                    key = key[1]
                if value is DELETE:
                    target.pop(key, None)
                else:
                    target[key] = value
            left.append(copy.deepcopy(doc))

    if email.lower() != BASE_EMAIL:
        with pytest.raises(ProfileNotFound):
            edit()
        assert same_json(before, manager.get_all_profiles())
        return
    result = outcome(manager, before, edit, storable=True, fits=False)  # judged below, by what the block left
    assert left, "the block never ran"
    after = left[0]
    storable = all(type(k) is str and is_storable(k) and is_storable(v) for k, v in after.items())
    fits = is_storable(after)
    if isinstance(result, InvalidProfile):
        assert not (storable and fits), f"refused a storable edit: {result}"
    else:
        assert storable and same_json({BASE_EMAIL: after}, manager.get_all_profiles())


def _leaves(v: Any) -> list[Any]:
    if type(v) is list:
        return [x for item in v for x in _leaves(item)]
    if type(v) is dict:
        return [x for kv in v.items() for item in kv for x in _leaves(item)]
    return [v]


HOSTILE_CASES: dict[str, Callable[[Any], bool]] = {
    "nul": lambda v: any(type(x) is str and "\x00" in x for x in _leaves(v)),
    "lone-surrogate": lambda v: any(type(x) is str and any(0xD800 <= ord(c) <= 0xDFFF for c in x) for x in _leaves(v)),
    "huge-string": lambda v: any(type(x) is str and len(x) >= 100_000 for x in _leaves(v)),
    "deep": lambda v: repr(v).count("[") > 40,
    "beyond-64-bits": lambda v: any(type(x) is int and not -(2**63) <= x < 2**64 for x in _leaves(v)),
    "nan": lambda v: any(type(x) is float and math.isnan(x) for x in _leaves(v)),
    "infinity": lambda v: any(type(x) is float and math.isinf(x) for x in _leaves(v)),
    "non-string-key": lambda v: any(type(x) is not str for x in _dict_keys(v)),
    "sql-tokens": lambda v: any(type(x) is str and ("'" in x or "$$" in x or "--" in x) for x in _leaves(v)),
}


def _dict_keys(v: Any) -> list[Any]:
    if type(v) is list:
        return [k for item in v for k in _dict_keys(item)]
    if type(v) is dict:
        return [*v, *(k for item in v.values() for k in _dict_keys(item))]
    return []


@pytest.mark.parametrize("case", HOSTILE_CASES)
def test_the_values_reach_every_hostile_case(case: str) -> None:
    """The fuzz is only as good as what it generates."""
    find(values, HOSTILE_CASES[case], settings=settings(max_examples=2000, database=None, phases=[Phase.generate]))
