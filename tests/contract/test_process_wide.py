"""get_instance and reset_instance, which both application-facing managers inherit from ProcessWideManager: each
test runs for AVDProfileManager and VNCInstanceManager, on the JSON backend (its files in tmp_path)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kindle_store._avd_json import JsonProfileManager
from kindle_store._vnc_json import JsonVncManager
from kindle_store.avd import AVDProfileManager
from kindle_store.vnc_manager import VNCInstanceManager

#: kind -> (the application-facing class, its JSON backend, the files that backend uses)
MANAGERS: dict[str, tuple[Any, type, Callable[[Any], tuple[Path, ...]]]] = {
    "avd": (AVDProfileManager, JsonProfileManager, lambda m: (m.file.path,)),
    "vnc": (VNCInstanceManager, JsonVncManager, lambda m: (m.map.path, m.profiles.file.path)),
}
OTHER: dict[str, Any] = {"avd": VNCInstanceManager, "vnc": AVDProfileManager}


@pytest.fixture(params=MANAGERS)
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The manager under test, with the environment pointing both at JSON files in tmp_path; no instance yet."""
    monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "false")
    monkeypatch.setenv("KINDLE_USERS_JSON", str(tmp_path / "users.json"))
    monkeypatch.setenv("KINDLE_VNC_MAP_JSON", str(tmp_path / "map.json"))
    for cls in (AVDProfileManager, VNCInstanceManager):
        cls.reset_instance()
    yield request.param
    for cls in (AVDProfileManager, VNCInstanceManager):
        cls.reset_instance()


def test_get_instance_builds_the_json_backend_on_the_configured_files(kind: str, tmp_path: Path) -> None:
    cls, backend, files = MANAGERS[kind]
    manager = cls.get_instance()
    expected = {"avd": (tmp_path / "users.json",), "vnc": (tmp_path / "map.json", tmp_path / "users.json")}[kind]
    assert (backend, expected) == (type(manager), files(manager))


def test_get_instance_is_process_wide(kind: str) -> None:
    cls = MANAGERS[kind][0]
    first = cls.get_instance()
    elsewhere: list[Any] = []
    thread = threading.Thread(target=lambda: elsewhere.append(cls.get_instance()))
    thread.start()
    thread.join(timeout=30)
    assert (True, True) == (first is cls.get_instance(), len(elsewhere) == 1 and elsewhere[0] is first)


def test_reset_instance_closes_and_forgets_the_manager(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls, backend, _ = MANAGERS[kind]
    closed: list[Any] = []
    monkeypatch.setattr(backend, "close", lambda manager: closed.append(manager))
    cls.reset_instance()  # none built yet: nothing to close
    assert [] == closed
    first = cls.get_instance()
    cls.reset_instance()
    assert [first] == closed
    second = cls.get_instance()
    assert (backend, False) == (type(second), second is first)


def test_each_class_has_its_own_instance(kind: str) -> None:
    cls, other = MANAGERS[kind][0], OTHER[kind]
    mine, theirs = cls.get_instance(), other.get_instance()
    cls.reset_instance()
    assert (True, False) == (other.get_instance() is theirs, cls.get_instance() is mine)
