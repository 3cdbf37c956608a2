"""The quick paths of validation against the slow ones they stand in for, on hostile input: the yes-or-no value
check against the walk that names what is wrong, Profile.from_dict against setting the keys one by one with every
key and value checked first, and the exactness of a parsed ISO string against what rendering writes back."""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from _fuzz import FUZZ, KNOWN_KEYS, emails, names, nested, texts, values, weighted
from hypothesis import example, given
from hypothesis import strategies as st

from kindle_store._values import DEPTH_SECTION, _explain, check_storable, is_storable
from kindle_store.errors import InvalidProfile
from kindle_store.profile import SECTIONS, Kind, Profile, _iso, check_email, encode, json_type


class Small(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


#: values no JSON parser makes but a caller can pass: each must be refused like the slow walk refuses it
EXOTIC = [(1, 2), {1, 2}, Small.ONE, Text("x"), b"x", 1j, {"k": (1,)}, [Text("y")], {Text("k"): 1}]
#: every way a value can fail, alone and inside containers, and the edges that pass
EDGES = [*EXOTIC, "\x00", "a\x00b", "\ud800", "é\udfff", 2**64, 2**64 - 1, -(2**63), -(2**63) - 1, math.nan, math.inf,
         -0.0, {"k\x00": 1}, {"\ud800": 1}, {1: 2}, {None: 1}, [1, "\x00"], {"a": [{"b": "\udfff"}]}, {"a": [2**70]},
         "é😀", {"é": ["ok", 1.5, None, True]}, [], {}]
exotic = st.sampled_from(EXOTIC)
anything = st.one_of(values, exotic, st.lists(exotic, max_size=2), st.dictionaries(texts, exotic, max_size=2))


def outcome(check: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", check(*args)
    except InvalidProfile as e:
        return "refused", str(e)


def slow_walk_finds_nothing(value: Any) -> bool:
    return outcome(_explain, value, "x") == ("ok", None)


@pytest.mark.parametrize("value", EDGES, ids=repr)
def test_quick_check_agrees_with_the_slow_walk_on_every_edge(value: Any) -> None:
    assert slow_walk_finds_nothing(value) == is_storable(value) == slow_walk_finds_nothing([{"k": value}])


@FUZZ
@given(value=anything)
def test_quick_check_says_yes_exactly_when_the_slow_walk_finds_nothing(value: Any) -> None:
    assert slow_walk_finds_nothing(value) == is_storable(value)


@pytest.mark.parametrize("depth", [127, 128, 129, 130])
def test_quick_check_and_slow_walk_agree_at_the_depth_limit(depth: int) -> None:
    assert (depth <= 128, depth <= 128) == (slow_walk_finds_nothing(nested(depth)), is_storable(nested(depth)))


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert ("refused", "x: nested deeper than 128 levels") == outcome(check_storable, loop, "x")


def from_dict_key_by_key(email: Any, doc: Any, strict: bool) -> Profile:
    """Profile.from_dict the slow way: every key checked before it is set, every place written out."""
    check_email(email)
    if type(doc) is not dict:
        raise InvalidProfile(f"{email}: a profile must be an object, got {json_type(doc)}")
    p = Profile(email=email)
    for key, value in doc.items():
        check_storable(key, f"{email}: key {str(key)[:40]!r}")
        where = f"{email}: {key}"
        if key in SECTIONS and type(value) is dict:
            section = SECTIONS[key]()
            for k, v in value.items():
                check_storable(k, f"{where}: key {str(k)[:40]!r}")
                if not section.set_key(k, v, f"{where}.{k}", strict):
                    check_storable(v, f"{where}.{k}", DEPTH_SECTION)
                    section.extra[k] = v
            setattr(p, key, section)
        else:
            p.set_key(key, value, where, strict)
    return p


keys = st.one_of(names, st.sampled_from(KNOWN_KEYS), st.integers(), st.none())
sections = st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), keys), values, max_size=4)
documents = weighted((8, st.dictionaries(keys, weighted((3, values), (1, sections)), max_size=6)), (1, values))


@FUZZ
@given(email=weighted((4, st.just("fuzz@x")), (1, emails)), doc=documents, strict=st.booleans())
@example(email="a@x", doc={"device_identifiers": {"ro.serial\x00no": "x"}}, strict=True)
@example(email="a@x", doc={"preferences": {"notes": ["ok", "\x00"]}, "avd_name": 1}, strict=False)
@example(email="a@x", doc={"k\ud800": 1, "avd_name": "\x00"}, strict=True)
@example(email="a@x", doc={"reading_settings": {"theme": 5, "x": {"y": math.nan}}}, strict=False)
@example(email="a@x", doc={"reading_settings": {"theme": 5}}, strict=True)
@example(email="a@x", doc={"auth_date": "2024-01-01T00:00:00+05:00", "last_used_date": "yesterday"}, strict=False)
@example(email="a@x", doc={Text("avd_name"): "x"}, strict=True)
@example(email="a@x", doc={"styles_updated": True, "avd_name": "a\x00b"}, strict=True)
@example(email="a@x", doc={"device_identifiers": {"hw.wifi.mac": "m", "android_id": "\ud800"}}, strict=False)
def test_from_dict_agrees_with_setting_the_keys_one_by_one(email: Any, doc: Any, strict: bool) -> None:
    assert outcome(from_dict_key_by_key, email, doc, strict) == outcome(Profile.from_dict, email, doc, strict)


WHEN = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
OFFSETS = st.sampled_from([None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
SPECS = st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"])
iso_like = st.one_of(
    st.builds(lambda d, tz, spec, sep: d.replace(tzinfo=tz).isoformat(sep, spec), WHEN, OFFSETS, SPECS,
              st.sampled_from(["T", " "])),
    st.sampled_from(["2024-03-10", "2024-03-10T08:00:00Z", "20240310T080000", "2024-03-10T08:00:00.5"]),
    texts,
)


@FUZZ
@given(text=iso_like)
def test_an_iso_string_is_exact_when_rendering_its_instant_writes_it_back(text: str) -> None:
    kind, got = outcome(encode, Kind.ISO, text, "x")
    if kind == "ok":
        dt, exact = got
        assert exact == (_iso(dt) == text)
