"""Time the users.json round trip on realistic profiles: import, re-import, partial update, export, verify.

    python bench/import_export.py [--profiles 10000] [--seed 1]

Uses DATABASE_URL when set (in a throw-away schema, dropped at the end), else an embedded PostgreSQL in a
temporary directory. Prints one line per step with seconds and profiles per second.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql

from kindle_store.migrate import migrate
from kindle_store.settings import Settings, libpq_url
from kindle_store.store import Store
from kindle_store.users_file import export_file, import_file, verify_file

EPOCH_2024 = 1_704_067_200


def _mac(rng: random.Random) -> str:
    return "02:00:00:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def _iso(rng: random.Random, micro: bool) -> str:
    dt = datetime(2024, 1, 1) + timedelta(seconds=rng.randrange(40_000_000))
    return dt.replace(microsecond=rng.randrange(1_000_000) if micro else 0).isoformat()


def profile(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    """One profile as the Kindle Automator writes it: most keys set, some null or missing, a few unknown."""
    email = f"reader{i:05d}.{rng.choice(['kindle', 'books', 'test'])}@{rng.choice(['gmail.com', 'example.org'])}"
    avd = "KindleAVD_" + email.replace("@", "_").replace(".", "_")
    last_used = EPOCH_2024 + rng.randrange(40_000_000)
    doc: dict[str, Any] = {
        "email": email, "avd_name": avd, "timezone": rng.choice(["America/New_York", "Europe/Berlin", None]),
        "last_used": last_used, "last_used_date": datetime.fromtimestamp(last_used).isoformat(),
        "auth_date": _iso(rng, micro=True), "auth_failed_date": rng.choice([None, _iso(rng, micro=False)]),
        "last_snapshot": f"snap_{i}", "kindle_version_name": "8.97.0.100(2.0.206476.0)",
        "kindle_version_code": "1286206476", "android_version": "30",
        "system_image": "system-images;android-30;google_apis;x86_64",
        "styles_updated": rng.choice([True, False, None]), "created_from_seed_clone": rng.random() < 0.3,
        "post_boot_randomized": True, "needs_device_randomization": False,
        "vnc_instance": rng.choice([None, rng.randrange(1, 64)]),
        "emulator_settings": {
            "hw_overlays_disabled": True, "animations_disabled": True, "sleep_disabled": True,
            "status_bar_disabled": rng.random() < 0.5, "auto_updates_disabled": True,
            "memory_optimizations_applied": True, "appium_device_initialized": rng.random() < 0.8,
            "memory_optimization_timestamp": last_used - rng.randrange(86_400),
        },
        "device_identifiers": {
            "hw.wifi.mac": _mac(rng), "hw.ethernet.mac": _mac(rng), "ro.serialno": f"EMULATOR30X{i % 10}X{i}X0",
            "ro.build.id": "RSR1.201013.001", "ro.product.name": "sdk_gphone_x86_64",
            "android_id": f"{rng.getrandbits(64):016x}",
        },
        "library_settings": {"view_type": rng.choice(["list", "grid"]), "group_by_series": rng.random() < 0.5,
                             "actively_reading_title": f"Book {rng.randrange(5000)}"},
        "reading_settings": {"theme": rng.choice(["dark", "light", "sepia"]), "font_size": "medium",
                             "real_time_highlighting": False, "about_book": False, "page_turn_animation": False,
                             "popular_highlights": False, "highlight_menu": rng.random() < 0.5},
        "preferences": {"font": "Bookerly", "brightness": round(rng.random(), 3), "sync": True,
                        "recent": [rng.randrange(1000) for _ in range(3)]},
    }
    if rng.random() < 0.3:
        doc["last_snapshot_timestamp"] = rng.choice([last_used - 3600, _iso(rng, micro=False)])
    if rng.random() < 0.1:
        doc["was_running_at_restart"] = rng.choice([True, None])
    if rng.random() < 0.1:
        doc["cold_storage_date"], doc["cold_storage_dry_run"] = _iso(rng, micro=True), rng.random() < 0.5
    if rng.random() < 0.2:
        doc["legacy_note"] = "migrated from v1"  # an unknown key: data too
    return email, doc


def users_json(n: int, seed: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(seed)
    return dict(profile(rng, i) for i in range(n))


@contextmanager
def database() -> Iterator[Settings]:
    """Settings on a fresh schema: DATABASE_URL's server, else an embedded one in a temporary directory."""
    url = os.environ.get("DATABASE_URL")
    if url:
        settings = Settings(database_url=url, schema=f"kindle_bench_{os.getpid()}")
        migrate(settings)
        try:
            yield settings
        finally:
            with psycopg.connect(libpq_url(url), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(settings.schema)))
        return
    from kindle_store.embedded import start_embedded

    with tempfile.TemporaryDirectory(prefix="kindle_bench_pg_") as tmp:
        server, url = start_embedded(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            settings = Settings(database_url=url)
            migrate(settings)
            yield settings
        finally:
            server.cleanup()


def timed(label: str, n: int, step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    seconds = time.perf_counter() - started
    print(f"{label:<34} {seconds:7.3f} s  {n / seconds:10,.0f} profiles/s", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    n = args.profiles
    docs = users_json(n, args.seed)
    with tempfile.TemporaryDirectory(prefix="kindle_bench_") as tmp, database() as settings, Store(settings) as store:
        path = Path(tmp) / "users.json"
        path.write_bytes(orjson.dumps(docs, option=orjson.OPT_INDENT_2))
        print(f"{n} profiles, {path.stat().st_size / 1e6:.1f} MB, PostgreSQL at "
              f"{'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded server'}")
        sink = io.StringIO()

        def run_import() -> None:
            sink.seek(0)
            sink.truncate()
            import_file(store, path, dry_run=False, backup=True, out=sink, err=sys.stderr)

        timed("import (all created)", n, run_import)
        timed("re-import (all unchanged)", n, run_import)
        rng = random.Random(args.seed + 1)
        for email in rng.sample(sorted(docs), n // 10):
            docs[email]["last_used"] += 60
            docs[email]["preferences"]["brightness"] = 0.5
        path.write_bytes(orjson.dumps(docs, option=orjson.OPT_INDENT_2))
        timed("import (10% updated)", n, run_import)
        print("   ", sink.getvalue().splitlines()[-1])
        out = Path(tmp) / "export.json"
        timed("export-json -o FILE", n, lambda: export_file(store, out, out=io.StringIO()))
        result: list[int] = []
        timed("verify", n, lambda: result.append(verify_file(store, path, out=io.StringIO())))
        opt = orjson.OPT_SORT_KEYS
        equal = orjson.dumps(orjson.loads(out.read_bytes()), option=opt) == orjson.dumps(docs, option=opt)
        print(f"verify exit {result[0]}; export equals the file: {equal}")
        return 0 if result == [0] and equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
