"""Every query of sql/, loaded once at import: a malformed file fails here, naming file and line."""

from __future__ import annotations

from ._paths import SQL_DIR
from ._sqlfiles import Query, load_dir

__all__ = ["ALL", "Query", "queries"]

#: {file stem: {query name: Query}}
ALL: dict[str, dict[str, Query]] = load_dir(SQL_DIR)


def queries(family: str) -> dict[str, Query]:
    """The queries of sql/<family>.sql."""
    return ALL[family]
