"""VNCInstanceManager on PostgreSQL: a thin layer over the slot repository, one round trip per plain call.

Assignment is the one call with a protocol of its own (VncInstances.assign): one statement finds the email's
slot, the requested one, the lowest free one or creates the next; when a new slot was needed while another
transaction was creating one, or every free slot was being taken by another transaction (which may yet roll back),
it runs again in a transaction holding the slot-creation lock, where it waits for such a slot. A unique violation
(two requests for one email racing for two free slots; the constraints are the last line of defence) is
retried, with backoff, up to ASSIGN_ATTEMPTS times in all; statements the server rolled back are retried by
Store.call. Asking again for the same email is harmless, so after a lost connection the call is retried too.
"""

from __future__ import annotations

import logging
import random
import time

from psycopg.errors import UniqueViolation

from .profile import check_email, is_storable_email
from .store import Store, StoreBacked
from .vnc import VncInstance, VncInstances
from .vnc_manager import Instance, VNCInstanceManager, check_emulator_id, is_int32

__all__ = ["ASSIGN_ATTEMPTS", "DbVncManager"]

logger = logging.getLogger("kindle_store")

#: how often assign_instance_to_profile runs its statement in all before it gives up
ASSIGN_ATTEMPTS = 5


def _dict(inst: VncInstance | None) -> Instance | None:
    return None if inst is None else inst.to_dict()


class DbVncManager(StoreBacked, VNCInstanceManager):
    """Slots in PostgreSQL; every method is atomic, and no two emails ever share a slot."""

    def __init__(self, store: Store, *, owns_store: bool = False) -> None:
        """A manager on `store`; close() closes the store only if `owns_store`."""
        super().__init__(store, owns_store=owns_store)
        self.instances = VncInstances(store.schema)

    def __repr__(self) -> str:
        return f"DbVncManager({self.store!r})"

    # -- slots -----------------------------------------------------------------------------------------

    def assign_instance_to_profile(self, email: str, instance_id: int | None = None) -> Instance | None:
        """The email's instance; else `instance_id` if free (else None); else the lowest free or a new one."""
        check_email(email)
        if instance_id is not None and not is_int32(instance_id):
            return self.get_instance_for_profile(email)  # no slot has such an id: taken-or-unknown
        delay = 0.005
        for attempt in range(1, ASSIGN_ATTEMPTS + 1):
            try:
                inst = self._assign_once(email, instance_id, locked=attempt > 1)
            except UniqueViolation:
                if attempt == ASSIGN_ATTEMPTS:
                    raise
                logger.info("assigning a VNC slot to %s hit a unique constraint (attempt %d), retrying",
                            email, attempt)
                time.sleep(delay * (1 + random.random()))
                delay *= 2
                continue
            if inst is not None or instance_id is not None:
                return _dict(inst)
            logger.debug("the VNC slots for %s were being created or taken elsewhere; retrying under the lock", email)
        raise RuntimeError(f"no VNC slot could be assigned to {email!r} in {ASSIGN_ATTEMPTS} attempts")

    def _assign_once(self, email: str, instance_id: int | None, *, locked: bool) -> VncInstance | None:
        """One run of the assignment statement: autocommit, or (locked) in a transaction holding the lock."""
        return self.store.call(lambda c: self.instances.assign(c, email, instance_id, wait_for_lock=locked),
                               idempotent=True, transaction=locked)

    def release_instance_from_profile(self, email: str) -> bool:
        """Clear the email's assignment, emulator id and Appium state; False if it holds no instance."""
        if not is_storable_email(email):
            return False
        # not idempotent: after a lost commit, a second run would answer False for a slot it just freed
        return self.store.call(lambda c: self.instances.release(c, email), idempotent=False)

    def get_instance_for_profile(self, email: str) -> Instance | None:
        """The instance assigned to the email; None if there is none."""
        if not is_storable_email(email):
            return None
        return _dict(self.store.call(lambda c: self.instances.get(c, email), idempotent=True))

    def set_emulator_id(self, email: str, emulator_id: str | None) -> bool:
        """Set the emulator id of the email's instance; False if it holds no instance."""
        check_emulator_id(emulator_id)
        if not is_storable_email(email):
            return False
        return self.store.call(lambda c: self.instances.set_emulator_id(c, email, emulator_id), idempotent=True)

    def get_all_instances(self) -> list[Instance]:
        """Every instance, by id; [] if there are none."""
        return [i.to_dict() for i in self.store.call(self.instances.all, idempotent=True)]

    def reset_appium_states_on_startup(self) -> None:
        """Set appium_pid to None and appium_running to False on every instance."""
        self.store.call(self.instances.reset_appium_states, idempotent=True)

    # -- the profiles' was_running_at_restart ------------------------------------------------------------

    def mark_running_for_deployment(self, email: str, should_restart: bool = True) -> bool:
        """Set the profile's was_running_at_restart to true (or null); False, nothing created, if unknown."""
        if not is_storable_email(email):
            return False
        flag = True if should_restart else None
        return self.store.call(lambda c: self.store.profiles.set_field(c, email, "was_running_at_restart", flag),
                               idempotent=True)

    def get_running_at_restart(self) -> list[str]:
        """The stored emails of the profiles whose was_running_at_restart is true."""
        return self.store.call(self.instances.running_at_restart, idempotent=True)

    def clear_running_at_restart_flags(self) -> None:
        """Set was_running_at_restart to null wherever it is set."""
        self.store.call(self.instances.clear_running_flags, idempotent=True)
