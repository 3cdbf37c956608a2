"""AVDProfileManager on PostgreSQL: a thin layer over the profile repository, one round trip per plain call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .avd import AVDProfileManager
from .store import Store

__all__ = ["DbProfileManager"]


class DbProfileManager(AVDProfileManager):
    """Profiles in PostgreSQL; every method is atomic, `edit_profile` holds the row lock for its block."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.profiles = store.profiles

    @classmethod
    def from_env(cls) -> DbProfileManager:
        """The manager on DATABASE_URL / KINDLE_SCHEMA; SchemaBehind if the schema needs migrating."""
        store = Store.from_env()
        store.require_current_schema()
        return cls(store)

    def close(self) -> None:
        self.store.close()

    def get_profile_for_email(self, email: str) -> dict[str, Any] | None:
        with self.store.autocommit() as conn:
            p = self.profiles.get(conn, email)
        return None if p is None else p.to_dict()

    def get_all_profiles(self) -> dict[str, dict[str, Any]]:
        with self.store.autocommit() as conn:
            return {p.email: p.to_dict() for p in self.profiles.all(conn)}

    def get_recently_used_profiles(self, limit: int = 10) -> list[dict[str, Any]]:
        with self.store.autocommit() as conn:
            return [p.to_dict() for p in self.profiles.recent(conn, limit)]

    def register_profile(self, email: str, avd_name: str, vnc_instance: int | None = None) -> bool:
        with self.store.autocommit() as conn:
            return self.profiles.register(conn, email, avd_name, vnc_instance)

    def set_user_field(self, email: str, field: str, value: Any, section: str | None = None) -> bool:
        with self.store.autocommit() as conn:
            if self.profiles.needs_edit(field, section):
                with conn.transaction():
                    return self.profiles.set_field(conn, email, field, value, section)
            return self.profiles.set_field(conn, email, field, value, section)

    def update_auth_state(self, email: str, authenticated: bool) -> bool:
        with self.store.autocommit() as conn:
            return self.profiles.update_auth_state(conn, email, authenticated)

    def save_profile_status(self, email: str, avd_name: str) -> bool:
        with self.store.autocommit() as conn:
            self.profiles.save_status(conn, email, avd_name)
        return True

    @contextmanager
    def edit_profile(self, email: str) -> Iterator[dict[str, Any]]:
        with self.store.connection() as conn, self.profiles.edit(conn, email) as doc:
            yield doc
