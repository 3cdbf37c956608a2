"""Realistic users.json profiles, as the Kindle Automator writes them: the data every benchmark runs on."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

__all__ = ["profile", "users_json"]

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
    """n profiles by email, the same for the same seed."""
    rng = random.Random(seed)
    return dict(profile(rng, i) for i in range(n))
