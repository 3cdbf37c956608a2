"""AVDProfileManager on PostgreSQL: a thin layer over the profile repository, one round trip per plain call.

Every call goes through Store.call: a statement the server rolled back (deadlock, serialization failure) is
retried; after a lost connection only the idempotent calls (reads, plain sets, status stamps) are retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ._values import check_user_field
from .avd import AVDProfileManager
from .errors import ProfileNotFound
from .profile import is_storable_email
from .store import Store, StoreBacked

__all__ = ["DbProfileManager"]

_BIGINT_MAX = 2**63 - 1


class DbProfileManager(StoreBacked, AVDProfileManager):
    """Profiles in PostgreSQL; every method is atomic, `edit_profile` holds the row lock for its block."""

    def __init__(self, store: Store, *, owns_store: bool = False) -> None:
        """A manager on `store`; close() closes the store only if `owns_store`."""
        super().__init__(store, owns_store=owns_store)
        self.profiles = store.profiles

    def get_profile_for_email(self, email: str) -> dict[str, Any] | None:
        if not is_storable_email(email):
            return None
        return self.store.call(lambda c: self.profiles.get_document(c, email), idempotent=True)

    def get_all_profiles(self) -> dict[str, dict[str, Any]]:
        return self.store.call(self.profiles.all_documents, idempotent=True)

    def get_recently_used_profiles(self, limit: int = 10) -> list[dict[str, Any]]:
        limit = max(0, min(limit, _BIGINT_MAX))  # LIMIT is a bigint; a negative limit gives [] as in JSON
        return self.store.call(lambda c: self.profiles.recent_documents(c, limit), idempotent=True)

    def register_profile(self, email: str, avd_name: str, vnc_instance: int | None = None) -> bool:
        # not idempotent: a retry after a lost commit would answer "existed" for a profile it just created
        return self.store.call(lambda c: self.profiles.register(c, email, avd_name, vnc_instance),
                               idempotent=False)

    def set_user_field(self, email: str, field: str, value: Any, section: str | None = None) -> bool:
        if not is_storable_email(email):
            check_user_field(field, value, section)  # bad input is refused before "no such profile"
            return False
        return self.store.call(lambda c: self.profiles.set_field(c, email, field, value, section), idempotent=True)

    def update_auth_state(self, email: str, authenticated: bool) -> bool:
        if not is_storable_email(email):
            return False
        now = datetime.now()  # fixed before the call, so a retry writes the same stamp
        return self.store.call(lambda c: self.profiles.update_auth_state(c, email, authenticated, now),
                               idempotent=True)

    def save_profile_status(self, email: str, avd_name: str) -> bool:
        now = datetime.now()
        self.store.call(lambda c: self.profiles.save_status(c, email, avd_name, now), idempotent=True)
        return True

    @contextmanager
    def edit_profile(self, email: str) -> Iterator[dict[str, Any]]:
        # Taking the lock and reading is retried like any read; once the block has run it cannot be re-run,
        # so a failure while writing back propagates (nothing of the block is then committed).
        if not is_storable_email(email):
            raise ProfileNotFound(f"no profile for {email!r}")
        doc, stack = self.store.enter(
            lambda st: st.enter_context(self.profiles.edit(st.enter_context(self.store.connection()), email)),
            idempotent=True)
        with self.store.translated(), stack:
            yield doc
