"""`kindle-store import-vnc` and `export-vnc`: vnc_instance_map.json into PostgreSQL and back.

The import validates the whole file before anything else (types of every instance; no id, display or port used
twice; no email on two instances, compared case-insensitively), checks that the schema is current, writes
PATH.backup (a byte-exact copy) and then applies the file in one transaction, in bulk: slots are created or
overwritten, never deleted (slots the database has and the file lacks are kept, and named); a slot equal to the
file's is not written at all, so importing the same file twice changes nothing. A dry run makes the same writes
and rolls them back, so the database's own constraints are checked too. Export writes the map back,
slots by id, with the file's other top-level keys as they were imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from psycopg import Connection, IsolationLevel

from ._values import email_key
from .errors import InvalidVncFile
from .jsonfile import atomic_write, load_json, one_line, write_backup
from .profiles import same_json
from .store import Store
from .vnc import PORT_KEYS, VncInstance, VncInstances, check_json, json_type
from .vnc_manager import Instance

__all__ = ["ImportSummary", "VncMap", "apply_map", "export_document", "export_file", "import_file", "parse_map"]

_SHAPE = '{"instances": [...], "version": 1}'


@dataclass(frozen=True)
class VncMap:
    """A validated vnc_instance_map.json: its slots, and its other top-level keys as written."""

    instances: list[VncInstance]
    top: dict[str, Any]


@dataclass(frozen=True)
class ImportSummary:
    """What an import did (or, in a dry run, would do)."""

    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # in the database, not in the file

    @property
    def total(self) -> int:
        return len(self.created) + len(self.updated) + len(self.unchanged)

    def __str__(self) -> str:
        return (f"imported {self.total} instances: {len(self.created)} created, {len(self.updated)} updated, "
                f"{len(self.unchanged)} unchanged")


# -- reading and validating the file ------------------------------------------------------------------------


def _label(inst: VncInstance, kept: set[int]) -> str:
    return f"{inst.id} (kept from the database)" if inst.id in kept else str(inst.id)


def check_unique(where: str, instances: Iterable[VncInstance], kept: Iterable[int] = ()) -> None:
    """InvalidVncFile naming both ids unless emails, displays and ports are each used once (ids are unique)."""
    kept_ids = set(kept)
    holders: dict[str, VncInstance] = {}
    used: dict[tuple[str, int], VncInstance] = {}
    for inst in instances:
        if inst.assigned_profile is not None:
            first = holders.setdefault(email_key(inst.assigned_profile), inst)
            if first is not inst:
                spelling = "" if first.assigned_profile == inst.assigned_profile else \
                    f" (spelled {inst.assigned_profile!r} in {inst.id})"
                raise InvalidVncFile(one_line(f"{where}: instances {_label(first, kept_ids)} and "
                                              f"{_label(inst, kept_ids)} both assigned to {first.assigned_profile}"
                                              f"{spelling}"))
        for key in PORT_KEYS:
            value = getattr(inst, key)
            if value is not None:
                first = used.setdefault((key, value), inst)
                if first is not inst:
                    raise InvalidVncFile(f"{where}: instances {_label(first, kept_ids)} and "
                                         f"{_label(inst, kept_ids)} both use {key} {value}")


def parse_map(raw: bytes, where: str) -> VncMap:
    """The validated map in `raw`; InvalidVncFile, one line naming `where` and the offending ids, if it is bad."""
    doc = load_json(where, raw, InvalidVncFile)
    if type(doc) is not dict:
        raise InvalidVncFile(f"{where}: expected an object {_SHAPE}, got {json_type(doc)}")
    for key in ("instances", "version"):
        if key not in doc:
            raise InvalidVncFile(f"{where}: the key {key!r} is missing; expected {_SHAPE}")
    if type(doc["instances"]) is not list:
        raise InvalidVncFile(f"{where}: \"instances\" must be an array, got {json_type(doc['instances'])}")
    if type(doc["version"]) is not int:
        v = doc["version"]
        raise InvalidVncFile(f"{where}: \"version\" must be an integer, got {json_type(v)} {str(v)[:40]!r}")
    top = {k: v for k, v in doc.items() if k != "instances"}
    for key, value in top.items():
        check_json(key, f"{where}: a top-level key")
        check_json(value, f"{where}: {key}")
    instances: list[VncInstance] = []
    seen: dict[int, int] = {}
    for i, d in enumerate(doc["instances"]):
        inst = VncInstance.from_dict(d, f"{where}: instances[{i}]")
        if inst.id in seen:
            raise InvalidVncFile(f"{where}: instances[{seen[inst.id]}] and instances[{i}] both have id {inst.id}")
        seen[inst.id] = i
        instances.append(inst)
    check_unique(where, instances)
    return VncMap(instances, top)


# -- import ---------------------------------------------------------------------------------------------------


def apply_map(conn: Connection[Any], repo: VncInstances, vmap: VncMap, where: str, *,
              lock: bool = True) -> ImportSummary:
    """Write the map into the database in the caller's transaction; what changed. With `lock`, the slot map's
    other writers wait until the transaction ends (a dry run, rolled back, need not make them wait)."""
    if lock:
        repo.lock(conn)
    current = {i.id: i for i in repo.all(conn)}
    in_file = {i.id for i in vmap.instances}
    kept = sorted(set(current) - in_file)
    check_unique(where, [*vmap.instances, *(current[n] for n in kept)], kept)
    created, updated, unchanged = [], [], []
    for inst in vmap.instances:
        old = current.get(inst.id)
        if old is None:
            created.append(inst)
        elif same_json(old.to_dict(), inst.to_dict()):
            unchanged.append(inst)
        else:
            updated.append(inst)
    # the email index is checked row by row: free the slots whose email changes before any is assigned again
    moving = [i.id for i in updated if current[i.id].assigned_profile is not None
              and email_key(current[i.id].assigned_profile or "") != email_key(i.assigned_profile or "")]
    if moving:
        repo.unassign(conn, moving)
    repo.upsert(conn, [*created, *updated])
    repo.put_top(conn, vmap.top)
    return ImportSummary([i.id for i in created], [i.id for i in updated], [i.id for i in unchanged], kept)


def import_file(store: Store, path: Path, *, dry_run: bool, backup: bool, out: TextIO, err: TextIO) -> int:
    """Import vnc_instance_map.json in one transaction; exit code 0. The last line on `out` reads
    `imported N instances: C created, U updated, K unchanged` (after `dry run: ` on a dry run).

    Raises InvalidVncFile (nothing written anywhere) for a bad file and SchemaBehind for a schema that needs
    migrating; PATH.backup is written, unless `backup` is false or in a dry run, before the database is touched.
    """
    raw = path.read_bytes()
    where = str(path)
    vmap = parse_map(raw, where)
    store.require_current_schema()
    backed_up = write_backup(path, raw) if backup and not dry_run else None
    repo = VncInstances(store.schema)
    with store.connection() as conn:
        summary = apply_map(conn, repo, vmap, where, lock=not dry_run)
        if dry_run:
            conn.rollback()
    prefix = "dry run: " if dry_run else ""
    print(f"{prefix}read {len(vmap.instances)} instances from {path} ({len(raw)} bytes)", file=out)
    if backed_up is not None:
        print(backed_up, file=out)
    if summary.kept:
        ids = ", ".join(map(str, summary.kept))
        print(f"{prefix}not in the file: {len(summary.kept)} instances kept that the file lacks (never deleted): "
              f"ids {ids}", file=out)
    if dry_run:
        print("dry run: nothing written; a real import would report the line below", file=out)
    print(f"{prefix}{summary}", file=out)
    return 0


# -- export ---------------------------------------------------------------------------------------------------


def export_document(store: Store) -> dict[str, Any]:
    """The map as vnc_instance_map.json holds it, read in one snapshot: slots by id, then the top-level keys."""
    repo = VncInstances(store.schema)
    with store.connection() as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        try:
            with conn.transaction():
                instances: list[Instance] = [i.to_dict() for i in repo.all(conn)]
                top = repo.get_top(conn)
        finally:
            if not conn.closed:
                conn.isolation_level = None
    doc: dict[str, Any] = {"instances": instances}
    doc.update(top if top is not None else {"version": 1})
    return doc


def export_file(store: Store, output: Path | None, *, out: TextIO) -> int:
    """Write the map to `output` (atomically) or, without one, to `out`. Exit code 0."""
    doc = export_document(store)
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    if output is None:
        out.write(data.decode("utf-8") + "\n")
    else:
        atomic_write(output, lambda write: write(data))
        print(f"exported {len(doc['instances'])} instances to {output}", file=out)
    return 0

