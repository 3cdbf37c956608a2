"""Small helpers shared by the test modules (imported as `from _helpers import ...`, like _servers and _workers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson

#: the profile-manager backends: the contract suite and the concurrency proofs run once per backend
BACKENDS = ["json", "db"]


def sorted_json(value: Any) -> bytes:
    """The value as canonical JSON bytes (keys sorted): equal only if the values and their JSON types (1 vs 1.0)
    are equal. To compare two values, kindle_store.profiles.same_json; this is for keeping a snapshot."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class KindleCli(Protocol):
    """The `kindle_cli` fixture: kindle_cli(*argv, env={...}) -> (exit code, stdout, stderr); None in env unsets."""

    def __call__(self, *argv: str, env: Mapping[str, str | None] | None = None) -> tuple[int, str, str]: ...
