"""Connecting to the configured database, with one clear line (password masked) for each way it fails."""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import TupleRow

from .errors import ConnectFailed
from .settings import Settings, error_line, mask_url

__all__ = ["CONNECT_TIMEOUT_S", "connect"]

CONNECT_TIMEOUT_S = 5


_MISSING_DB = re.compile(r'database "[^"]*" does not exist')
_AUTH = re.compile(
    r'password authentication failed|role "[^"]*" does not exist|no password supplied|pg_hba\.conf'
    r"|authentication failed|not permitted to log in|permission denied for database",
    re.I,
)
_NETWORK = re.compile(
    r"connection refused|could not translate host|failed to resolve host|timeout expired"
    r"|no route to host|network is unreachable|no such file or directory|could not connect"
    r"|connection timed out|name or service not known",
    re.I,
)


def _reason(message: str) -> str:
    if _MISSING_DB.search(message):
        return "database missing"
    if _AUTH.search(message):
        return "authentication failed"
    if _NETWORK.search(message):
        return "host unreachable"
    return "cannot connect"


def connect(settings: Settings, *, timeout_s: int = CONNECT_TIMEOUT_S) -> psycopg.Connection[TupleRow]:
    """An autocommit connection (operator commands, and the probe before a pool opens); ConnectFailed (password
    masked) if there is none."""
    url = settings.database_url
    try:
        return psycopg.connect(
            url, autocommit=True, connect_timeout=timeout_s, application_name=f"{settings.application_name} ops"
        )
    except psycopg.Error as e:
        text = re.sub(r"\s+", " ", error_line(e, url).removeprefix("connection failed: "))
        raise ConnectFailed(f"{_reason(text)}: {text} ({mask_url(url)})") from None
