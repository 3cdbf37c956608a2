"""The application-facing VNC slot manager: one abstract API, a JSON and a PostgreSQL backend."""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any

from ._process import ProcessWide, ProcessWideManager
from ._values import check_storable
from .errors import InvalidProfile
from .settings import truthy

__all__ = ["INSTANCE_KEYS", "Instance", "VNCInstanceManager", "check_emulator_id", "is_int32", "new_instance",
           "ports_for"]

Instance = dict[str, Any]
"""One entry of vnc_instance_map.json's `instances` list."""

INSTANCE_KEYS = (
    "id",
    "display",
    "vnc_port",
    "appium_port",
    "emulator_port",
    "emulator_id",
    "assigned_profile",
    "appium_pid",
    "appium_running",
    "appium_last_health_check",
    "appium_system_port",
    "appium_chromedriver_port",
    "appium_mjpeg_server_port",
)
"""The keys of an instance dict, in the order the file writes them."""


def ports_for(n: int) -> dict[str, int]:
    """The X display and every port of instance `n` (the one place the formula lives)."""
    return {
        "display": n,
        "vnc_port": 5900 + n,
        "appium_port": 4723 + n,
        "emulator_port": 5554 + 2 * (n - 1),
        "appium_system_port": 8200 + n,
        "appium_chromedriver_port": 9515 + n,
        "appium_mjpeg_server_port": 7810 + n,
    }


def is_int32(n: Any) -> bool:
    """Whether a slot's id or port can be `n`: a 32-bit int (True and 1.0 are none, though they equal 1)."""
    return type(n) is int and -(2**31) <= n < 2**31


def check_emulator_id(emulator_id: Any) -> None:
    """InvalidProfile unless `emulator_id` is None or a string a slot can store."""
    if emulator_id is not None:
        if type(emulator_id) is not str:
            raise InvalidProfile(f"emulator_id must be a string or None, got {type(emulator_id).__name__}")
        check_storable(emulator_id, "emulator_id")


def new_instance(n: int, assigned_profile: str | None = None) -> Instance:
    """A fresh instance `n` with its ports, no emulator and Appium stopped."""
    fields: Instance = {
        "id": n,
        **ports_for(n),
        "emulator_id": None,
        "assigned_profile": assigned_profile,
        "appium_pid": None,
        "appium_running": False,
        "appium_last_health_check": None,
    }
    return {k: fields[k] for k in INSTANCE_KEYS}


class VNCInstanceManager(ProcessWideManager["VNCInstanceManager"]):
    """VNC/emulator slots assigned to emails (matched case-insensitively); backends implement the core."""

    # -- the abstract core -------------------------------------------------------------------------

    @abstractmethod
    def assign_instance_to_profile(self, email: str, instance_id: int | None = None) -> Instance | None:
        """The email's instance; else `instance_id` if free (else None); else the lowest free or a new one."""

    @abstractmethod
    def release_instance_from_profile(self, email: str) -> bool:
        """Clear the email's assignment, emulator id and Appium state; False if it holds no instance."""

    @abstractmethod
    def get_instance_for_profile(self, email: str) -> Instance | None:
        """The instance assigned to the email; None if there is none."""

    @abstractmethod
    def set_emulator_id(self, email: str, emulator_id: str | None) -> bool:
        """Set the emulator id of the email's instance; False if it holds no instance."""

    @abstractmethod
    def get_all_instances(self) -> list[Instance]:
        """Every instance, by id; [] if there are none."""

    @abstractmethod
    def reset_appium_states_on_startup(self) -> None:
        """Set appium_pid to None and appium_running to False on every instance."""

    @abstractmethod
    def mark_running_for_deployment(self, email: str, should_restart: bool = True) -> bool:
        """Set the profile's was_running_at_restart to true (or null); False, nothing created, if unknown."""

    @abstractmethod
    def get_running_at_restart(self) -> list[str]:
        """The stored emails of the profiles whose was_running_at_restart is true."""

    @abstractmethod
    def clear_running_at_restart_flags(self) -> None:
        """Set was_running_at_restart to null wherever it is set."""

    # -- derived, the same for every backend -------------------------------------------------------

    def get_assigned_instances(self) -> list[Instance]:
        """The instances assigned to some email, by id."""
        return [i for i in self.get_all_instances() if i.get("assigned_profile")]

    def _get(self, email: str, key: str) -> Any:
        inst = self.get_instance_for_profile(email)
        return None if inst is None else inst.get(key)

    def get_vnc_port(self, email: str) -> int | None:
        """The VNC port of the email's instance; None if it holds none."""
        port: int | None = self._get(email, "vnc_port")
        return port

    def get_appium_port(self, email: str) -> int | None:
        """The Appium port of the email's instance; None if it holds none."""
        port: int | None = self._get(email, "appium_port")
        return port

    def get_x_display(self, email: str) -> int | None:
        """The X display number of the email's instance; None if it holds none."""
        display: int | None = self._get(email, "display")
        return display

    def get_emulator_id(self, email: str) -> str | None:
        """The emulator id of the email's instance; None if it holds none or has no emulator."""
        emulator_id: str | None = self._get(email, "emulator_id")
        return emulator_id


def _from_env() -> VNCInstanceManager:
    if truthy("USE_DATABASE_PROFILE_MANAGER", os.environ.get("USE_DATABASE_PROFILE_MANAGER")):
        from ._vnc_db import DbVncManager

        return DbVncManager.from_env()
    from ._vnc_json import JsonVncManager

    return JsonVncManager(
        os.environ.get("KINDLE_VNC_MAP_JSON", "user_data/vnc_instance_map.json"),
        os.environ.get("KINDLE_USERS_JSON", "user_data/users.json"),
    )


VNCInstanceManager._process_wide = ProcessWide(_from_env, lambda manager: manager.close())
