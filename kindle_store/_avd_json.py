"""The JSON backend of AVDProfileManager: users.json, locked across processes, replaced atomically."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._values import DEPTH_TOP, check_storable, check_user_field, email_key, now_iso, now_seconds
from .avd import AVDProfileManager, ProfileDict
from .errors import InvalidProfile, InvalidUsersFile, ProfileNotFound
from .jsonfile import LockedJsonFile
from .profile import check_email

__all__ = ["JsonProfileManager"]


def find_email(doc: dict[str, Any], email: str) -> str | None:
    """The stored key for `email`: the exact spelling first, else the first case-insensitive match."""
    if email in doc:
        return email
    want = email_key(email)
    return next((k for k in doc if email_key(k) == want), None)


class JsonProfileManager(AVDProfileManager):
    """Profiles in one users.json; every read-modify-write holds the file's exclusive lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.file = LockedJsonFile(path, error=InvalidUsersFile)

    def __repr__(self) -> str:
        return f"JsonProfileManager({str(self.file.path)!r})"

    def _profiles(self, doc: Any) -> dict[str, ProfileDict]:
        if not isinstance(doc, dict):
            raise InvalidUsersFile(f"{self.file.path}: the document is not an object keyed by email")
        bad = next((k for k, p in doc.items() if not isinstance(p, dict)), None)
        if bad is not None:
            raise InvalidUsersFile(f"{self.file.path}: profile {bad!r} is not an object")
        return doc

    def _profile(self, doc: dict[str, ProfileDict], email: str) -> tuple[str, ProfileDict] | None:
        key = find_email(doc, email)
        return None if key is None else (key, doc[key])

    @contextmanager
    def _edit(self, email: str) -> Iterator[tuple[str, ProfileDict] | None]:
        with self.file.update() as doc:
            yield self._profile(self._profiles(doc), email)

    def get_profile_for_email(self, email: str) -> ProfileDict | None:
        """A copy of the profile; None if no profile has this email."""
        found = self._profile(self._profiles(self.file.read()), email)
        return None if found is None else found[1]

    def get_all_profiles(self) -> dict[str, ProfileDict]:
        """Every profile keyed by its stored email; {} if there are none."""
        return self._profiles(self.file.read())

    def get_recently_used_profiles(self, limit: int = 10) -> list[ProfileDict]:
        """At most `limit` profiles, newest `last_used` first; profiles without `last_used` left out."""
        used = [p for p in self.get_all_profiles().values() if type(p.get("last_used")) in (int, float)]
        used.sort(key=lambda p: p["last_used"], reverse=True)
        return used[: max(limit, 0)]

    def register_profile(self, email: str, avd_name: str, vnc_instance: int | None = None) -> bool:
        """True if created; False if it existed (its avd_name, and vnc_instance if given, updated)."""
        check_email(email)  # as the database and the importer take it
        check_storable(avd_name, "field 'avd_name'", DEPTH_TOP)
        check_storable(vnc_instance, "field 'vnc_instance'", DEPTH_TOP)
        with self.file.update() as doc:
            found = self._profile(self._profiles(doc), email)
            if found is not None:
                found[1]["avd_name"] = avd_name
                if vnc_instance is not None:
                    found[1]["vnc_instance"] = vnc_instance
                return False
            doc[email] = {"email": email, "avd_name": avd_name}
            if vnc_instance is not None:
                doc[email]["vnc_instance"] = vnc_instance
            return True

    def set_user_field(self, email: str, field: str, value: Any, section: str | None = None) -> bool:
        """Set profile[field] or profile[section][field]; False (nothing created) for an unknown email."""
        check_user_field(field, value, section)
        with self._edit(email) as found:
            if found is None:
                return False
            key, profile = found
            target = profile
            if section is not None:
                if profile.get(section) is None:  # absent or null: the section is created
                    profile[section] = {}
                target = profile[section]
                if not isinstance(target, dict):
                    raise InvalidProfile(
                        f"cannot set field {field!r} in section {section!r} of {key!r}: "
                        f"the section holds a {type(target).__name__}, not an object"
                    )
            target[field] = value
            return True

    def update_auth_state(self, email: str, authenticated: bool) -> bool:
        """Stamp auth_date (clearing auth_failed_date) or auth_failed_date; False for an unknown email."""
        with self._edit(email) as found:
            if found is None:
                return False
            profile = found[1]
            if authenticated:
                profile["auth_date"] = now_iso()
                profile["auth_failed_date"] = None
            else:
                profile["auth_failed_date"] = now_iso()
            return True

    def save_profile_status(self, email: str, avd_name: str) -> bool:
        """Set last_used, last_used_date, avd_name and email, creating the profile if needed; True."""
        check_email(email)  # as the database and the importer take it
        check_storable(avd_name, "field 'avd_name'", DEPTH_TOP)
        with self.file.update() as doc:
            found = self._profile(self._profiles(doc), email)
            key, profile = found if found is not None else (email, doc.setdefault(email, {}))
            profile["last_used"] = now_seconds()
            profile["last_used_date"] = now_iso()
            profile["avd_name"] = avd_name
            profile["email"] = key
            return True

    @contextmanager
    def edit_profile(self, email: str) -> Iterator[ProfileDict]:
        """Yield the profile, written back atomically on exit; nothing written if the block raises."""
        with self._edit(email) as found:
            if found is None:
                raise ProfileNotFound(f"no profile for {email!r}")
            key, profile = found
            yield profile
            check_storable(profile, f"profile {key!r}")

    def close(self) -> None:
        """Nothing to release: no file stays open between calls."""
