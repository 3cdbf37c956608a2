"""The JSON backend of VNCInstanceManager: vnc_instance_map.json (and users.json for restart flags)."""

from __future__ import annotations

import os
from typing import Any

from ._avd_json import JsonProfileManager
from ._values import email_key
from .errors import InvalidVncFile
from .jsonfile import LockedJsonFile
from .profile import check_email, is_storable_email
from .vnc_manager import Instance, VNCInstanceManager, check_emulator_id, is_int32, new_instance

__all__ = ["JsonVncManager"]


def _empty_map() -> dict[str, Any]:
    return {"instances": [], "version": 1}


class JsonVncManager(VNCInstanceManager):
    """Slots in vnc_instance_map.json; every read-modify-write holds the file's exclusive lock."""

    def __init__(self, map_path: str | os.PathLike[str], users_path: str | os.PathLike[str]) -> None:
        self.map = LockedJsonFile(map_path, default=_empty_map, error=InvalidVncFile)
        self.profiles = JsonProfileManager(users_path)  # the restart flags, under users.json's own lock

    def __repr__(self) -> str:
        return f"JsonVncManager({str(self.map.path)!r}, {str(self.profiles.file.path)!r})"

    def _instances(self, doc: Any) -> list[Instance]:
        insts = doc.get("instances") if isinstance(doc, dict) else None
        if not isinstance(insts, list) or not all(isinstance(i, dict) for i in insts):
            raise InvalidVncFile(f"{self.map.path}: expected {{\"instances\": [objects...], \"version\": 1}}")
        return insts

    @staticmethod
    def _held_by(insts: list[Instance], email: str) -> list[Instance]:
        want = email_key(email)
        return [i for i in insts if isinstance(p := i.get("assigned_profile"), str) and email_key(p) == want]

    def assign_instance_to_profile(self, email: str, instance_id: int | None = None) -> Instance | None:
        """The email's instance; else `instance_id` if free (else None); else the lowest free or a new one."""
        check_email(email)
        with self.map.update() as doc:
            insts = self._instances(doc)
            mine = self._held_by(insts, email)
            if mine:
                return mine[0]
            if instance_id is not None:
                wanted = is_int32(instance_id)  # True or 1.0 equals slot 1, yet names no slot
                inst = next((i for i in insts if wanted and i.get("id") == instance_id), None)
                if inst is None or inst.get("assigned_profile"):
                    return None
            else:
                free = [i for i in insts if not i.get("assigned_profile")]
                if free:
                    inst = min(free, key=lambda i: i["id"])
                else:
                    inst = new_instance(max((i["id"] for i in insts), default=0) + 1)
                    insts.append(inst)
            inst["assigned_profile"] = email
            return inst

    def release_instance_from_profile(self, email: str) -> bool:
        """Clear the email's assignment, emulator id and Appium state; False if it holds no instance."""
        if not is_storable_email(email):
            return False
        with self.map.update() as doc:
            mine = self._held_by(self._instances(doc), email)
            for inst in mine:
                inst.update(assigned_profile=None, emulator_id=None, appium_pid=None, appium_running=False)
            return bool(mine)

    def get_instance_for_profile(self, email: str) -> Instance | None:
        """The instance assigned to the email; None if there is none."""
        if not is_storable_email(email):
            return None
        mine = self._held_by(self._instances(self.map.read()), email)
        return mine[0] if mine else None

    def set_emulator_id(self, email: str, emulator_id: str | None) -> bool:
        """Set the emulator id of the email's instance; False if it holds no instance."""
        check_emulator_id(emulator_id)
        if not is_storable_email(email):
            return False
        with self.map.update() as doc:
            mine = self._held_by(self._instances(doc), email)
            for inst in mine:
                inst["emulator_id"] = emulator_id
            return bool(mine)

    def get_all_instances(self) -> list[Instance]:
        """Every instance, by id; [] if there are none."""
        return sorted(self._instances(self.map.read()), key=lambda i: i["id"])

    def reset_appium_states_on_startup(self) -> None:
        """Set appium_pid to None and appium_running to False on every instance."""
        with self.map.update() as doc:
            for inst in self._instances(doc):
                inst.update(appium_pid=None, appium_running=False)

    def mark_running_for_deployment(self, email: str, should_restart: bool = True) -> bool:
        """Set the profile's was_running_at_restart to true (or null); False, nothing created, if unknown."""
        if not is_storable_email(email):
            return False
        return self.profiles.set_user_field(email, "was_running_at_restart", True if should_restart else None)

    def get_running_at_restart(self) -> list[str]:
        """The stored emails of the profiles whose was_running_at_restart is true."""
        return [k for k, p in self.profiles.get_all_profiles().items() if p.get("was_running_at_restart") is True]

    def clear_running_at_restart_flags(self) -> None:
        """Set was_running_at_restart to null wherever it is set."""
        with self.profiles.file.update() as doc:
            for p in self.profiles._profiles(doc).values():
                if p.get("was_running_at_restart") is True:
                    p["was_running_at_restart"] = None

    def close(self) -> None:
        """Nothing to release: no file stays open between calls."""
