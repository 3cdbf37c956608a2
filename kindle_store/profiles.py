"""The profile repository: typed functions over sql/users.sql. The caller owns the connection and transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg import Connection
from psycopg.rows import dict_row
from psycopg.types.json import Json

from ._values import check_user_field
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


#: the values a document key can hold that are compared as themselves (immutable; their type compared too)
_SCALARS = frozenset({str, int, bool, type(None)})
#: stands for a key the document did not have
_GONE = object()


def _changed(email: str, key: Any, before: Any, after: Any) -> bool:
    """Whether the block changed document key `key` from `before` (see edit) to `after`; InvalidProfile for a
    changed value that is not JSON or a key that cannot be stored."""
    if type(after) in _SCALARS:
        changed = type(after) is not type(before) or after != before
    else:
        try:  # written out even when `before` is no JSON text (a new key): a key in it may be no string
            changed = orjson.dumps(after, option=orjson.OPT_SORT_KEYS) != before
        except TypeError as e:
            raise InvalidProfile(f"{email}: {key!r:.40}: not JSON: {e}") from None
    if changed:
        if type(key) is not str:
            raise InvalidProfile(f"{email}: key {key!r:.40} is not a string")
        check_value(key, f"{email}: key {key[:40]!r}")
    return changed


def _not_an_object(email: str, section: str, key: str) -> str:
    return f"{email}: {section} is not an object, cannot set {section}.{key}"


def _raw(exact: bool, value: Any) -> Json | None:
    return None if exact else Json(value)


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
        return Q[name].run(conn, self.schema, params, dicts=False, **idents)

    def _rows(self, conn: Connection[Any], name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The `profile_rows` rows a read query gives."""
        found = Q[name].run(conn, self.schema, params, dicts=True)
        if Q[name].kind == "one":
            return [] if found is None else [found]
        return found  # type: ignore[no-any-return]

    # -- reads: typed Profiles, or straight to users.json documents (what .to_dict() gives, built faster) --------

    def get(self, conn: Connection[Any], email: str) -> Profile | None:
        """The profile of `email` (any case); None if there is none."""
        rows = self._rows(conn, "get_profile", {"email": email})
        return Profile.from_row(rows[0]) if rows else None

    def get_document(self, conn: Connection[Any], email: str) -> dict[str, Any] | None:
        """The users.json document of `email` (any case); None if there is none."""
        rows = self._rows(conn, "get_profile", {"email": email})
        return Profile.document(rows[0]) if rows else None

    def all(self, conn: Connection[Any]) -> list[Profile]:
        """Every profile, oldest first."""
        return [Profile.from_row(row) for row in self._rows(conn, "list_profiles", {})]

    def all_documents(self, conn: Connection[Any]) -> dict[str, dict[str, Any]]:
        """Every profile's document by its stored email, oldest first."""
        return {row["email"]: Profile.document(row) for row in self._rows(conn, "list_profiles", {})}

    def iter_documents(self, conn: Connection[Any], batch: int = 500) -> Iterator[tuple[str, dict[str, Any]]]:
        """(email, document) of every profile, oldest first, streamed through a server-side cursor (memory stays
        flat); needs a transaction."""
        with conn.cursor(name="kindle_store_profiles", row_factory=dict_row) as cur:
            cur.itersize = batch
            cur.execute(Q["list_profiles"].compose(self.schema))
            for row in cur:
                yield row["email"], Profile.document(row)

    def recent(self, conn: Connection[Any], limit: int = 10) -> list[Profile]:
        """The `limit` profiles used most recently, newest first; never-used profiles are left out."""
        return [Profile.from_row(row) for row in self._rows(conn, "recent_profiles", {"limit": limit})]

    def recent_documents(self, conn: Connection[Any], limit: int = 10) -> list[dict[str, Any]]:
        """recent(), as documents."""
        return [Profile.document(row) for row in self._rows(conn, "recent_profiles", {"limit": limit})]

    # -- writes: one statement each --------------------------------------------------------------------------

    def register(self, conn: Connection[Any], email: str, avd_name: str | None,
                 vnc_instance: int | None = None) -> bool:
        """Create {email, avd_name[, vnc_instance]} or update those fields (vnc_instance only when it is not
        None); True if it was created. A value a typed column cannot hold is kept as written."""
        check_email(email)
        avd, exact = encode(Profile.specs()["avd_name"].kind, avd_name, "avd_name", strict=False)
        vnc, vnc_exact = encode(Profile.specs()["vnc_instance"].kind, vnc_instance, "vnc_instance", strict=False)
        return bool(self._one(conn, "register_profile", {
            "email": email, "avd_name": avd, "avd_raw": _raw(exact, avd_name), "vnc_instance": vnc,
            "vnc_raw": None if vnc_instance is None else _raw(vnc_exact, vnc_instance)}))

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

    def set_field(self, conn: Connection[Any], email: str, key: str, value: Any,
                  section: str | None = None) -> bool:
        """profile[section][key] = value (or profile[key] without a section); False for an unknown email, and
        InvalidProfile (nothing written) when the section holds something other than an object or null.

        One statement; a whole section, the whole preferences or a key of an unknown section is a locked
        read-modify-write instead, in a transaction of its own on an autocommit connection.
        """
        check_user_field(key, value, section)
        where = f"{email}: {key}" if section is None else f"{email}: {section}.{key}"
        if section is None:
            structural = key in SECTIONS or key == _PREFERENCES
        else:
            structural = section not in SECTIONS and section != _PREFERENCES
        if structural:
            with conn.transaction() if conn.autocommit else nullcontext():
                return self._edit_set(conn, email, key, value, section)
        if section is None:
            spec = Profile.specs().get(key)
            if spec is not None:
                column, exact = encode(spec.kind, value, where, strict=False)
                found = self._one(conn, "set_user_column", {
                    "email": email, "key": key, "value": column, "raw": _raw(exact, value)}, column=spec.attr)
            else:
                found = self._one(conn, "set_user_extra", {"email": email, "key": key, "raw": Json(value)})
        else:
            if section in SECTIONS:
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
            if found is not None and found[1] is not None:  # the section holds no object: nothing was written
                raise InvalidProfile(_not_an_object(email, section, key))
        return found is not None

    def _edit_set(self, conn: Connection[Any], email: str, key: str, value: Any, section: str | None) -> bool:
        """A structural set as a locked read-modify-write (in a transaction)."""
        try:
            with self.edit(conn, email) as doc:
                if section is None:
                    doc[key] = value
                else:
                    target = doc.get(section)
                    if target is None:  # absent, or stored as null: the section is created
                        target = doc[section] = {}
                    if type(target) is not dict:
                        raise InvalidProfile(_not_an_object(email, section, key))
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
        # One statement locks and reads. In READ COMMITTED its snapshot predates a wait for the lock, so after
        # one (another writer committed meanwhile: the locked version is newer) the profile is read again.
        row = Q["lock_and_get_profile"].run(conn, self.schema, {"email": email}, dicts=True)
        if row is not None and row["locked_version"] != row["version"]:
            row = Q["get_profile"].run(conn, self.schema, {"email": email}, dicts=True)
        if row is None:
            raise ProfileNotFound(f"no profile for {email!r}")
        doc = Profile.document(row)
        # what tells whether a top-level value changed: a scalar itself (immutable), anything else (it may be
        # changed in place; 0.0 == -0.0) as its JSON text with sorted keys
        before = {key: value if type(value) in _SCALARS else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
                  for key, value in doc.items()}
        yield doc
        changed = [key for key, value in doc.items()
                   if value is not (old := before.get(key, _GONE)) and _changed(email, key, old, value)]
        changed += [key for key in before if key not in doc]
        if changed:
            # only what changed is set: a profile holding the stored id and extra is enough for write()
            profile = Profile(email=row["email"], id=row["id"], extra=dict(row["extra"]))
            for key in changed:
                if key in doc:
                    profile.set_key(key, doc[key], f"{email}: {key}", strict=False)
                else:
                    profile.drop_key(key)
            self.write(conn, profile, changed)

    def write(self, conn: Connection[Any], profile: Profile, keys: Iterable[str]) -> None:
        """Store the top-level `keys` of `profile` and its extra (same id), in one round trip, bumping version
        once; nothing else of `profile` is read."""
        assert profile.id is not None
        uid = profile.id
        specs = Profile.specs()
        columns: dict[str, Any] = {"extra": profile.extra}
        keys = list(keys)
        # several statements go in one round trip; one alone is cheaper without psycopg's pipeline machinery
        several = any(key in SECTIONS or key == _PREFERENCES for key in keys)
        with conn.pipeline() if several else nullcontext():
            for key in keys:
                if key in specs:
                    columns[specs[key].attr] = getattr(profile, specs[key].attr)
                elif key in SECTIONS:
                    self._one(conn, "delete_section", {"user_id": uid}, table=key)
                    section = getattr(profile, key)
                    if section is not None:
                        self._one(conn, "insert_section", {"row": Json(_section_row(uid, section))}, table=key)
                elif key == _PREFERENCES:
                    columns["has_preferences"] = profile.preferences is not None
                    self._one(conn, "delete_preferences", {"user_id": uid})
                    if profile.preferences:
                        self._one(conn, "insert_preferences", {"user_id": uid, "prefs": Json(profile.preferences)})
            self._one(conn, "update_user_columns", {"id": uid, "columns": Json(columns)})
