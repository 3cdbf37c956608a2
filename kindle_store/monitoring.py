"""`kindle-store stats` and `kindle-store doctor`: what the database is doing, and whether it is fit to use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

import orjson

from .connecting import connect
from .errors import ConnectFailed, SchemaBehind
from .migrate import state
from .queries import queries
from .settings import Settings, mask_url
from .store import Store

__all__ = [
    "EXPECTED",
    "ConnectFailed",
    "Expected",
    "connect",
    "doctor",
    "stats",
]

Q = queries("monitoring")
ACTIVE_QUERIES_SHOWN = 50


@dataclass(frozen=True)
class Expected:
    """The objects one migration creates: what doctor looks for once it is applied."""

    tables: tuple[str, ...] = ()
    views: tuple[str, ...] = ()
    indexes: tuple[str, ...] = ()


#: By migration number (the id up to its first `_`): a migration not listed here gets a `warn` line.
EXPECTED: dict[str, Expected] = {
    "0001": Expected(
        tables=(
            "users",
            "emulator_settings",
            "device_identifiers",
            "library_settings",
            "reading_settings",
            "user_preferences",
        ),
        views=("profile_rows",),
        indexes=(
            "users_pkey",
            "users_email_lower_key",
            "users_last_used_idx",
            "users_running_at_restart_idx",
            "emulator_settings_pkey",
            "device_identifiers_pkey",
            "library_settings_pkey",
            "reading_settings_pkey",
            "user_preferences_pkey",
        ),
    ),
    "0002": Expected(
        tables=("vnc_instances", "vnc_map_meta"),
        indexes=(
            "vnc_instances_pkey",
            "vnc_instances_assigned_profile_key",
            "vnc_instances_free_idx",
            "vnc_instances_display_key",
            "vnc_instances_vnc_port_key",
            "vnc_instances_appium_port_key",
            "vnc_instances_emulator_port_key",
            "vnc_instances_appium_system_port_key",
            "vnc_instances_appium_chromedriver_port_key",
            "vnc_instances_appium_mjpeg_server_port_key",
            "vnc_map_meta_pkey",
        ),
    ),
}


# -- stats ----------------------------------------------------------------------------------------------------


def _collect(store: Store) -> dict[str, Any]:
    with store.connection() as conn:

        def run(name: str, **params: Any) -> Any:
            return Q[name].run(conn, store.schema, params, dicts=True)

        if not Q["schema_exists"].run(conn, store.schema, {"schema_name": store.schema}):
            # empty tables would read as an idle schema; a KINDLE_SCHEMA that names none is a mistake to show
            raise SchemaBehind(f"schema {store.schema!r} does not exist in database {conn.info.dbname!r}: "
                               "check KINDLE_SCHEMA, or run kindle-store migrate")
        return {
            "server": {**run("server_version"), "schema": store.schema},
            "connections": run("connections_by_state"),
            "active_queries": run("active_queries", limit=ACTIVE_QUERIES_SHOWN),
            "tables": run("table_stats", schema_name=store.schema),
            "indexes": run("index_stats", schema_name=store.schema),
            "pool": dict(store.pool.get_stats()),
        }


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = n / 1024
    for unit in ("kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            break
        size /= 1024
    return f"{size:.1f} {unit}"


def _when(*candidates: tuple[datetime | None, str]) -> str:
    known = [(t, how) for t, how in candidates if t is not None]
    if not known:
        return "never"
    t, how = max(known, key=lambda c: c[0])
    return f"{t:%Y-%m-%d %H:%M}{how}"


def _grid(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    print(f"\n{title}", file=out)
    if not rows:
        print("  (none)", file=out)
        return
    cells = [[str(c) for c in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _render(data: Mapping[str, Any], out: TextIO) -> None:
    s = data["server"]
    print(f"kindle-store stats: PostgreSQL {s['version']}, database {s['database']}, schema {s['schema']}", file=out)
    _grid(
        "Connections to this database, by state",
        ("state", "connections", "waiting", "longest (s)"),
        [(c["state"], c["connections"], c["waiting"], f"{c['longest_s']:.1f}") for c in data["connections"]],
        out,
    )
    _grid(
        "Active queries",
        ("pid", "user", "application", "client", "duration (s)", "query"),
        [
            (
                q["pid"],
                q["user"],
                q["application"],
                q["client"],
                "-" if q["duration_s"] is None else f"{q['duration_s']:.1f}",
                q["query"][:80],
            )
            for q in data["active_queries"]
        ],
        out,
    )
    _grid(
        f"Tables in {s['schema']} (since the statistics were reset)",
        ("table", "inserts", "updates", "deletes", "live rows", "dead rows", "size", "last vacuum", "last analyze"),
        [
            (
                t["table"],
                t["n_tup_ins"],
                t["n_tup_upd"],
                t["n_tup_del"],
                t["n_live_tup"],
                t["n_dead_tup"],
                _size(t["total_bytes"]),
                _when((t["last_vacuum"], ""), (t["last_autovacuum"], " (auto)")),
                _when((t["last_analyze"], ""), (t["last_autoanalyze"], " (auto)")),
            )
            for t in data["tables"]
        ],
        out,
    )
    _grid(
        f"Indexes in {s['schema']}",
        ("table", "index", "scans", "size", "note"),
        [
            (
                i["table"],
                i["index"],
                i["idx_scan"],
                _size(i["bytes"]),
                "UNUSED" if i["unused"] else ("unique" if i["is_unique"] else ""),
            )
            for i in data["indexes"]
        ],
        out,
    )
    print("\nPool of this process", file=out)
    print("  " + "  ".join(f"{k}={v}" for k, v in sorted(data["pool"].items())), file=out)


def stats(store: Store, *, as_json: bool, out: TextIO) -> int:
    """Print connections, active queries, table and index statistics and the pool's own; 0. SchemaBehind if the
    schema does not exist."""
    data = _collect(store)
    if as_json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode(), file=out)
    else:
        _render(data, out)
    return 0


# -- doctor ---------------------------------------------------------------------------------------------------


def _line(out: TextIO, ok: bool | None, check: str, detail: str = "") -> bool:
    status = "warn" if ok is None else ("ok" if ok else "FAIL")
    print(f"{status:<5} {check:<32} {detail}".rstrip(), file=out)
    return ok is not False


def doctor(settings: Settings, *, out: TextIO) -> int:
    """Check the connection, server, schema version and every expected table and index; 0 if all is well."""
    try:
        conn = connect(settings)
    except ConnectFailed as e:
        _line(out, False, "connect", str(e))
        return 1
    good = _line(out, True, "connect", f"{mask_url(settings.database_url)} (schema {settings.schema})")
    with conn:
        server = Q["server_version"].run(conn, settings.schema, {}, dicts=True)
        good &= _line(out, True, "server", f"PostgreSQL {server['version']} (user {server['user']})")
        st = state(conn, settings.schema)
        good &= _line(out, st.current, "migrations", str(st))
        if st.unknown:
            good &= _line(out, None, "migrations unknown here",
                          f"{', '.join(st.unknown)}: the database is newer than this package")
        found = {
            (r["kind"], r["name"])
            for r in Q["schema_relations"].run(
                conn, settings.schema, {"schema_name": settings.schema}, dicts=True
            )
        }
    for mid in st.applied:
        expected = EXPECTED.get(mid.split("_", 1)[0])
        if expected is None:
            good &= _line(out, None, f"migration {mid}", "doctor has no list of its objects")
            continue
        for kind, names in (("table", expected.tables), ("view", expected.views), ("index", expected.indexes)):
            for name in names:
                present = (kind, name) in found
                good &= _line(
                    out, present, f"{kind} {name}", "" if present else f"missing from schema {settings.schema}"
                )
    print("doctor: all checks ok" if good else "doctor: problems found (FAIL lines above)", file=out)
    return 0 if good else 1
