"""The contract suite runs once per backend: add a backend to BACKENDS (tests/_helpers.py) and a branch to each
make_* helper."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import BACKENDS

from kindle_store._avd_json import JsonProfileManager
from kindle_store._vnc_json import JsonVncManager
from kindle_store.avd import AVDProfileManager
from kindle_store.vnc_manager import VNCInstanceManager


def make_avd_manager(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> AVDProfileManager:
    """A profile manager of backend `kind` on empty storage (the same storage make_vnc_manager uses).

    Each branch arranges its own cleanup (request.addfinalizer), so a backend can share a session resource.
    """
    if kind == "json":
        manager = JsonProfileManager(tmp_path / "users.json")
        request.addfinalizer(manager.close)
        return manager
    if kind == "db":
        from kindle_store._avd_db import DbProfileManager

        return DbProfileManager(request.getfixturevalue("store"))  # the session pool; tables emptied after
    raise ValueError(f"unknown backend {kind!r}")


def make_vnc_manager(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> VNCInstanceManager:
    """A VNC manager of backend `kind` whose profiles are the ones make_avd_manager's manager sees."""
    if kind == "json":
        vnc = JsonVncManager(tmp_path / "vnc_instance_map.json", tmp_path / "users.json")
        request.addfinalizer(vnc.close)
        return vnc
    if kind == "db":
        from kindle_store._vnc_db import DbVncManager

        return DbVncManager(request.getfixturevalue("store"))
    raise ValueError(f"unknown backend {kind!r}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test; `avd` and `vnc` in one test always share it (and its storage)."""
    kind: str = request.param
    return kind


@pytest.fixture
def avd(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AVDProfileManager:
    """An AVDProfileManager on empty storage."""
    return make_avd_manager(backend, tmp_path, request)


@pytest.fixture
def vnc(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> VNCInstanceManager:
    """A VNCInstanceManager on empty storage, sharing its profiles with `avd`."""
    return make_vnc_manager(backend, tmp_path, request)


@pytest.fixture
def alice(avd: AVDProfileManager) -> str:
    """The email of a registered profile: {"email": "Alice@Example.com", "avd_name": "AVD_alice"}."""
    assert avd.register_profile("Alice@Example.com", "AVD_alice")
    return "Alice@Example.com"
