"""The README's Performance figures from a results file: `python -m bench.markdown [bench/results.json]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OPERATIONS = {
    "get_profile": "get a profile",
    "set_field": "set a top-level field",
    "set_section_field": "set a section field",
    "set_preference": "set a preference",
    "update_auth_state": "update auth state",
    "edit_profile_increment": "`edit_profile` increment",
    "recent_10_of_1000": "10 most recent of 1,000",
}


X = "\u00d7"  # the multiplication sign of the README's ratios


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _stmts(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def table(res: dict[str, Any]) -> str:
    """The single-profile table: medians in µs, statements per call, ratios."""
    lines = ["| operation | kindle_store | repo | floor | orm | statements (ks / floor / orm) | ks ÷ floor "
             "| repo ÷ floor | orm ÷ ks |", "|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for op, label in OPERATIONS.items():
        r, q = res["single"][op], res["ratios"][op]
        ks, repo, floor, orm = (r[c] for c in ("kindle_store", "kindle_store_repo", "floor", "orm"))
        stmts = " / ".join(_stmts(c["statements"]) for c in (ks, floor, orm))
        medians = " | ".join(_n(c["median_us"]) for c in (ks, repo, floor, orm))
        lines.append(f"| {label} | {medians} | {stmts} | {q['kindle_store/floor']:.2f}{X} "
                     f"| {q['kindle_store_repo/floor']:.2f}{X} | {q['orm/kindle_store']:.1f}{X} |")
    return "\n".join(lines)


def bullets(res: dict[str, Any]) -> str:
    """Import, export, the mixed workload, lost updates and the round trip, one line each."""
    imp, mix = res["import"], res["mixed"]
    ks, copy = imp["kindle_store"]["by_n"], imp["copy_floor"]["by_n"]
    big, small = max(ks, key=int), min(ks, key=int)
    lost, detail, rt = res["lost_updates"], res["lost_updates_detail"], res["roundtrip_identical"]

    def mixed(name: str) -> str:
        m = mix[name]
        return (f"{_n(m['ops_per_s'])} ops/s (p50 {m['p50_us'] / 1000:.1f} ms, p99 {m['p99_us'] / 1000:,.0f} ms, "
                f"{m['failed']:,} failed)")

    def out_of(name: str) -> str:
        return f"{lost[name]} of {detail[name]['expected']}"

    def per_s(by_n: dict[str, Any], n: str) -> str:
        return f"{_n(by_n[n]['profiles_per_s'])}/s"

    def seconds(step: str) -> str:
        r = res[step]["kindle_store"]
        return f"{r['n'] / r['profiles_per_s']:.2f} s ({_n(r['profiles_per_s'])}/s)"

    slower = copy[big]["profiles_per_s"] / ks[big]["profiles_per_s"]
    return "\n".join([
        f"- **Import** of {int(big):,} profiles: {per_s(ks, big)} ({per_s(ks, small)} for {int(small):,}); a bare "
        f"binary COPY of the same rows, prebuilt: {per_s(copy, big)}, so the import takes {slower:.2f}{X} as long. "
        f"The ORM importer: {_n(imp['orm']['profiles_per_s'])}/s ({imp['orm']['n']:,} profiles, one run).",
        f"- **Of the same {int(big):,} profiles**: a second import, which writes nothing, "
        f"{seconds('reimport')}; verify {seconds('verify')}; export {seconds('export')}.",
        f"- **16 threads, mixed reads and writes**: kindle_store {mixed('kindle_store')}; ORM {mixed('orm')}; "
        f"the JSON file {mixed('jsonfile')}.",
        f"- **Lost updates** (16 threads incrementing one counter): kindle_store {out_of('kindle_store')}, "
        f"ORM as the guide wrote it (load, +1, commit) {out_of('orm')}, the same with FOR UPDATE "
        f"{out_of('orm_locked')}, JSON file {out_of('jsonfile')}.",
        f"- **Round trip** of a 1,000-profile file: kindle_store {rt['kindle_store'][0]:,} of "
        f"{rt['kindle_store'][1]:,} identical; ORM {rt['orm'][0]:,} of {rt['orm'][1]:,}.",
    ])


def main(argv: list[str]) -> int:
    res = json.loads(Path(argv[0] if argv else "bench/results.json").read_text())
    meta = res["meta"]
    print(f"PostgreSQL {meta['server_version'].split()[0]}, {meta['cores']} cores, {meta['seconds']:.0f} s, "
          f"load average {' to '.join(map(str, meta['load_average_start_end']))}, medians in µs:\n")
    print(table(res))
    print()
    print(bullets(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
