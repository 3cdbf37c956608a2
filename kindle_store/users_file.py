"""users.json in and out: a lossless bulk import in one transaction, a streaming export, and verify.

The import validates the whole file before it touches anything, writes `PATH.backup`, then in one transaction
compares the file with the stored profiles (type-exact) and writes only the new and changed profiles, with a
fixed handful of set-based statements (sql/import.sql). Profiles the file lacks are kept and counted.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path
from typing import Any, TextIO

import orjson
from psycopg import Connection
from psycopg.types.json import Json

from .errors import InvalidProfile, InvalidUsersFile
from .jsonfile import atomic_write, load_json, one_line, write_backup
from .migrate import require_current
from .profile import SECTIONS, Kind, Profile, Section, check_email, json_type
from .profiles import same_json
from .queries import queries
from .store import Store

__all__ = ["export_documents", "export_file", "import_file", "load_users", "verify_file"]

Q = queries("import")
_SHOW_UPDATED = 20
_PROGRESS_MIN = 2000


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[:n] + "..."


# -- reading and validating the file -------------------------------------------------------------------------


def load_users(path: Path, data: bytes) -> dict[str, Any]:
    """Parse users.json bytes: an object keyed by email; InvalidUsersFile with the byte offset otherwise."""
    doc = load_json(path, data, InvalidUsersFile)
    if type(doc) is not dict:
        raise InvalidUsersFile(f"{path}: the top level must be an object keyed by email, got {json_type(doc)}")
    return doc


_KNOWN_TOP = frozenset({*Profile.specs(), *SECTIONS, "preferences"})


def _extra_keys(p: Profile) -> int:
    """How many keys outside DESIGN §2 the profile holds, at the top level and in its sections."""
    n = len(p.extra.keys() - _KNOWN_TOP)
    for name in SECTIONS:
        s: Section | None = getattr(p, name)
        if s is not None and s.extra:
            n += len(s.extra.keys() - s.specs().keys())
    return n


def _two_spellings(path: Path, first: str, other: str) -> InvalidUsersFile:
    return InvalidUsersFile(
        one_line(f"{path}: {_short(first)!r} and {_short(other)!r} spell one email (emails are case-insensitive)")
    )


def _validate(path: Path, doc: dict[str, Any], progress: _Progress) -> list[tuple[Profile, Any]]:
    """Every profile typed, with its document; InvalidUsersFile names the first wrong profile and key."""
    spellings: dict[str, str] = {}
    for email in doc:
        first = spellings.setdefault(email.lower(), email)
        if first != email:
            raise _two_spellings(path, first, email)
    out = []
    for email, body in doc.items():
        try:
            check_email(email, f"{_short(email)}: email")
            p = Profile.from_dict(email, body, strict=True)
        except InvalidProfile as e:
            raise InvalidUsersFile(one_line(f"{path}: {e}")) from e
        out.append((p, body))
        progress.step()
    return out


# -- writing -----------------------------------------------------------------------------------------------

# The typed columns of each table in the order the COPY statements of sql/import.sql name them (then `extra`).
_USERS_COLUMNS = attrgetter(*Profile.columns()[:-1])
#: the users columns of a row as users() in _write yields it (copy_users takes them in this order)
_USERS_ROW = ("id", "email", *Profile.columns(), "has_preferences")
_SECTION_COLUMNS = {name: attrgetter(*cls.columns()[:-1]) for name, cls in SECTIONS.items()}
_PG_TYPES = {Kind.TEXT: "text", Kind.BOOL: "bool", Kind.INT: "int4", Kind.EPOCH: "timestamptz",
             Kind.EPOCH_OR_ISO: "timestamptz", Kind.ISO: "timestamptz"}


def _types(row: type[Profile] | type[Section]) -> list[str]:
    return [*(_PG_TYPES[spec.kind] for spec in row.specs().values()), "json"]


#: The column types of each COPY, in its column order: binary COPY sends each value in the type's own binary
#: form (no text to escape on our side, none to parse on the server's), so it must name them.
COPY_TYPES = {
    "copy_users": ["int8", "text", *_types(Profile), "bool"],
    **{f"copy_{name}": ["int8", *_types(cls)] for name, cls in SECTIONS.items()},
    "copy_preferences": ["int8", "text", "json"],
}


def _part(p: Profile, name: str) -> Any:
    """The JSON value of one section, or of the preferences; None when the profile has none."""
    if name == "preferences":
        return p.preferences
    section: Section | None = getattr(p, name)
    return None if section is None else section.to_dict()


def _part_rows(name: str, user_id: int, p: Profile) -> Iterator[tuple[Any, ...]]:
    """The rows of one section (none or one), or of the preferences (one per key), as its COPY takes them."""
    if name == "preferences":
        for key, value in (p.preferences or {}).items():
            yield user_id, key, Json(value)  # wrapped: a JSON null is a value here, not an SQL NULL
        return
    section: Section | None = getattr(p, name)
    if section is not None:
        yield user_id, *_SECTION_COLUMNS[name](section), section.extra


def _copy(conn: Connection[Any], schema: str, name: str, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(Q[name].compose(schema)) as copy:
        copy.set_types(COPY_TYPES[name])
        for row in rows:
            copy.write_row(row)


def _write(conn: Connection[Any], schema: str, changes: list[tuple[int, Profile, Profile | None]]) -> None:
    """Store the (id, new, old) changes: a new profile's users row is COPYed in, a changed one's rewritten by one
    UPDATE; then, for each section and the preferences, delete the rows a changed profile replaces or drops and
    COPY in the new ones."""
    def users(created: bool) -> Iterator[tuple[Any, ...]]:
        for user_id, new, old in changes:
            if (old is None) is created:
                yield user_id, new.email, *_USERS_COLUMNS(new), new.extra, new.preferences is not None

    _copy(conn, schema, "copy_users", users(created=True))
    changed = [dict(zip(_USERS_ROW, row, strict=True)) for row in users(created=False)]
    if changed:
        Q["update_users"].run(conn, schema, {"users": Json(changed)})
    for name in (*SECTIONS, "preferences"):
        # a new profile's parts all go in, uncompared; a changed profile's only those that differ (type-exact)
        rewrite = [
            (uid, new, old)
            for uid, new, old in changes
            if old is None or not same_json(_part(old, name), _part(new, name))
        ]
        stale = [uid for uid, _, old in rewrite if old is not None]
        if stale:
            table = "user_preferences" if name == "preferences" else name
            Q["delete_rows"].run(conn, schema, {"ids": stale}, table=table)
        _copy(conn, schema, f"copy_{name}", (row for uid, new, _ in rewrite for row in _part_rows(name, uid, new)))


class _Progress:
    """A one-line progress count on a terminal's stderr; silent elsewhere or for small files."""

    def __init__(self, err: TextIO, label: str, total: int) -> None:
        self.err, self.label, self.total, self.done = err, label, total, 0
        self.on = total >= _PROGRESS_MIN and err.isatty()
        self.last = 0.0

    def step(self) -> None:
        self.done += 1
        if self.on and (self.done == self.total or time.monotonic() - self.last > 0.1):
            self.last = time.monotonic()
            self.err.write(f"\r{self.label} {self.done}/{self.total} ({100 * self.done // self.total}%)")
            if self.done == self.total:
                self.err.write("\n")
            self.err.flush()


# -- the commands ------------------------------------------------------------------------------------------


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a while (if it was on): an import allocates a few hundred thousand
    objects that all live until it ends, and the collector would walk them again and again (~15% of its time)."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@_collector_paused()
def import_file(store: Store, path: Path, *, dry_run: bool, backup: bool, out: TextIO, err: TextIO) -> int:
    """Import users.json in one transaction: create and update, never delete; the last stdout line reads
    `imported N profiles: C created, U updated, K unchanged` (with `dry run: ` before it on a dry run)."""
    started = time.perf_counter()
    data = path.read_bytes()
    doc = load_users(path, data)
    profiles = _validate(path, doc, _Progress(err, "validating", len(doc)))
    schema = store.schema
    created: list[str] = []
    updated: list[str] = []
    with store.connection() as conn:
        require_current(conn, schema)
        # Beyond ASCII, lower() follows the database's collation, not Python's: two emails _validate keeps apart may
        # be one to the unique index on lower(email), which would refuse the import half-way through
        if not all(email.isascii() for email in doc):
            same = Q["same_email"].run(conn, schema, {"emails": list(doc)})
            if same is not None:
                raise _two_spellings(path, *same)
        backed_up = write_backup(path, data) if backup and not dry_run else None  # before anything is written
        if not dry_run:
            Q["lock_users"].run(conn, schema)
        Q["no_jit"].run(conn, schema)
        found = Q["existing_profiles"].run(conn, schema, {"emails": list(doc)}, dicts=True)
        old = {r["file_email"]: Profile.from_row(r) for r in found}
        kept = int(Q["count_profiles"].run(conn, schema)) - len(old)
        changes: list[tuple[Profile, Profile | None]] = []
        progress = _Progress(err, "comparing", len(profiles))
        for new, body in profiles:
            before = old.get(new.email)
            if before is None:
                created.append(new.email)
                changes.append((new, None))
            elif before.email != new.email or not same_json(before.to_dict(), body):
                updated.append(new.email)
                changes.append((new, before))
            progress.step()
        if changes and not dry_run:
            fresh = iter(
                Q["reserve_ids"].run(conn, schema, {"schema_name": schema, "n": len(created)}) if created else ()
            )
            _write(conn, schema, [
                (next(fresh)[0] if before is None or before.id is None else before.id, new, before)
                for new, before in changes
            ])
        else:
            conn.rollback()
    prefix = "dry run: " if dry_run else ""
    print(f"{prefix}read {len(doc)} profiles from {path} ({len(data)} bytes)", file=out)
    if backed_up is not None:
        print(backed_up, file=out)
    print(
        f"{prefix}extra keys kept: {sum(_extra_keys(p) for p, _ in profiles)} "
        "(keys outside the known fields, stored as written)",
        file=out,
    )
    print(f"{prefix}not in the file: {kept} profiles kept that the file lacks (never deleted)", file=out)
    for email in updated[:_SHOW_UPDATED]:
        print(f"{prefix}updated: {one_line(email)}", file=out)
    if len(updated) > _SHOW_UPDATED:
        print(f"{prefix}updated: ... and {len(updated) - _SHOW_UPDATED} more", file=out)
    print(
        f"{prefix}took {time.perf_counter() - started:.2f} s"
        + (" (nothing written: a real import would report the line below)" if dry_run else ""),
        file=out,
    )
    unchanged = len(profiles) - len(created) - len(updated)
    print(
        f"{prefix}imported {len(profiles)} profiles: {len(created)} created, {len(updated)} updated, "
        f"{unchanged} unchanged",
        file=out,
    )
    return 0


def export_documents(store: Store) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every stored profile as (email, users.json document), oldest first, streamed from one transaction."""
    with store.connection() as conn:
        require_current(conn, store.schema)
        yield from store.profiles.iter_documents(conn)


def _users_json(docs: Iterable[tuple[str, dict[str, Any]]], write: Callable[[bytes], Any]) -> int:
    """Write one users.json object, 2-space indented, a few hundred profiles per write; the count."""
    n = 0
    chunk: list[bytes] = [b"{"]
    for email, doc in docs:
        body = orjson.dumps(doc, option=orjson.OPT_INDENT_2).replace(b"\n", b"\n  ")
        chunk.append(b"%s\n  %s: %s" % (b"," if n else b"", orjson.dumps(email), body))
        n += 1
        if len(chunk) >= 500:
            write(b"".join(chunk))
            chunk.clear()
    chunk.append(b"\n}\n" if n else b"}\n")
    write(b"".join(chunk))
    return n


def export_file(store: Store, output: Path | None, *, out: TextIO) -> int:
    """Write users.json from the database: to `out`, or atomically to `output` (temp file, fsync, rename)."""
    if output is None:
        _users_json(export_documents(store), lambda b: out.write(b.decode("utf-8")))
        out.flush()
        return 0
    count = 0

    def write_all(write: Callable[[bytes], Any]) -> None:
        nonlocal count
        count = _users_json(export_documents(store), write)

    atomic_write(output, write_all, like=None)
    print(f"exported {count} profiles to {output}", file=out)
    return 0


_ABSENT: Any = object()


def _show(value: Any) -> str:
    return "<absent>" if value is _ABSENT else one_line(orjson.dumps(value).decode("utf-8"))


def _differences(email: str, keys: tuple[str, ...], file: Any, db: Any) -> Iterator[str]:
    if type(file) is dict and type(db) is dict:
        for key in [*file, *(k for k in db if k not in file)]:
            yield from _differences(email, (*keys, key), file.get(key, _ABSENT), db.get(key, _ABSENT))
    elif file is _ABSENT or db is _ABSENT or not same_json(file, db):
        path = ".".join(keys) if keys else "(profile)"
        yield one_line(f"{email}: {path}: file={_show(file)} db={_show(db)}")


def verify_file(store: Store, path: Path, *, out: TextIO) -> int:
    """Compare users.json with the database as JSON values (types included); 0 if equal, else 1 and one
    line per difference: `email: key.path: file=<json> db=<json>` (`<absent>` for a missing side)."""
    remaining = load_users(path, path.read_bytes())
    in_file, in_db, found = len(remaining), 0, 0
    for email, db_doc in export_documents(store):
        in_db += 1
        file_doc = remaining.pop(email, _ABSENT)
        if file_doc is not _ABSENT and same_json(file_doc, db_doc):
            continue
        for line in _differences(email, (), file_doc, db_doc):
            print(line, file=out)
            found += 1
    for email, file_doc in remaining.items():
        print(next(_differences(email, (), file_doc, _ABSENT)), file=out)
        found += 1
    if found:
        print(f"verify: {found} differences (file: {in_file} profiles, database: {in_db})", file=out)
        return 1
    print(f"verify: the file and the database are equal ({in_file} profiles)", file=out)
    return 0
