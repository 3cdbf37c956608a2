"""The exceptions kindle_store raises, each named for the condition it reports."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectFailed",
    "ConnectionLost",
    "InvalidProfile",
    "InvalidUsersFile",
    "InvalidVncFile",
    "KindleStoreError",
    "PoolTimeout",
    "ProfileNotFound",
    "SchemaBehind",
    "SqlFileError",
    "StatementTimeout",
]


class KindleStoreError(Exception):
    """Base class of every error kindle_store raises on purpose."""


class ConfigurationError(KindleStoreError):
    """A setting is missing or malformed (DATABASE_URL, KINDLE_SCHEMA, a pool size...)."""


class SqlFileError(KindleStoreError):
    """A file in sql/ cannot be loaded; the message starts with `file:line:`."""


class SchemaBehind(KindleStoreError):
    """The database schema is older than this package: run `kindle-store migrate` or `yoyo apply`."""


class ProfileNotFound(KindleStoreError, KeyError):
    """No profile has this email."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "profile not found"


class InvalidProfile(KindleStoreError, ValueError):
    """A profile value breaks the data contract of users.json (wrong type, NUL character, ...)."""


class InvalidUsersFile(InvalidProfile):
    """A users.json document cannot be imported; the message names the profile and key (or byte offset)."""


class InvalidVncFile(KindleStoreError, ValueError):
    """A vnc_instance_map.json document breaks the data contract."""


class ConnectFailed(KindleStoreError):
    """The server is unreachable, refuses the login, or has no such database; the message says which."""


class ConnectionLost(KindleStoreError):
    """The connection broke mid-call; the call may or may not have been applied. Safe to call again."""


class PoolTimeout(KindleStoreError):
    """No pooled connection became free in time (KINDLE_POOL_TIMEOUT); the database is overloaded or down."""


class StatementTimeout(KindleStoreError):
    """The server cancelled a statement that ran past KINDLE_STATEMENT_TIMEOUT_MS; nothing of it was committed."""
