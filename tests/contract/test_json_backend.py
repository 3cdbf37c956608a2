"""What only the JSON backend promises: the old app's file format, atomic replacement, clear parse errors."""


from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kindle_store._avd_json import JsonProfileManager
from kindle_store._vnc_json import JsonVncManager
from kindle_store.errors import InvalidUsersFile, InvalidVncFile
from kindle_store.jsonfile import InvalidJsonFile, LockedJsonFile
from kindle_store.vnc_manager import new_instance

OLD_USERS: dict[str, Any] = {
    "zed@x.com": {
        "avd_name": "AVD_zed",
        "email": "zed@x.com",
        "last_used": 1714980000,
        "last_used_date": "2024-05-06T07:08:09.123456",
        "library_settings": {"view_type": "grid", "unknown_inner": [1, 2.5, None]},
        "unknown_top": {"kept": True},
        "emulator_settings": {},
    },
    "amy@x.com": {"email": "amy@x.com", "avd_name": None, "auth_failed_date": None},
}


def old_app_bytes(doc: Any) -> bytes:
    """What the old app's json.dump(doc, f, indent=2) wrote."""
    return json.dumps(doc, indent=2).encode()


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    path.write_bytes(old_app_bytes(OLD_USERS))
    return path


@pytest.fixture
def avd(users: Path) -> JsonProfileManager:
    return JsonProfileManager(users)


# -- the file format ---------------------------------------------------------------------------------


def test_written_file_is_what_the_old_app_wrote(avd: JsonProfileManager, users: Path) -> None:
    avd.set_user_field("zed@x.com", "theme", "dark", section="reading_settings")
    expected = json.loads(json.dumps(OLD_USERS))
    expected["zed@x.com"]["reading_settings"] = {"theme": "dark"}
    assert old_app_bytes(expected) == users.read_bytes()


def test_a_write_keeps_every_other_byte_of_meaning(avd: JsonProfileManager, users: Path) -> None:
    avd.set_user_field("amy@x.com", "timezone", "UTC")
    expected = json.loads(json.dumps(OLD_USERS))
    expected["amy@x.com"]["timezone"] = "UTC"
    assert expected == json.loads(users.read_bytes())


def test_non_ascii_is_written_as_utf8(avd: JsonProfileManager, users: Path) -> None:
    avd.set_user_field("amy@x.com", "title", "Café ✓")
    assert '"title": "Café ✓"' in users.read_text(encoding="utf-8")


def test_old_app_ascii_escapes_are_read(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"a@x.com": {"title": "Café ✓"}}, indent=2))  # ensure_ascii, as the old app
    assert "Café ✓" == JsonProfileManager(path).get_user_field("a@x.com", "title")


def test_write_that_changes_nothing_leaves_the_file_alone(avd: JsonProfileManager, users: Path) -> None:
    before = users.stat()
    avd.set_user_field("zed@x.com", "avd_name", "AVD_zed")
    assert (before.st_ino, before.st_mtime_ns) == (users.stat().st_ino, users.stat().st_mtime_ns)


# -- atomic replacement ------------------------------------------------------------------------------


def test_write_replaces_the_file(avd: JsonProfileManager, users: Path) -> None:
    inode = users.stat().st_ino
    avd.set_user_field("amy@x.com", "timezone", "UTC")
    assert inode != users.stat().st_ino


def test_write_leaves_no_temporary_file(avd: JsonProfileManager, users: Path) -> None:
    avd.set_user_field("amy@x.com", "timezone", "UTC")
    assert ["users.json", "users.json.lock"] == sorted(p.name for p in users.parent.iterdir())


def test_write_keeps_the_file_mode(avd: JsonProfileManager, users: Path) -> None:
    users.chmod(0o640)
    avd.set_user_field("amy@x.com", "timezone", "UTC")
    assert 0o640 == stat.S_IMODE(users.stat().st_mode)


def test_refused_value_leaves_the_file_byte_for_byte(avd: JsonProfileManager, users: Path) -> None:
    before = users.read_bytes()
    with pytest.raises(ValueError, match="NUL"):
        avd.set_user_field("amy@x.com", "timezone", "U\x00TC")
    assert before == users.read_bytes()


def test_failed_edit_leaves_the_file_byte_for_byte(avd: JsonProfileManager, users: Path) -> None:
    before = users.read_bytes()
    with pytest.raises(RuntimeError), avd.edit_profile("amy@x.com") as profile:
        profile.clear()
        raise RuntimeError("boom")
    assert before == users.read_bytes()


def test_unknown_email_does_not_create_the_file(tmp_path: Path) -> None:
    JsonProfileManager(tmp_path / "users.json").set_user_field("a@x.com", "k", 1)
    assert not (tmp_path / "users.json").exists()


def test_missing_file_reads_as_no_profiles(tmp_path: Path) -> None:
    assert {} == JsonProfileManager(tmp_path / "absent" / "users.json").get_all_profiles()


def test_first_write_creates_the_directory(tmp_path: Path) -> None:
    JsonProfileManager(tmp_path / "user_data" / "users.json").register_profile("a@x.com", "AVD")
    assert {"a@x.com": {"email": "a@x.com", "avd_name": "AVD"}} == json.loads(
        (tmp_path / "user_data" / "users.json").read_bytes()
    )


# -- parse errors ------------------------------------------------------------------------------------

BROKEN: dict[str, tuple[bytes, str]] = {
    "bad_token_after_utf8": (b'{"a": "\xc3\xa9", x}', r"users\.json: not valid JSON at byte 12 \(line 1, column 13\)"),
    "truncated": (b'{"a": {"b": 1', r"users\.json: not valid JSON at byte 13"),
    "empty": (b"", r"users\.json: not valid JSON at byte 0"),
    "not_utf8": (b'{"a": "\xff"}', r"users\.json: not valid JSON at byte 7 \(line 1, column 8\): not valid UTF-8$"),
    "second_line": (b'{\n  "a": nope\n}', r"users\.json: not valid JSON at byte 9 \(line 2, column 8\)"),
}


@pytest.mark.parametrize(("content", "message"), BROKEN.values(), ids=BROKEN.keys())
def test_parse_error_names_file_and_byte(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "users.json").write_bytes(content)
    with pytest.raises(InvalidUsersFile, match=message):
        JsonProfileManager(tmp_path / "users.json").get_all_profiles()


BEYOND_64_BITS = b'{"a@x.com": {"email": "a@x.com", "id": 18446744073709551616}}'  # orjson reads a float


def test_integer_beyond_64_bits_is_refused_not_rewritten_as_a_float(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_bytes(BEYOND_64_BITS)
    with pytest.raises(InvalidUsersFile, match=r"users\.json: a@x\.com: id: the integer 18446744073709551616 at "
                                               r"byte 39 \(line 1, column 40\) does not fit in 64 bits$"):
        JsonProfileManager(tmp_path / "users.json").set_user_field("a@x.com", "timezone", "UTC")
    assert BEYOND_64_BITS == (tmp_path / "users.json").read_bytes()


def test_parse_error_refuses_writes_too(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_bytes(b"{")
    with pytest.raises(InvalidUsersFile):
        JsonProfileManager(tmp_path / "users.json").register_profile("a@x.com", "AVD")
    assert b"{" == (tmp_path / "users.json").read_bytes()


def test_every_profile_must_be_an_object(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_bytes(b'{"a@x.com": {}, "b@x.com": []}')
    with pytest.raises(InvalidUsersFile, match=r"profile 'b@x\.com' is not an object"):
        JsonProfileManager(tmp_path / "users.json").get_recently_used_profiles()


def test_users_file_must_be_an_object(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_bytes(b"[]")
    with pytest.raises(InvalidUsersFile, match="not an object keyed by email"):
        JsonProfileManager(tmp_path / "users.json").get_profile_for_email("a@x.com")


# -- LockedJsonFile --------------------------------------------------------------------------------


def test_read_of_missing_file_gives_a_fresh_default(tmp_path: Path) -> None:
    assert {"instances": []} == LockedJsonFile(tmp_path / "f.json", default=lambda: {"instances": []}).read()


def test_parse_error_is_invalid_json_file_by_default(tmp_path: Path) -> None:
    (tmp_path / "f.json").write_bytes(b"nope")
    with pytest.raises(InvalidJsonFile, match=r"f\.json: not valid JSON at byte 0"):
        LockedJsonFile(tmp_path / "f.json").read()


NOT_BIG_INTEGERS = {
    "in_a_string": b'{"k": "123456789012345678901234"}',
    "after_an_escaped_quote": b'{"\\"123456789012345678901234": 1}',
    "floats_and_64_bit_ints": b"[1234567890123456789012.5, 12345678901234567890123e5, 18446744073709551615, "
                              b"-9223372036854775808]",
}


@pytest.mark.parametrize("content", NOT_BIG_INTEGERS.values(), ids=NOT_BIG_INTEGERS.keys())
def test_long_digit_runs_that_are_no_big_integer_are_read(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "f.json").write_bytes(content)
    assert json.loads(content) == LockedJsonFile(tmp_path / "f.json").read()


def test_lock_file_is_a_sibling(tmp_path: Path) -> None:
    assert tmp_path / "f.json.lock" == LockedJsonFile(tmp_path / "f.json").lock_path


def test_read_inside_update_sees_the_last_written_document(tmp_path: Path) -> None:
    f = LockedJsonFile(tmp_path / "f.json")
    with f.update() as doc:
        doc["a"] = 1
    with f.update() as doc:
        doc["a"] = 2
        inside = f.read()
    assert ({"a": 1}, {"a": 2}) == (inside, f.read())


def test_nested_update_in_one_thread_is_refused(tmp_path: Path) -> None:
    f = LockedJsonFile(tmp_path / "f.json")
    with pytest.raises(RuntimeError, match="nested update"), f.update(), f.update():
        pass


def test_no_descriptor_stays_open_between_calls(tmp_path: Path) -> None:
    f = LockedJsonFile(tmp_path / "f.json")
    before = len(os.listdir("/proc/self/fd"))
    with f.update() as doc:
        doc["a"] = 1
    f.read()
    assert before == len(os.listdir("/proc/self/fd"))


# -- vnc_instance_map.json -------------------------------------------------------------------------


def test_map_written_by_assign_is_what_the_old_app_wrote(tmp_path: Path) -> None:
    JsonVncManager(tmp_path / "map.json", tmp_path / "users.json").assign_instance_to_profile("a@x.com")
    expected = {"instances": [new_instance(1, "a@x.com")], "version": 1}
    assert old_app_bytes(expected) == (tmp_path / "map.json").read_bytes()


def test_reset_on_a_missing_map_creates_no_file(tmp_path: Path) -> None:
    JsonVncManager(tmp_path / "map.json", tmp_path / "users.json").reset_appium_states_on_startup()
    assert not (tmp_path / "map.json").exists()


MALFORMED_MAPS = {"list": b"[]", "no_instances": b'{"version": 1}', "not_objects": b'{"instances": [1]}'}


@pytest.mark.parametrize("content", MALFORMED_MAPS.values(), ids=MALFORMED_MAPS.keys())
def test_malformed_map_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "map.json").write_bytes(content)
    with pytest.raises(InvalidVncFile, match=r"map\.json: expected"):
        JsonVncManager(tmp_path / "map.json", tmp_path / "users.json").get_all_instances()


def test_map_parse_error_is_invalid_vnc_file(tmp_path: Path) -> None:
    (tmp_path / "map.json").write_bytes(b'{"instances": [')
    with pytest.raises(InvalidVncFile, match=r"map\.json: not valid JSON at byte 15"):
        JsonVncManager(tmp_path / "map.json", tmp_path / "users.json").get_all_instances()
