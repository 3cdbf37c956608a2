"""Hypothesis strategies for hostile input: any unicode (NUL, lone surrogates, quotes and SQL/format tokens), huge
strings, deep nesting, integers beyond 64 bits, NaN and Infinity; and the settings the fuzz tests share."""

from __future__ import annotations

import math
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from kindle_store.profile import SECTIONS, Profile

#: modest by default (the whole reliability area runs in CI in well under three minutes); KINDLE_FUZZ_EXAMPLES=2000
#: for a long hunt
FUZZ = settings(max_examples=int(os.environ.get("KINDLE_FUZZ_EXAMPLES", "40")), deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

HOSTILE = ["\x00", "\ud800", "\udfff"]  # what neither PostgreSQL text nor UTF-8 can hold
TOKENS = ["'", '"', ";", "--", "\\", "$$", "%s", "%(x)s", "{schema}", "{}", "é", "İ", "ß", "\u2028", "\ufeff", "😀",
          "\x7f", "\n", "users", "); DROP TABLE users; --"]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked in proportion to its weight."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


clean = st.lists(st.one_of(st.characters(exclude_characters="\x00"), st.sampled_from(TOKENS)), max_size=8).map(
    "".join)
hostile = st.lists(st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from(HOSTILE + TOKENS)),
                   min_size=1, max_size=8).map("".join)
texts = weighted((4, clean), (1, hostile))
huge = st.sampled_from(["x" * 200_000, "é" * 50_000, "😀" * 30_000 + "\x00", "'; DROP TABLE users; --" * 5_000])
ints = weighted((6, st.integers(-(2**63), 2**64 - 1)), (1, st.integers()), (1, st.sampled_from(
    [2**31, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30])))
floats = weighted((4, st.floats(allow_nan=False, allow_infinity=False)), (1, st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 1e16, 5e-324, 1.7976931348623157e308])))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)


def nested(depth: int) -> Any:
    """A value nested `depth` levels deep, lists and objects alternating."""
    v: Any = "bottom"
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


deep = st.integers(100, 300).map(nested)
trees = st.recursive(scalars, lambda inner: weighted(
    (3, st.lists(inner, max_size=3)),
    (3, st.dictionaries(texts, inner, max_size=3)),
    (1, st.dictionaries(st.one_of(st.integers(), st.none()), inner, min_size=1, max_size=1)),  # non-string keys
), max_leaves=6)
#: the edges themselves, often enough that 40 examples meet several
edges = st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, math.nan, math.inf, -math.inf,
                         -0.0, 1e16, 5e-324, "\x00", "a\x00b", "\ud800", "x\udfff", "", *TOKENS])
values = weighted((1, deep), (1, huge), (3, edges), (6, scalars), (9, trees))
#: names a caller may pass: well-known keys and sections (so the typed paths run too) or anything at all
KNOWN_KEYS = sorted({*Profile.specs(), *(k for s in SECTIONS.values() for k in s.specs())})
names = st.one_of(texts, st.sampled_from([*KNOWN_KEYS, *SECTIONS, "preferences", "custom", ""]))
sections = weighted((3, st.none()), (3, st.sampled_from([*SECTIONS, "preferences", "custom", "avd_name", "email"])),
                   (1, texts))

BASE_EMAIL = "fuzz@x"
#: the profile every example starts from: typed columns, overrides in `extra`, sections, preferences, nulls
BASE = {
    "email": BASE_EMAIL, "avd_name": "AVD", "last_used": 1_700_000_000, "auth_date": "2024-01-02T03:04:05.123456",
    "last_snapshot_timestamp": "2023-05-06T07:08:09+02:00", "vnc_instance": 3, "styles_updated": True,
    "was_running_at_restart": None, "custom": None, "unknown_top": {"x": [1, 2.5, None, "s"]},
    "emulator_settings": {"hw_overlays_disabled": True, "memory_optimization_timestamp": 1_700_000_001},
    "device_identifiers": {"hw.wifi.mac": "00:11:22:33:44:55"},
    "library_settings": {"view_type": "list", "extra_key": 1.5},
    "reading_settings": {"theme": "dark"},
    "preferences": {"a": [1, 2.5, None], "b": {"c": True}},
}
emails = weighted((4, texts), (1, huge), (5, st.sampled_from([BASE_EMAIL, BASE_EMAIL.upper(), "other@x", "", "a" * 1025,
                                                             "fuzz@x\x00", "\ud800@x", "é" * 513])))
#: the email of the write tests: mostly the profile that exists, in either spelling
targets = weighted((3, st.sampled_from([BASE_EMAIL, BASE_EMAIL.upper()])), (1, emails))
