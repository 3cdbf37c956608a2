"""The profile repository: typed functions over sql/users.sql. The caller owns the connection and transaction."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import Connection
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Json

from .errors import InvalidProfile, ProfileNotFound
from .profile import SECTIONS, Profile, Section, check_email, check_value, encode
from .queries import queries

__all__ = ["Profiles", "same_json"]

Q = queries("users")
_PREFERENCES = "preferences"


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, types included (1, 1.0 and true all differ)."""
    opt = orjson.OPT_SORT_KEYS
    return orjson.dumps(a, option=opt) == orjson.dumps(b, option=opt)


def _raw(exact: bool, value: Any) -> Json | None:
    return None if exact else Json(value)


def _user_row(p: Profile) -> dict[str, Any]:
    row: dict[str, Any] = {s.attr: getattr(p, s.attr) for s in Profile.specs().values()}
    row["has_preferences"] = p.preferences is not None
    row["extra"] = p.extra
    return row


def _section_row(user_id: int, s: Section) -> dict[str, Any]:
    row: dict[str, Any] = {spec.attr: getattr(s, spec.attr) for spec in s.specs().values()}
    row["user_id"] = user_id
    row["extra"] = s.extra
    return row


class Profiles:
    """Typed queries on the profiles of one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def _one(self, conn: Connection[Any], name: str, params: dict[str, Any], **idents: str) -> Any:
        return Q[name].run(conn, self.schema, params, row_factory=tuple_row, **idents)

    def _profiles(self, conn: Connection[Any], name: str, params: dict[str, Any]) -> list[Profile]:
        rows = Q[name].run(conn, self.schema, params, row_factory=dict_row)
        if Q[name].kind == "one":
            rows = [] if rows is None else [rows]
        return [Profile.from_row(r) for r in rows]

    # -- reads --------------------------------------------------------------------------------------------------

    def get(self, conn: Connection[Any], email: str) -> Profile | None:
        """The profile of `email` (any case); None if there is none."""
        found = self._profiles(conn, "get_profile", {"email": email})
        return found[0] if found else None

    def all(self, conn: Connection[Any]) -> list[Profile]:
        """Every profile, oldest first."""
        return self._profiles(conn, "list_profiles", {})

    def iter_all(self, conn: Connection[Any], batch: int = 500) -> Iterator[Profile]:
        """Every profile, streamed through a server-side cursor (memory stays flat); needs a transaction."""
        with conn.cursor(name="kindle_store_profiles", row_factory=dict_row) as cur:
            cur.itersize = batch
            cur.execute(Q["list_profiles"].compose(self.schema))
            for row in cur:
                yield Profile.from_row(row)

    def recent(self, conn: Connection[Any], limit: int = 10) -> list[Profile]:
        """The `limit` profiles used most recently, newest first; never-used profiles are left out."""
        return self._profiles(conn, "recent_profiles", {"limit": limit})

    # -- writes: one statement each --------------------------------------------------------------------------

    def register(self, conn: Connection[Any], email: str, avd_name: str | None,
                 vnc_instance: int | None = None) -> bool:
        """Create {email, avd_name[, vnc_instance]} or update those fields; True if it was created."""
        check_email(email)
        avd, exact = encode(Profile.specs()["avd_name"].kind, avd_name, "avd_name", strict=False)
        vnc, _ = encode(Profile.specs()["vnc_instance"].kind, vnc_instance, "vnc_instance")
        return bool(self._one(conn, "register_profile", {
            "email": email, "avd_name": avd, "avd_raw": _raw(exact, avd_name), "vnc_instance": vnc}))

    def save_status(self, conn: Connection[Any], email: str, avd_name: str | None,
                    now: datetime | None = None) -> bool:
        """Set last_used, last_used_date, avd_name and email (creating the profile); True if it was created."""
        check_email(email)
        now = now or datetime.now()
        avd, exact = encode(Profile.specs()["avd_name"].kind, avd_name, "avd_name", strict=False)
        return bool(self._one(conn, "save_profile_status", {
            "email": email, "avd_name": avd, "avd_raw": _raw(exact, avd_name),
            "last_used": datetime.fromtimestamp(int(now.timestamp()), UTC),
            "last_used_date": now.replace(tzinfo=UTC) if now.tzinfo is None else now}))

    @staticmethod
    def needs_edit(key: str, section: str | None) -> bool:
        """True for the structural sets (a whole section, a key of an unknown section): read-modify-write."""
        if section is None:
            return key in SECTIONS or key == _PREFERENCES
        return section not in SECTIONS and section != _PREFERENCES

    def set_field(self, conn: Connection[Any], email: str, key: str, value: Any,
                  section: str | None = None) -> bool:
        """profile[section][key] = value (or profile[key] without a section); False for an unknown email."""
        where = f"{email}: {key}" if section is None else f"{email}: {section}.{key}"
        check_value(key, where)
        if section is not None:
            check_value(section, where)
        check_value(value, where)
        if self.needs_edit(key, section):
            return self._edit_set(conn, email, key, value, section)
        if section is None:
            spec = Profile.specs().get(key)
            if spec is not None:
                column, exact = encode(spec.kind, value, where, strict=False)
                found = self._one(conn, "set_user_column", {
                    "email": email, "key": key, "value": column, "raw": _raw(exact, value)}, column=spec.attr)
            else:
                found = self._one(conn, "set_user_extra", {"email": email, "key": key, "raw": Json(value)})
        elif section in SECTIONS:
            spec = SECTIONS[section].specs().get(key)
            if spec is not None:
                column, exact = encode(spec.kind, value, where, strict=False)
                found = self._one(conn, "set_section_column", {
                    "email": email, "section": section, "key": key, "value": column,
                    "raw": _raw(exact, value)}, table=section, column=spec.attr)
            else:
                found = self._one(conn, "set_section_extra", {
                    "email": email, "section": section, "key": key, "raw": Json(value)}, table=section)
        else:
            found = self._one(conn, "set_preference", {"email": email, "key": key, "raw": Json(value)})
        return found is not None

    def _edit_set(self, conn: Connection[Any], email: str, key: str, value: Any, section: str | None) -> bool:
        """The structural sets as a locked read-modify-write (inside the caller's transaction)."""
        try:
            with self.edit(conn, email) as doc:
                if section is None:
                    doc[key] = value
                else:
                    target = doc.get(section)
                    if target is None:  # absent, or stored as null: the section is created
                        target = doc[section] = {}
                    if type(target) is not dict:
                        raise InvalidProfile(f"{email}: {section} is not an object, cannot set {section}.{key}")
                    target[key] = value
        except ProfileNotFound:
            return False
        return True

    def update_auth_state(self, conn: Connection[Any], email: str, authenticated: bool,
                          now: datetime | None = None) -> bool:
        """True: auth_date = now, auth_failed_date = null; False: auth_failed_date = now. False if unknown."""
        now = now or datetime.now()
        when = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        return self._one(conn, "update_auth_state",
                         {"email": email, "authenticated": bool(authenticated), "now": when}) is not None

    def delete(self, conn: Connection[Any], email: str) -> bool:
        """Delete a profile and everything hanging off it; False if there was none."""
        return bool(self._one(conn, "delete_profile", {"email": email}))

    # -- read-modify-write ---------------------------------------------------------------------------------------

    @contextmanager
    def edit(self, conn: Connection[Any], email: str) -> Iterator[dict[str, Any]]:
        """Lock the profile (SELECT ... FOR UPDATE), yield its document, write back what the block changed.

        Raises ProfileNotFound for an unknown email. If the block raises, nothing is written (the caller's
        transaction decides the rest). Must run inside a transaction.
        """
        # Lock, then read: two statements sent together (one round trip). In READ COMMITTED the read takes its
        # snapshot after the lock is granted, so it sees the last committed writer's profile.
        with conn.pipeline():
            locked = Q["lock_profile"].cursor(conn, self.schema, {"email": email})
            read = Q["get_profile"].cursor(conn, self.schema, {"email": email}, row_factory=dict_row)
        row = read.fetchone() if locked.fetchone() is not None else None
        if row is None:
            raise ProfileNotFound(f"no profile for {email!r}")
        before = Profile.from_row(row)
        old = before.to_dict()
        doc = copy.deepcopy(old)
        yield doc
        if not same_json(old, doc):
            self.write(conn, before, Profile.from_dict(before.email, doc, strict=False))

    def write(self, conn: Connection[Any], old: Profile, new: Profile) -> None:
        """Write the parts of `new` that differ from `old` (same profile id), bumping version once."""
        assert old.id is not None
        uid = old.id
        with conn.pipeline():
            self._one(conn, "update_user_row", {"id": uid, "row": Json(_user_row(new))})
            for name in SECTIONS:
                before, after = getattr(old, name), getattr(new, name)
                if same_json(before and before.to_dict(), after and after.to_dict()):
                    continue
                if before is not None:
                    self._one(conn, "delete_section", {"user_id": uid}, table=name)
                if after is not None:
                    self._one(conn, "insert_section", {"row": Json(_section_row(uid, after))}, table=name)
            if not same_json(old.preferences, new.preferences):
                self._one(conn, "delete_preferences", {"user_id": uid})
                if new.preferences:
                    self._one(conn, "insert_preferences", {"user_id": uid, "prefs": Json(new.preferences)})
