"""The round-trip law over generated users.json files: export(import(x)) == x, type-exact; re-import is a no-op."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from kindle_store.profile import SECTIONS, Kind, Profile
from kindle_store.profiles import same_json
from kindle_store.store import Store
from kindle_store.users_file import export_documents, import_file

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
KEY = st.one_of(TEXT, st.sampled_from(["x", "hw.wifi.mac", "a.b", "EMAIL", "notes", ""]))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), TEXT,
                   st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e16, -0.0, 2.0, 0.1]))
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEY, inner, max_size=3),
                    max_leaves=6)

# years 1 to 9999, before and after 1970
WHEN = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))])
ISO = st.one_of(
    WHEN.map(lambda d: d.replace(microsecond=0).isoformat()),  # naive, no microseconds
    WHEN.map(datetime.isoformat),  # naive, with microseconds (when not 0)
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS)
    .map(datetime.isoformat),
    st.sampled_from(["2024-03-10 08:00:00", "2024-03-10", "2024-03-10T08:00:00Z", "2024-03-10T08:00"]),
)
EPOCH = st.integers(-2_000_000_000, 2**33)
BY_KIND = {
    Kind.TEXT: TEXT, Kind.BOOL: st.booleans(), Kind.INT: st.integers(-(2**31), 2**31 - 1),
    Kind.EPOCH: EPOCH, Kind.EPOCH_OR_ISO: st.one_of(EPOCH, ISO), Kind.ISO: ISO,
}


def document(specs: dict[str, Any], known: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the typed keys (each maybe null), plus unknown keys of any JSON value."""
    typed = st.fixed_dictionaries({}, optional={k: st.none() | BY_KIND[s.kind] for k, s in specs.items()})
    unknown = st.dictionaries(KEY.filter(lambda k: k not in known), JSON, max_size=2)
    return st.builds(lambda a, b: {**b, **a}, typed, unknown)


SECTION_DOCS = {name: st.none() | document(cls.specs(), set(cls.specs())) for name, cls in SECTIONS.items()}
TOP_KNOWN = set(Profile.specs()) | set(SECTIONS) | {"preferences"}
PROFILE = st.builds(
    lambda top, sections, prefs: {**top, **sections, **prefs},
    document(Profile.specs(), TOP_KNOWN),
    st.fixed_dictionaries({}, optional=SECTION_DOCS),
    st.fixed_dictionaries({}, optional={"preferences": st.none() | st.dictionaries(KEY, JSON, max_size=4)}),
)
EMAIL = st.builds(lambda user, host: f"{user}@{host}", TEXT.filter(bool), st.sampled_from(["x.com", "É.org"]))
USERS = st.lists(st.tuples(EMAIL, PROFILE), max_size=4, unique_by=lambda t: t[0].lower()).map(dict)


def empty(store: Store) -> None:
    with store.connection() as c:
        c.execute(sql.SQL("DELETE FROM {}.users").format(sql.Identifier(store.schema)))


def summary(store: Store, path: Path) -> str:
    out = io.StringIO()
    import_file(store, path, dry_run=False, backup=False, out=out, err=io.StringIO())
    return out.getvalue().splitlines()[-1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=USERS)
def test_export_of_import_is_the_file(store: Store, tmp_path: Path, users: dict[str, Any]) -> None:
    empty(store)  # hypothesis runs every example inside one test: start each from empty tables
    path = tmp_path / "users.json"
    path.write_bytes(orjson.dumps(users))
    summary(store, path)
    n = len(users)
    assert (True, f"imported {n} profiles: 0 created, 0 updated, {n} unchanged") == (
        same_json(users, dict(export_documents(store))), summary(store, path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(users=USERS)
def test_documents_read_are_to_dict(store: Store, tmp_path: Path, users: dict[str, Any]) -> None:
    """Profile.document (a row straight to users.json) renders each profile byte for byte as the typed
    Profile.to_dict(), key order too: the reads of documents and the importer's comparisons agree."""
    empty(store)
    path = tmp_path / "users.json"
    path.write_bytes(orjson.dumps(users))
    summary(store, path)
    with store.connection() as c:
        for email in users:
            typed = store.profiles.get(c, email)
            assert typed is not None
            assert orjson.dumps(typed.to_dict()) == orjson.dumps(store.profiles.get_document(c, email))
        by_email = {p.email: orjson.dumps(p.to_dict()) for p in store.profiles.all(c)}
        assert by_email == {e: orjson.dumps(d) for e, d in store.profiles.all_documents(c).items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=USERS, second=st.lists(PROFILE, min_size=4, max_size=4))
def test_export_of_an_import_over_other_profiles_is_the_file(store: Store, tmp_path: Path, first: dict[str, Any],
                                                             second: list[dict[str, Any]]) -> None:
    """The same emails imported again with other profiles: the changed ones are rewritten (the update path,
    not the COPY of new rows) and come back exactly as the second file has them."""
    empty(store)
    path = tmp_path / "users.json"
    path.write_bytes(orjson.dumps(first))
    summary(store, path)
    users = dict(zip(first, second, strict=False))
    path.write_bytes(orjson.dumps(users))
    summary(store, path)
    n = len(users)
    assert (True, f"imported {n} profiles: 0 created, 0 updated, {n} unchanged") == (
        same_json(users, dict(export_documents(store))), summary(store, path))
