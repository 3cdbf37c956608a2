"""The application-facing profile manager: one abstract API, a JSON and a PostgreSQL backend."""

from __future__ import annotations

import os
from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import Any

from ._process import ProcessWide, ProcessWideManager
from .settings import truthy

__all__ = ["AVDProfileManager", "ProfileDict"]

ProfileDict = dict[str, Any]
"""A users.json-shaped profile (DESIGN section 2)."""

_MISSING = object()


class AVDProfileManager(ProcessWideManager["AVDProfileManager"]):
    """Profiles keyed by email (matched case-insensitively); backends implement the abstract core."""

    # -- the abstract core -------------------------------------------------------------------------

    @abstractmethod
    def get_profile_for_email(self, email: str) -> ProfileDict | None:
        """A copy of the profile; None if no profile has this email."""

    @abstractmethod
    def get_all_profiles(self) -> dict[str, ProfileDict]:
        """Every profile keyed by its stored email; {} if there are none."""

    @abstractmethod
    def get_recently_used_profiles(self, limit: int = 10) -> list[ProfileDict]:
        """At most `limit` profiles, newest `last_used` first; profiles without `last_used` left out."""

    @abstractmethod
    def register_profile(self, email: str, avd_name: str, vnc_instance: int | None = None) -> bool:
        """True if created; False if it existed (its avd_name, and vnc_instance if given, updated)."""

    @abstractmethod
    def set_user_field(self, email: str, field: str, value: Any, section: str | None = None) -> bool:
        """Set profile[field] or profile[section][field]; False (nothing created) for an unknown email."""

    @abstractmethod
    def update_auth_state(self, email: str, authenticated: bool) -> bool:
        """Stamp auth_date (clearing auth_failed_date) or auth_failed_date; False for an unknown email."""

    @abstractmethod
    def save_profile_status(self, email: str, avd_name: str) -> bool:
        """Set last_used, last_used_date, avd_name and email, creating the profile if needed; True."""

    @abstractmethod
    def edit_profile(self, email: str) -> AbstractContextManager[ProfileDict]:
        """Yield the profile, written back atomically on exit; nothing written if the block raises."""

    # -- derived, the same for every backend -------------------------------------------------------

    def get_avd_for_email(self, email: str) -> str | None:
        """The profile's avd_name; None if there is no profile or no name."""
        avd_name: str | None = self.get_user_field(email, "avd_name")
        return avd_name

    def update_avd_name_for_email(self, email: str, avd_name: str) -> bool:
        """Set avd_name; False for an unknown email."""
        return self.set_user_field(email, "avd_name", avd_name)

    def get_user_field(self, email: str, field: str, default: Any = None, section: str | None = None) -> Any:
        """The value as stored (null gives None); `default` if the profile, section or key is absent."""
        profile = self.get_profile_for_email(email)
        if profile is None:
            return default
        container: Any = profile if section is None else profile.get(section)
        if not isinstance(container, dict):
            return default
        value = container.get(field, _MISSING)
        return default if value is _MISSING else value

    def save_style_setting(self, name: str, value: Any, email: str) -> bool:
        """Set library_settings[name]; False for an unknown email."""
        return self.set_user_field(email, name, value, section="library_settings")

    def save_reading_setting(self, name: str, value: Any, email: str) -> bool:
        """Set reading_settings[name]; False for an unknown email."""
        return self.set_user_field(email, name, value, section="reading_settings")

    def update_style_preference(self, is_updated: bool, email: str) -> bool:
        """Set styles_updated; False for an unknown email."""
        return self.set_user_field(email, "styles_updated", is_updated)


def _from_env() -> AVDProfileManager:
    if truthy("USE_DATABASE_PROFILE_MANAGER", os.environ.get("USE_DATABASE_PROFILE_MANAGER")):
        from ._avd_db import DbProfileManager

        return DbProfileManager.from_env()
    from ._avd_json import JsonProfileManager

    return JsonProfileManager(os.environ.get("KINDLE_USERS_JSON", "user_data/users.json"))


AVDProfileManager._process_wide = ProcessWide(_from_env, lambda manager: manager.close())
