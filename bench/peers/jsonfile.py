"""The old way: every call loads users.json, changes it and writes it back in place, with no lock.

A reader that opens the file while a writer has just truncated it, or after two writers interleaved their
bytes, finds invalid JSON: that call does nothing (it returns None) and `torn_reads` counts it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["JsonFileProfiles"]


class JsonFileProfiles:
    """Profiles in one users.json, load-modify-save on every call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.torn_reads = 0
        self._count = threading.Lock()  # guards the counter only, never the file

    def _load(self) -> dict[str, Any] | None:
        try:
            with open(self.path) as f:
                return json.load(f)  # type: ignore[no-any-return]
        except json.JSONDecodeError:
            with self._count:
                self.torn_reads += 1
            return None

    def _save(self, doc: dict[str, Any]) -> None:
        with open(self.path, "w") as f:
            json.dump(doc, f, indent=2)

    def _update(self, email: str, change: Callable[[dict[str, Any]], Any]) -> Any:
        doc = self._load()
        if doc is None or email not in doc:
            return None
        result = change(doc[email])
        self._save(doc)
        return result

    def get(self, email: str) -> dict[str, Any] | None:
        doc = self._load()
        return None if doc is None else doc.get(email)

    def set_field(self, email: str, key: str, value: Any, section: str | None = None) -> bool:
        def change(profile: dict[str, Any]) -> bool:
            target = profile if section is None else profile.setdefault(section, {})
            target[key] = value
            return True

        return bool(self._update(email, change))

    def update_auth_state(self, email: str, authenticated: bool) -> bool:
        def change(profile: dict[str, Any]) -> bool:
            if authenticated:
                profile["auth_date"], profile["auth_failed_date"] = datetime.now().isoformat(), None
            else:
                profile["auth_failed_date"] = datetime.now().isoformat()
            return True

        return bool(self._update(email, change))

    def increment(self, email: str) -> int | None:
        def change(profile: dict[str, Any]) -> int:
            profile["vnc_instance"] = (profile.get("vnc_instance") or 0) + 1
            return int(profile["vnc_instance"])

        result: int | None = self._update(email, change)
        return result
