"""Timing, interleaving, statistics, statement counts, thread drivers and the printed table of the benchmark."""

from __future__ import annotations

import contextlib
import gc
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg

from kindle_store.profiles import same_json

__all__ = [
    "BenchError", "StatementCounter", "differences", "hammer", "interleaved", "mixed", "nearest_rank", "per_second",
    "ratios", "report",
    "summary", "timed_runs",
]

Op = Callable[[int], Any]


class BenchError(RuntimeError):
    """A contender did not do what the operation asks (it returned nothing)."""


def _check(name: str, result: Any) -> None:
    if result is None or result is False or result == []:
        raise BenchError(f"{name} returned {result!r}: the operation did nothing")


def nearest_rank(ordered: list[int], q: float) -> int:
    """The q-quantile of sorted values by the nearest-rank method."""
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def summary(samples_ns: list[int], cpu_ns: list[int] | None = None) -> dict[str, Any]:
    """Median and p95 (nearest rank) in microseconds; with `cpu_ns`, the median client CPU time too."""
    s = sorted(samples_ns)
    out = {"median_us": round(s[len(s) // 2] / 1000, 1), "p95_us": round(nearest_rank(s, 0.95) / 1000, 1),
           "n": len(s)}
    if cpu_ns:
        out["client_cpu_us"] = round(sorted(cpu_ns)[len(cpu_ns) // 2] / 1000, 1)
    return out


def interleaved(ops: dict[str, Op], iterations: int, warmup: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Run each contender's op once per iteration, in a new shuffled order each time: drift hits all alike, and
    each contender follows each other equally often.

    A rotation (A B C, B C A, ...) keeps the cyclic order, so the contender after the ORM in that order ran right
    after the ORM's milliseconds of Python (its caches cold) in all but one of n rounds, and the one before it
    never did. The order is seeded: a run is repeatable. Call i of every contender gets the same argument i.
    Warm-up calls are not recorded. Returns the wall time of every call and the CPU time the calling thread
    spent in it (the client's own work: on a loaded machine, wall time also holds the waits for a core).
    """
    names = list(ops)
    order = random.Random(0)
    wall: dict[str, list[int]] = {name: [] for name in names}
    cpu: dict[str, list[int]] = {name: [] for name in names}
    gc.collect()
    for i in range(-warmup, iterations):
        for name in order.sample(names, len(names)):
            start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
            result = ops[name](i + warmup)
            elapsed_cpu, elapsed = time.thread_time_ns() - start_cpu, time.perf_counter_ns() - start
            _check(name, result)
            if i >= 0:
                wall[name].append(elapsed)
                cpu[name].append(elapsed_cpu)
    return wall, cpu


def timed_runs(runs: dict[str, Callable[[], Any]], repeat: int,
               before: dict[str, Callable[[], Any]] | None = None) -> dict[str, list[float]]:
    """Seconds of each bulk run, contenders interleaved, `repeat` times; `before` (untimed) resets state."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            if before and name in before:
                before[name]()
            gc.collect()
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


class StatementCounter:
    """Statements the server ran in one database, from pg_stat_statements (None when it is not loaded)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.available = False
        self.reason = ""
        preload = self.conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()
        if preload is None or "pg_stat_statements" not in preload[0]:
            self.reason = "pg_stat_statements is not in shared_preload_libraries"
            return
        try:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            self._total()
        except psycopg.Error as e:
            self.reason = f"pg_stat_statements unusable: {str(e).strip().splitlines()[0]}"
            return
        self.available = True

    def _total(self) -> int:
        row = self.conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND query NOT LIKE '%%pg_stat_statements%%'").fetchone()
        return int(row[0]) if row else 0

    def per_call(self, name: str, op: Op, calls: int, first: int) -> float | None:
        """Statements per call of `op`, run `calls` times alone (arguments first, first+1, ...)."""
        if not self.available:
            return None
        before = self._total()
        for i in range(first, first + calls):
            _check(name, op(i))
        return round((self._total() - before) / calls, 2)

    def close(self) -> None:
        self.conn.close()


def _threads(n: int, work: Callable[[int, threading.Barrier], None]) -> float:
    """Run work(thread index, barrier) on n threads started together; re-raise the first error; seconds."""
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def target(t: int) -> None:
        try:
            work(t, barrier)
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=target, args=(t,), daemon=True) for t in range(n)]
    for th in threads:
        th.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a thread failed: its error is raised below
        barrier.wait()
    start = time.perf_counter()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def hammer(n_threads: int, per_thread: int, op: Callable[[], Any]) -> None:
    """`per_thread` calls of op on each of n threads, all released at once."""
    def work(_: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        for _ in range(per_thread):
            op()

    _threads(n_threads, work)


def mixed(n_threads: int, seconds: float, mix: list[tuple[float, Op]], seed: int) -> dict[str, Any]:
    """n threads pick ops from `mix` (weight, op(random int)) for `seconds`: the calls that did their work
    (their latencies), the calls that failed (returned None or False: nothing done), and the seconds."""
    weights = [w for w, _ in mix]
    ops = [op for _, op in mix]
    latencies: list[list[int]] = [[] for _ in range(n_threads)]
    failed = [0] * n_threads

    def work(t: int, barrier: threading.Barrier) -> None:
        rng = random.Random(seed * 1000 + t)
        barrier.wait()
        deadline = time.perf_counter() + seconds
        mine = latencies[t]
        while time.perf_counter() < deadline:
            op = rng.choices(ops, weights)[0]
            start = time.perf_counter_ns()
            result = op(rng.randrange(1 << 30))
            if result is None or result is False:
                failed[t] += 1
            else:
                mine.append(time.perf_counter_ns() - start)

    elapsed = _threads(n_threads, work)
    flat = sorted(x for per in latencies for x in per)
    return {"ops": len(flat), "failed": sum(failed), "seconds": elapsed, "latencies_ns": flat}


def per_second(n: int, seconds: list[float]) -> dict[str, Any]:
    median = sorted(seconds)[len(seconds) // 2]
    return {"n": n, "profiles_per_s": round(n / median), "seconds": [round(s, 4) for s in seconds]}


def differences(want: dict[str, Any], got: dict[str, Any]) -> Counter[str]:
    """Which keys (section.key inside a section) differ, over every profile."""
    found: Counter[str] = Counter()
    for email, doc in want.items():
        other = got.get(email, {})
        for key in doc.keys() | other.keys():
            a, b = doc.get(key, "<absent>"), other.get(key, "<absent>")
            if type(a) is dict and type(b) is dict:
                found.update(f"{key}.{k}" for k in a.keys() | b.keys() if not same_json(a.get(k), b.get(k))
                             or (k in a) != (k in b))
            elif not same_json(a, b):
                found[key] += 1
    return found


# -- the printed table ---------------------------------------------------------------------------------


def ratios(single: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for op, row in single.items():
        med = {name: r["median_us"] for name, r in row.items()}
        out[op] = {f"{ks}/{floor}": round(med[ks] / med[floor], 2)
                   for ks in ("kindle_store", "kindle_store_repo") for floor in ("floor", "floor_counter")
                   if floor in med}
        out[op]["orm/kindle_store"] = round(med["orm"] / med["kindle_store"], 2)
    return out


def _num(v: Any, fmt: str = "{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def report(res: dict[str, Any]) -> str:
    meta = res["meta"]
    lines = [f"kindle_store benchmark: {meta['target']} (PostgreSQL {meta['server_version']}), "
             f"{meta['cores']} cores, {'quick' if meta['quick'] else 'full'} run, {meta['date']}",
             f"statements per call: {meta['statements_note']}",
             "cpu µs: the client's own CPU time per call (median); "
             "÷ floor: the contender's median over floor's; orm ÷ ks: orm's median over kindle_store's "
             f"(1-minute load average {meta['load_average_start_end'][0]} at start, "
             f"{meta['load_average_start_end'][1]} at end)", "",
             f"{'operation':<24}{'contender':<19}{'median µs':>11}{'p95 µs':>10}{'cpu µs':>8}{'stmts':>7}"
             f"{'÷ floor':>9}{'orm ÷ ks':>10}"]
    for op, row in res["single"].items():
        r = res["ratios"][op]
        for i, (name, s) in enumerate(row.items()):
            vs_floor = r.get(f"{name}/floor")
            vs_ks = r["orm/kindle_store"] if name == "orm" else None
            lines.append(f"{op if i == 0 else '':<24}{name:<19}{_num(s['median_us']):>11}{_num(s['p95_us']):>10}"
                         f"{_num(s['client_cpu_us'], '{:,.0f}'):>8}{_num(s['statements'], '{:.1f}'):>7}"
                         f"{_num(vs_floor, '{:.2f}x'):>9}{_num(vs_ks, '{:.1f}x'):>10}")
    for op, r in res["ratios"].items():
        if "kindle_store/floor_counter" in r:
            lines.append(f"{op} against floor_counter (locks and reads the counter alone, not the whole profile "
                         f"edit_profile hands its block): kindle_store {r['kindle_store/floor_counter']:.2f}x, "
                         f"kindle_store_repo {r['kindle_store_repo/floor_counter']:.2f}x")
    imp, exp = res["import"], res["export"]
    lines += ["", f"{'users.json (profiles/s)':<24}{'n':>8}{'import':>9}{'copy_floor':>12}{'time ÷ copy':>13}"
                  f"{'re-import':>11}{'verify':>9}{'export':>9}"]
    for n, ks in imp["kindle_store"]["by_n"].items():
        cp = imp["copy_floor"]["by_n"][n]["profiles_per_s"]
        again, verify, export = (res[step]["kindle_store"]["by_n"][n]["profiles_per_s"]
                                 for step in ("reimport", "verify", "export"))
        lines.append(f"{'':<24}{n:>8,}{ks['profiles_per_s']:>9,}{cp:>12,}{cp / ks['profiles_per_s']:>12.2f}x"
                     f"{again:>11,}{verify:>9,}{export:>9,}")
    lines.append("(re-import: the same file again, which writes nothing; verify: the file against the database)")
    orm = imp["orm"]
    lines.append(f"orm import (a session.add per object, a flush per user): n={orm['n']:,}, "
                 f"{orm['profiles_per_s']:,} profiles/s ({orm['us_per_profile']:,} µs per profile); "
                 f"orm export n={exp['orm']['n']:,}: {exp['orm']['profiles_per_s']:,} profiles/s")
    lines += ["", f"{'mixed, 16 threads, 1,000 profiles':<36}{'ops/s':>9}{'p50 µs':>10}{'p99 µs':>11}{'failed':>8}"]
    for name, m in res["mixed"].items():
        lines.append(f"{name:<36}{m['ops_per_s']:>9,.0f}{_num(m['p50_us'], '{:,.0f}'):>10}"
                     f"{_num(m['p99_us'], '{:,.0f}'):>11}{m['failed']:>8}")
    if not res["mixed"]["jsonfile"]["file_valid_at_end"]:
        lines.append("  (jsonfile: users.json was left corrupt: interleaved writers; every later call failed)")
    lines.append("")
    lost = res["lost_updates_detail"]
    lines.append("lost updates, 16 threads incrementing one counter (orm: load, +1, commit, as the guide wrote it; "
                 "orm_locked: the load with FOR UPDATE): " + "; ".join(
        f"{name} {d['lost']} of {d['expected']}" + (f" ({d['torn_reads']} torn reads)" if "torn_reads" in d else "")
        for name, d in lost.items()))
    rt = res["roundtrip_identical"]
    lines.append("round trip of a 1,000-profile file (identical after import → export): " + "; ".join(
        f"{name} {i}/{n}" for name, (i, n) in rt.items()))
    for name, d in res["roundtrip_differences"].items():
        if d:
            lines.append(f"  {name} differs most in: " + ", ".join(f"{k} ({v})" for k, v in d.items()))
    return "\n".join(lines)
