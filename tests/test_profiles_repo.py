"""The profile repository against real PostgreSQL."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from kindle_store.errors import InvalidProfile, ProfileNotFound
from kindle_store.profile import Profile
from kindle_store.profiles import same_json
from kindle_store.users_file import import_file


def doc_of(store: Any, email: str) -> dict[str, Any] | None:
    with store.connection() as c:
        p = store.profiles.get(c, email)
    return None if p is None else p.to_dict()


def test_register_then_get(store: Any) -> None:
    with store.connection() as c:
        assert store.profiles.register(c, "Alice@Example.com", "avd_1") is True
    assert {"email": "Alice@Example.com", "avd_name": "avd_1"} == doc_of(store, "alice@example.COM")


def test_register_existing_updates_avd(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "a@x", "avd_1", vnc_instance=3)
        assert store.profiles.register(c, "A@X", "avd_2") is False
    assert {"email": "a@x", "avd_name": "avd_2", "vnc_instance": 3} == doc_of(store, "a@x")


@pytest.mark.parametrize("vnc", [None, 3, "3", 2**40])
def test_register_same_values_again_writes_nothing(store: Any, vnc: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "a@x", "avd_1", vnc_instance=vnc)
        assert store.profiles.register(c, "A@X", "avd_1", vnc_instance=vnc) is False
        assert store.profiles.register(c, "a@x", "avd_1") is False
        assert 1 == store.profiles.get(c, "a@x").version
        store.profiles.register(c, "a@x", "avd_1", vnc_instance=5)
        after = store.profiles.get(c, "a@x")
        assert (2, 5) == (after.version, after.to_dict()["vnc_instance"])


def test_get_unknown_is_none(conn: Any, store: Any) -> None:
    assert store.profiles.get(conn, "nobody@x") is None


@pytest.mark.parametrize("value", [1, 1.5, 1e16, True, None, "s", [1, "a", None], {"n": {"m": [1.0]}}],
                         ids=["int", "float", "float-1e16", "bool", "null", "str", "list", "dict"])
@pytest.mark.parametrize("section", [None, "preferences", "emulator_settings", "custom_section"])
def test_set_field_preserves_json_type(store: Any, value: Any, section: str | None) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        assert store.profiles.set_field(c, "t@x", "some_key", value, section=section) is True
    doc = doc_of(store, "T@x")
    assert doc is not None
    got = doc["some_key"] if section is None else doc[section]["some_key"]
    assert orjson.dumps(value) == orjson.dumps(got)


@pytest.mark.parametrize(("key", "value"), [
    ("last_used", 1700000000), ("auth_date", "2024-01-15T10:30:00"), ("auth_date", "2024-01-15T10:30:00.000001"),
    ("auth_date", "2024-01-15T10:30:00+05:00"), ("last_snapshot_timestamp", "2024-01-15T10:30:00"),
    ("last_snapshot_timestamp", 1700000000), ("styles_updated", False), ("vnc_instance", 7),
    ("avd_name", None), ("avd_name", "ünïcødé ✓"), ("email", "other@x"), ("last_used", "not an int"),
])
def test_set_typed_field_round_trips(store: Any, key: str, value: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.set_field(c, "t@x", key, value)
    doc = doc_of(store, "t@x")
    assert doc is not None and same_json(value, doc[key])


def test_typed_column_is_queryable(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.set_field(c, "t@x", "auth_date", "2024-01-15T10:30:00+05:00")
        store.profiles.set_field(c, "t@x", "hw_overlays_disabled", True, section="emulator_settings")
        row = c.execute(f'SELECT u.auth_date::text, e.hw_overlays_disabled FROM "{store.schema}".users u '
                        f'JOIN "{store.schema}".emulator_settings e ON e.user_id = u.id').fetchone()
    assert ("2024-01-15 05:30:00+00", True) == row


def test_set_field_unknown_email_creates_nothing(store: Any) -> None:
    with store.connection() as c:
        assert store.profiles.set_field(c, "ghost@x", "avd_name", "a") is False
        assert store.profiles.set_field(c, "ghost@x", "theme", "dark", section="reading_settings") is False
        assert store.profiles.set_field(c, "ghost@x", "k", 1, section="preferences") is False
        assert store.profiles.all(c) == []


def test_set_field_refuses_nul(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
    with pytest.raises(InvalidProfile, match="NUL"), store.connection() as c:
        store.profiles.set_field(c, "t@x", "avd_name", "a\x00b")
    assert {"email": "t@x", "avd_name": "avd"} == doc_of(store, "t@x")


def test_set_field_into_non_object_section_refused(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.set_field(c, "t@x", "custom", "a string")
    with pytest.raises(InvalidProfile, match="custom is not an object"), store.connection() as c:
        store.profiles.set_field(c, "t@x", "k", 1, section="custom")


def test_set_whole_section_replaces_it(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.set_field(c, "t@x", "theme", "dark", section="reading_settings")
        store.profiles.set_field(c, "t@x", "reading_settings", {"font_size": "12", "x": 1})
    assert {"font_size": "12", "x": 1} == doc_of(store, "t@x")["reading_settings"]  # type: ignore[index]


def test_null_section_then_field_creates_section(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.set_field(c, "t@x", "library_settings", None)
        store.profiles.set_field(c, "t@x", "view_type", "grid", section="library_settings")
    assert {"view_type": "grid"} == doc_of(store, "t@x")["library_settings"]  # type: ignore[index]


def test_update_auth_state_true_sets_date_and_nulls_failure(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.update_auth_state(c, "t@x", False)
        assert store.profiles.update_auth_state(c, "t@x", True) is True
    doc = doc_of(store, "t@x")
    assert doc is not None and doc["auth_failed_date"] is None and isinstance(doc["auth_date"], str)


def test_update_auth_state_false_keeps_auth_date(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.set_field(c, "t@x", "auth_date", "2024-01-01T00:00:00")
        store.profiles.update_auth_state(c, "t@x", False)
    doc = doc_of(store, "t@x")
    assert doc is not None and doc["auth_date"] == "2024-01-01T00:00:00" and "auth_failed_date" in doc


def test_update_auth_state_unknown_email(conn: Any, store: Any) -> None:
    assert store.profiles.update_auth_state(conn, "ghost@x", True) is False


def test_recent_orders_newest_first_and_skips_unused(store: Any) -> None:
    with store.connection() as c:
        for i, email in enumerate(["a@x", "b@x", "c@x"]):
            store.profiles.register(c, email, "avd")
            if email != "b@x":
                store.profiles.set_field(c, email, "last_used", 1000 + i)
        recent = store.profiles.recent(c, 10)
    assert ["c@x", "a@x"] == [p.email for p in recent]


def test_edit_writes_back_changes_and_bumps_version_once(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
    with store.connection() as c, store.profiles.edit(c, "t@x") as doc:
        doc["counter"] = 1
        doc["emulator_settings"] = {"sleep_disabled": True}
        doc["preferences"] = {"a": [1, 2]}
    with store.connection() as c:
        p = store.profiles.get(c, "t@x")
    assert p is not None and (2, {"email": "t@x", "avd_name": "avd", "counter": 1,
                                  "emulator_settings": {"sleep_disabled": True},
                                  "preferences": {"a": [1, 2]}}) == (p.version, p.to_dict())


def _row_versions(c: Any, schema: str) -> dict[str, list[str]]:
    """The xmin (the writing transaction) of every row of each table: a rewritten row gets a new one."""
    tables = ["users", "emulator_settings", "reading_settings", "user_preferences"]
    return {t: sorted(r[0] for r in c.execute(f'SELECT xmin::text FROM "{schema}".{t}')) for t in tables}


def test_edit_writes_only_the_parts_that_changed(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
    with store.connection() as c, store.profiles.edit(c, "t@x") as doc:
        doc.update(emulator_settings={"sleep_disabled": True}, reading_settings={"theme": "dark"},
                   preferences={"a": 1, "b": 2})
    with store.connection() as c:
        before = _row_versions(c, store.schema)
    with store.connection() as c, store.profiles.edit(c, "t@x") as doc:
        doc["timezone"] = "UTC"
        doc["reading_settings"]["theme"] = "light"
    with store.connection() as c:
        after = _row_versions(c, store.schema)
        p = store.profiles.get(c, "t@x")
    changed = sorted(t for t in before if before[t] != after[t])
    assert ["reading_settings", "users"] == changed
    assert p is not None and (3, "UTC", "light") == (p.version, p.timezone, p.to_dict()["reading_settings"]["theme"])


def test_edit_removes_keys_of_every_kind(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
    with store.connection() as c, store.profiles.edit(c, "t@x") as doc:
        doc.update(timezone="UTC", custom=[1], emulator_settings={"sleep_disabled": True}, preferences={"a": 1})
    with store.connection() as c, store.profiles.edit(c, "t@x") as doc:
        for key in ("timezone", "custom", "emulator_settings", "preferences", "avd_name"):
            del doc[key]
    assert {"email": "t@x"} == doc_of(store, "t@x")


def test_edit_without_change_writes_nothing(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
    with store.connection() as c, store.profiles.edit(c, "t@x") as doc:
        doc["avd_name"] = "avd"
    with store.connection() as c:
        assert 1 == store.profiles.get(c, "t@x").version


def test_edit_block_raising_writes_nothing(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
    with pytest.raises(RuntimeError), store.connection() as c, store.profiles.edit(c, "t@x") as doc:
        doc["avd_name"] = "changed"
        raise RuntimeError("boom")
    assert "avd" == doc_of(store, "t@x")["avd_name"]  # type: ignore[index]


def test_edit_unknown_email_raises(conn: Any, store: Any) -> None:
    with pytest.raises(ProfileNotFound, match="ghost@x"), store.profiles.edit(conn, "ghost@x"):
        pass


def test_delete(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
        store.profiles.set_field(c, "t@x", "k", 1, section="preferences")
        assert store.profiles.delete(c, "T@X") is True
        assert store.profiles.delete(c, "t@x") is False
        assert c.execute(f'SELECT count(*) FROM "{store.schema}".user_preferences').fetchone() == (0,)


def test_save_status_creates_and_sets_fields(store: Any) -> None:
    with store.connection() as c:
        assert store.profiles.save_status(c, "New@x", "avd_9") is True
    doc = doc_of(store, "new@x")
    assert doc is not None and ["avd_name", "email", "last_used", "last_used_date"] == sorted(doc)


FULL = {
    "email": "full@x", "avd_name": "avd", "timezone": None, "last_used": 1700000000,
    "last_used_date": "2024-01-15T10:30:00.123456", "auth_date": "2024-01-15T10:30:00",
    "auth_failed_date": None, "last_snapshot_timestamp": "2023-12-01T00:00:00", "was_running_at_restart": True,
    "styles_updated": False, "vnc_instance": 2, "cold_storage_date": "2024-02-01T00:00:00+01:00",
    "emulator_settings": {"hw_overlays_disabled": True, "memory_optimization_timestamp": 1700000001,
                          "unknown_inner": 1.0},
    "device_identifiers": {"hw.wifi.mac": "aa:bb", "android_id": None},
    "library_settings": {}, "reading_settings": None,
    "preferences": {"n": 1e16, "f": 0.1, "b": False, "z": None, "l": [1, [2]], "o": {"p": {}}},
    "top_unknown": {"x": [True]},
}


def test_full_profile_round_trip_through_edit(store: Any) -> None:
    with store.connection() as c:
        store.profiles.register(c, "full@x", "avd")
        with store.profiles.edit(c, "full@x") as doc:
            doc.clear()
            doc.update(FULL)
    assert same_json(FULL, doc_of(store, "full@x"))


def test_from_dict_strict_names_key() -> None:
    with pytest.raises(InvalidProfile, match=r"a@x: styles_updated: expected a boolean, got string 'yes'"):
        Profile.from_dict("a@x", {"styles_updated": "yes"})


def _stamp(store: Any, email: str) -> tuple[int, Any]:
    with store.connection() as c:
        p = store.profiles.get(c, email)
    assert p is not None
    return p.version, p.updated_at


@pytest.mark.parametrize(("key", "value", "section"), [
    ("timezone", "UTC", None),
    ("vnc_instance", 3, None),
    ("last_used", 1_700_000_000, None),
    ("last_used_date", "2024-05-01T10:00:00+02:00", None),  # kept as written: a typed column plus an override
    ("timezone", None, None),  # an explicit null
    ("custom", {"b": [1, 2.5, None], "a": "x"}, None),
    ("theme", "dark", "reading_settings"),
    ("memory_optimization_timestamp", 1_700_000_000, "emulator_settings"),
    ("hw.wifi.mac", 7, "device_identifiers"),  # the wrong type: kept as written
    ("unknown_in_section", [1, {"k": True}], "library_settings"),
    ("brightness", 0.5, "preferences"),
])
def test_a_set_that_changes_nothing_writes_nothing(store: Any, key: str, value: Any, section: str | None) -> None:
    with store.connection() as c:
        store.profiles.register(c, "t@x", "avd")
    with store.autocommit() as c:
        assert store.profiles.set_field(c, "t@x", key, value, section) is True
    first = _stamp(store, "t@x")
    with store.autocommit() as c:
        assert store.profiles.set_field(c, "T@X", key, value, section) is True
        assert store.profiles.set_field(c, "ghost@x", key, value, section) is False
    assert first == _stamp(store, "t@x")
    with store.autocommit() as c:
        assert store.profiles.set_field(c, "t@x", key, "changed", section) is True
    assert first[0] + 1 == _stamp(store, "t@x")[0]
    doc = doc_of(store, "t@x")
    assert doc is not None and "changed" == (doc if section is None else doc[section])[key]


def test_registering_again_with_the_same_values_writes_nothing(store: Any) -> None:
    with store.connection() as c:
        assert store.profiles.register(c, "t@x", "avd", vnc_instance=2) is True
    first = _stamp(store, "t@x")
    with store.connection() as c:
        assert store.profiles.register(c, "T@x", "avd") is False
        assert store.profiles.register(c, "t@x", "avd", vnc_instance=2) is False
    assert first == _stamp(store, "t@x")
    with store.connection() as c:
        assert store.profiles.register(c, "t@x", "avd", vnc_instance=3) is False
    assert (first[0] + 1, 3) == (_stamp(store, "t@x")[0], doc_of(store, "t@x")["vnc_instance"])  # type: ignore[index]


def test_documents_are_what_the_typed_profiles_render(store: Any) -> None:
    """get_document, all_documents and recent_documents skip the typed rows; they must give what to_dict gives,
    type for type, for every row of DESIGN section 2 (tests/data/users_full.json)."""
    full = Path(__file__).parent / "data" / "users_full.json"
    assert 0 == import_file(store, full, dry_run=False, backup=False, out=io.StringIO(), err=io.StringIO())
    file = orjson.loads(full.read_bytes())
    with store.connection() as c:
        typed = {p.email: p.to_dict() for p in store.profiles.all(c)}
        assert [same_json(store.profiles.get_document(c, e.upper()), typed[e]) for e in file] == [True] * len(file)
        assert store.profiles.get_document(c, "nobody@x") is None
        assert same_json(store.profiles.all_documents(c), typed)
        assert same_json(dict(store.profiles.iter_documents(c)), typed)
        recent = store.profiles.recent_documents(c, 3)
        assert same_json(recent, [p.to_dict() for p in store.profiles.recent(c, 3)])
    assert same_json(typed, file)
    assert recent  # the fixture has used profiles, so the comparison above compared something


def test_whole_section_sets_on_autocommit_connections_are_each_atomic(store: Any) -> None:
    """A whole-section set is a read-modify-write of several statements; on an autocommit connection the
    repository opens its own transaction, so concurrent ones serialise on the row lock instead of interleaving
    their delete and insert of the section row."""
    with store.connection() as c:
        store.profiles.register(c, "a@x", "avd")
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(25):
                with store.autocommit() as conn:
                    assert store.profiles.set_field(conn, "a@x", "reading_settings", {"theme": f"{t}-{i}"})
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with store.connection() as c:
        profile = store.profiles.get(c, "a@x")
    assert ([], 1 + 100) == (errors, profile.version)
    assert profile.to_dict()["reading_settings"]["theme"] in {f"{t}-24" for t in range(4)}
