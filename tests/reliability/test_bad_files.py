"""Bad users.json files, from the corpus in tests/data/bad/ and from hypothesis: `kindle-store import-json` refuses
each with one line on stderr and a non-zero exit, writes no file, and leaves the database as it was; whatever it
accepts comes back out exactly (type-exact JSON)."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _fuzz import FUZZ, TOKENS, texts, trees, values, weighted
from _helpers import KindleCli
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from psycopg import sql

from kindle_store._avd_db import DbProfileManager
from kindle_store.errors import InvalidUsersFile
from kindle_store.profile import SECTIONS, Profile
from kindle_store.store import Store
from kindle_store.users_file import export_documents, import_file

pytestmark = [
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
    # pool threads (reconnect and expiry jitter) draw from `random` while hypothesis generates
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]
BAD = sorted((Path(__file__).parent.parent / "data" / "bad").glob("rel_*.json"))  # the others: test_users_file.py
#: what the database holds before each bad file: profiles the files name, with sections and preferences
PRELOADED = {
    "a@x": {"email": "a@x", "avd_name": "AVD_a", "last_used": 1_700_000_000, "styles_updated": False,
            "reading_settings": {"theme": "dark"}, "preferences": {"k": [1, 2.5, None]}},
    "bad@x": {"email": "bad@x", "avd_name": "AVD_bad", "custom": {"x": 1}},
    "good0@x": {"email": "good0@x", "avd_name": "AVD_old"},
    "mixed@example.com": {"email": "mixed@example.com", "library_settings": {"view_type": "grid"}},
}


def lines(text: str) -> int:
    """Lines as a terminal or a log collector counts them: each ended by a newline, no carriage return."""
    return -1 if "\r" in text or not text.endswith("\n") else text.count("\n")


def preload(manager: DbProfileManager) -> None:
    for email, doc in PRELOADED.items():
        manager.register_profile(email, "x")
        with manager.edit_profile(email) as stored:
            stored.clear()
            stored.update(copy.deepcopy(doc))


@pytest.fixture
def preloaded(store: Store) -> DbProfileManager:
    manager = DbProfileManager(store)
    preload(manager)
    return manager


@pytest.mark.parametrize("bad", BAD, ids=[p.stem for p in BAD])
def test_bad_file_refused(bad: Path, preloaded: DbProfileManager, kindle_cli: KindleCli,
                          db_state: Callable[[], Any], tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_bytes(bad.read_bytes())
    before = db_state()
    code, _, err = kindle_cli("import-json", str(path))
    assert (1, 1, False) == (code, lines(err), "Traceback" in err), err
    assert err.startswith("kindle-store: ") and str(path) in err  # one line naming the file
    assert (before, [path], bad.read_bytes()) == (db_state(), list(tmp_path.iterdir()), path.read_bytes())


def test_the_corpus_is_there() -> None:
    assert len(BAD) >= 50


# -- hypothesis: the importer fed mutated bytes and generated documents ----------------------------------------------


def note(what: str) -> None:
    """A hypothesis event for the statistics (--hypothesis-show-statistics), outside hypothesis nothing."""
    if currently_in_test_context():
        event(what)


def import_or_refuse(store: Store, manager: DbProfileManager, path: Path, data: bytes,
                     db_state: Callable[[], Any]) -> dict[str, Any] | None:
    """Reset to PRELOADED, import `data`; None if it was refused (and nothing changed), else the database."""
    with store.autocommit() as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(store.schema, "users")))
    preload(manager)
    before = db_state()
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    try:
        assert 0 == import_file(store, path, dry_run=False, backup=False, out=out, err=err)
    except InvalidUsersFile as e:
        assert (1, True) == (lines(f"{e}\n"), db_state() == before), str(e)
        note("refused")
        return None
    note("imported")
    return dict(export_documents(store))


def assert_imported_exactly(db: dict[str, Any], doc: dict[str, Any]) -> None:
    """Every profile of the file is in the database as written (type-exact), the preloaded ones as they were."""
    expected = {e.lower(): d for e, d in [*PRELOADED.items(), *doc.items()]}  # emails match case-insensitively
    got = {e.lower(): d for e, d in db.items()}
    assert json.dumps(expected, sort_keys=True) == json.dumps(got, sort_keys=True)  # 1, 1.0 and true all differ


SEED = {
    "alice@example.com": {
        "email": "alice@example.com", "avd_name": "AVD_alice", "last_used": 1_700_000_000,
        "last_used_date": "2023-11-14T22:13:20.123456", "auth_date": "2024-01-01T00:00:00",
        "auth_failed_date": None, "last_snapshot_timestamp": 1_700_000_100, "was_running_at_restart": True,
        "styles_updated": False, "vnc_instance": 2, "unknown": {"a": [1, 2.5, "x", None, True]},
        "emulator_settings": {"hw_overlays_disabled": True, "memory_optimization_timestamp": 1_700_000_200},
        "device_identifiers": {"hw.wifi.mac": "00:11:22:33:44:55", "android_id": "abc"},
        "library_settings": {"view_type": "list", "group_by_series": True, "actively_reading_title": "Dune"},
        "reading_settings": {"theme": "dark", "font_size": "12", "about_book": False},
        "preferences": {"p": {"q": [1, {"r": 1.5e-7}]}, "s": "t"},
    },
    "A@x": {"avd_name": "AVD_a_again"},
}
SEED_BYTES = json.dumps(SEED, indent=1).encode()

mutations = st.lists(st.tuples(st.sampled_from(["replace", "insert", "delete"]),
                               st.integers(0, len(SEED_BYTES) - 1),
                               st.one_of(st.binary(min_size=1, max_size=3), st.sampled_from(
                                   [b"\\u0000", b"\\ud800", b"NaN", b"1e400", b"99999999999999999999", b"null", b"{",
                                    b"]", b'"', b"\xff", b"\xc3", b","]))),
                     min_size=1, max_size=4)


def mutate(data: bytes, changes: list[tuple[str, int, bytes]]) -> bytes:
    for op, pos, chunk in changes:
        pos %= max(len(data), 1)
        if op == "replace":
            data = data[:pos] + chunk + data[pos + len(chunk):]
        elif op == "insert":
            data = data[:pos] + chunk + data[pos:]
        else:
            data = data[:pos] + data[pos + len(chunk):]
    return data


@FUZZ
@given(changes=mutations)
def test_import_of_mutated_bytes(store: Store, db_state: Callable[[], Any], tmp_path: Path,
                                 changes: list[tuple[str, int, bytes]]) -> None:
    data = mutate(SEED_BYTES, changes)
    db = import_or_refuse(store, DbProfileManager(store), tmp_path / "users.json", data, db_state)
    if db is not None:
        assert_imported_exactly(db, json.loads(data))


def well_typed(key: str) -> st.SearchStrategy[Any]:
    """Values DESIGN §2 allows for a well-known top-level key."""
    kind = Profile.specs()[key].kind.name
    return {"TEXT": st.one_of(st.none(), texts), "BOOL": st.one_of(st.none(), st.booleans()),
            "INT": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
            "EPOCH": st.one_of(st.none(), st.integers(0, 4_000_000_000)),
            "EPOCH_OR_ISO": st.one_of(st.none(), st.integers(0, 4_000_000_000), st.datetimes().map(
                lambda d: d.isoformat())),
            "ISO": st.one_of(st.none(), st.datetimes().map(lambda d: d.isoformat()))}[kind]


def section(name: str) -> st.SearchStrategy[dict[str, Any]]:
    specs = SECTIONS[name].specs()
    typed = {k: (st.booleans() if s.kind.name == "BOOL" else st.integers(0, 4_000_000_000)
                 if s.kind.name == "EPOCH" else texts) for k, s in specs.items()}
    return st.fixed_dictionaries({}, optional={**typed, "custom": values, "": trees})


#: numbers at the edge of what JSON parsers keep exactly: beyond 64 bits, the u64/i64 limits, -0.0, 1e16
NUMBERS = [2**64, -(2**63) - 1, 10**30, 2**64 - 1, -(2**63), -0.0, 1e16, 5e-324, 1.7976931348623157e308]
numbers = st.sampled_from(NUMBERS)
profiles = st.fixed_dictionaries({}, optional={
    **{k: well_typed(k) for k in Profile.specs()},
    **{name: weighted((4, section(name)), (1, values)) for name in SECTIONS},
    "preferences": weighted((4, st.dictionaries(texts, values, max_size=3)), (1, values)),
    "unknown": values, "custom;--'": trees, "number": numbers,
})
documents = st.dictionaries(weighted((3, st.sampled_from(["a@x", "A@X", "new@x", "z@x", *TOKENS])), (1, texts)),
                            profiles, max_size=3)


@FUZZ
@given(doc=documents, ensure_ascii=st.booleans())
def test_import_of_generated_documents(store: Store, db_state: Callable[[], Any], tmp_path: Path,
                                       doc: dict[str, Any], ensure_ascii: bool) -> None:
    # json.dumps writes what orjson would not: NaN, Infinity, integers of any size, lone surrogates
    data = json.dumps(doc, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
    db = import_or_refuse(store, DbProfileManager(store), tmp_path / "users.json", data, db_state)
    if db is not None:
        assert_imported_exactly(db, json.loads(data))  # the file as an independent parser reads it


@pytest.mark.parametrize("number", NUMBERS, ids=[repr(n) for n in NUMBERS])
def test_import_keeps_edge_numbers_exact(store: Store, db_state: Callable[[], Any], tmp_path: Path,
                                         number: int | float) -> None:
    data = b'{"a@x": {"number": %s, "preferences": {"n": [%s]}, "emulator_settings": {"custom": {"n": %s}}}}' % (
        (json.dumps(number).encode(),) * 3)
    db = import_or_refuse(store, DbProfileManager(store), tmp_path / "users.json", data, db_state)
    if db is not None:
        assert_imported_exactly(db, json.loads(data))
    else:
        assert not -(2**63) <= number < 2**64  # only what no 64-bit integer holds may be refused
