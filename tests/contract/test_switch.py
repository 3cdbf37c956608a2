"""Switching over and back with one environment variable: JSON -> import -> PostgreSQL -> export -> JSON."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers import KindleCli

from kindle_store.avd import AVDProfileManager


def test_switch_over_and_back_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            app_env: dict[str, str], kindle_cli: KindleCli) -> None:
    users = tmp_path / "users.json"
    monkeypatch.setenv("KINDLE_USERS_JSON", str(users))
    for name, value in app_env.items():  # the managers read the environment the CLI runs under
        monkeypatch.setenv(name, value)

    def manager(use_db: bool) -> AVDProfileManager:
        monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "true" if use_db else "false")
        AVDProfileManager.reset_instance()
        return AVDProfileManager.get_instance()

    json_side = manager(use_db=False)
    json_side.register_profile("Ann@x", "AVD_ann", vnc_instance=2)
    json_side.set_user_field("Ann@x", "ratio", 0.5, section="preferences")
    json_side.update_auth_state("Ann@x", False)
    code, out, _ = kindle_cli("import-json", "--no-backup")
    assert (0, True) == (code, out.endswith("1 created, 0 updated, 0 unchanged\n"))

    db_side = manager(use_db=True)
    assert json_side.get_profile_for_email("ann@x") == db_side.get_profile_for_email("ann@x")
    db_side.set_user_field("ann@x", "theme", "dark", section="reading_settings")
    db_side.register_profile("bob@x", "AVD_bob")
    assert 0 == kindle_cli("export-json", "-o", str(users))[0]

    back = manager(use_db=False)
    assert ("dark", "AVD_bob", 0.5) == (
        back.get_user_field("Ann@x", "theme", section="reading_settings"),
        back.get_avd_for_email("bob@x"),
        back.get_user_field("Ann@x", "ratio", section="preferences"),
    )
    AVDProfileManager.reset_instance()


def test_both_managers_share_one_pool_per_process(monkeypatch: pytest.MonkeyPatch, app_env: dict[str, str],
                                                  store: object) -> None:
    from kindle_store.vnc_manager import VNCInstanceManager

    monkeypatch.setenv("USE_DATABASE_PROFILE_MANAGER", "true")
    for name, value in app_env.items():
        monkeypatch.setenv(name, value)
    AVDProfileManager.reset_instance()
    VNCInstanceManager.reset_instance()
    try:
        avd, vnc = AVDProfileManager.get_instance(), VNCInstanceManager.get_instance()
        avd.register_profile("pool@x", "AVD")
        assert (True, 1) == (avd.store is vnc.store, vnc.assign_instance_to_profile("pool@x")["id"])  # type: ignore[attr-defined,index]
    finally:
        AVDProfileManager.reset_instance()
        VNCInstanceManager.reset_instance()
