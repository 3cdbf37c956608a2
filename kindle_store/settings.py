"""Settings from the environment: where the database is, which schema, how the pool behaves."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_SCHEMA", "NAME_RE", "Settings", "check_schema_name", "error_line", "libpq_url", "mask_url", "scrub",
    "split_password", "truthy",
]

DEFAULT_SCHEMA = "kindle_automator"
#: what a schema (or role) name of ours may be: lower case, digits, _, at most 63 bytes
NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
#: the largest statement_timeout the server takes (milliseconds, a 32-bit integer)
_MAX_TIMEOUT_MS = 2**31 - 1


#: schemas that are not ours to fill: the server's own, and public (where yoyo lands when no schema is named)
_SYSTEM_SCHEMAS = {"public", "information_schema"}


def check_schema_name(name: str) -> str:
    """Return `name` if it is an allowed schema name, else raise ConfigurationError."""
    if not NAME_RE.fullmatch(name):
        raise ConfigurationError(
            f"KINDLE_SCHEMA={name!r} is not allowed: use ^[a-z_][a-z0-9_]{{0,62}}$ (lower case, digits, _)"
        )
    if name in _SYSTEM_SCHEMAS or name.startswith("pg_"):
        raise ConfigurationError(
            f"KINDLE_SCHEMA={name!r} is not allowed: kindle_store keeps its tables in a schema of its own, "
            "not public, information_schema or pg_*"
        )
    return name


def truthy(name: str, value: str | None, default: bool = False) -> bool:
    """Read a boolean environment variable; anything but a clear yes/no is an error."""
    if value is None:
        return default
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigurationError(f"{name}={value!r} is not a boolean (use true/false)")


def split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password (in the user info or a `password=` parameter), and the password."""
    parts = urlsplit(url)
    password: str | None = None
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, raw = userinfo.partition(":")
    if colon:
        password = unquote(raw)
    kept = []
    for piece in parts.query.split("&") if parts.query else []:  # kept as written: libpq reads `+` as `+`
        key, _, raw = piece.partition("=")
        if unquote(key) == "password":
            password = unquote(raw)
        else:
            kept.append(piece)
    netloc = f"{user}@{hostport}" if at and user else hostport
    return urlunsplit(parts._replace(netloc=netloc, query="&".join(kept))), password or None


def _secrets(url: str) -> list[str]:
    """Every spelling of the URL's password: as written in the URL and decoded. The URL is cut up as urlsplit
    does, without its checks: an URL it refuses (a stray `[`) must be scrubbed all the same."""
    netloc = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    query = url.partition("?")[2].partition("#")[0]
    found: set[str] = set()
    userinfo, at, _ = netloc.rpartition("@")
    if at and ":" in userinfo:
        raw = userinfo.partition(":")[2]
        found |= {raw, unquote(raw)}
    for piece in query.split("&"):
        key, _, raw = piece.partition("=")
        if unquote(key) == "password":
            found |= {raw, unquote(raw)}
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with every spelling of the URL's password replaced by `***`."""
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def error_line(e: BaseException, url: str) -> str:
    """The first line of an error's message (its type's name if it has none), the URL's password scrubbed."""
    text = str(e).strip()
    return scrub(text.splitlines()[0] if text else type(e).__name__, url)


def mask_url(url: str) -> str:
    """The URL as it may be printed or logged: its password (user info or `password=`) replaced by `***`.
    Anything but a URL (a key=value connection string) is not printed at all."""
    if "://" not in url:
        return "<not a URL>"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<not a URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    # rebuilt only to put *** in: urlunsplit drops the // of an empty host (postgresql:///db, a unix socket)
    masked = urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}")) if at and colon else url
    return scrub(masked, url)


def yoyo_schema(url: str) -> tuple[str, str | None]:
    """`url` without the `schema` query parameter the bare yoyo CLI reads (libpq knows none), and its value
    (unquoted: yoyo takes `kindle_automator` and `"kindle_automator"` alike); None if there is none."""
    base, sep, query = url.partition("?")
    pieces = query.split("&") if sep else []
    kept = [piece for piece in pieces if unquote(piece.partition("=")[0]) != "schema"]
    named = [unquote(piece.partition("=")[2]).strip('"') for piece in pieces if piece not in kept]
    return base + ("?" + "&".join(kept) if kept else ""), named[-1] if named else None


def libpq_url(url: str) -> str:
    """Turn `postgresql+psycopg://…?schema=…` (the spelling yoyo needs) into a URL libpq accepts."""
    # a stray newline or space (from a .env file) would end up in the database name
    url = yoyo_schema(url.strip())[0]
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError("DATABASE_URL must be a URL starting with postgresql:// "
                                 "(a key=value connection string is not accepted)")
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ConfigurationError(f"DATABASE_URL must start with postgresql://, got {mask_url(url)!r}")
    try:
        urlsplit(url)
    except ValueError:  # its message may quote the text between [ and ]: a password, perhaps
        raise ConfigurationError(
            "DATABASE_URL is not a valid URL: put an IPv6 host in [brackets] and write a [, ], @, / or : "
            "in the user name or password as %XX"
        ) from None
    try:  # parsed here, once: a pool retrying it would log libpq's complaint, which quotes the password
        conninfo_to_dict(f"postgresql://{rest}")
    except psycopg.ProgrammingError as e:
        raise ConfigurationError(f"DATABASE_URL is not a URL libpq accepts: {error_line(e, url)}") from None
    return f"postgresql://{rest}"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    """Everything the library needs to reach its database; `Settings.from_env()` reads it."""

    database_url: str = field(repr=False)
    schema: str = DEFAULT_SCHEMA
    min_size: int = 1
    max_size: int = 10
    #: seconds to wait for a free connection from the pool
    timeout: float = 10.0
    #: server-side `statement_timeout`, milliseconds (0 = none)
    statement_timeout_ms: int = 30_000
    #: psycopg's prepare_threshold; None switches prepared statements off (PgBouncer < 1.21)
    prepare_threshold: int | None = 5
    application_name: str = "kindle_store"

    def __post_init__(self) -> None:
        check_schema_name(self.schema)
        named = yoyo_schema(self.database_url.strip())[1]
        object.__setattr__(self, "database_url", libpq_url(self.database_url))
        if named is not None and named != self.schema:
            raise ConfigurationError(f"DATABASE_URL names schema {named!r} (?schema=, for yoyo) and KINDLE_SCHEMA "
                                     f"is {self.schema!r}: make them agree")
        if self.min_size < 0:
            raise ConfigurationError(f"KINDLE_POOL_MIN={self.min_size!r} is negative")
        if self.max_size < max(1, self.min_size):
            raise ConfigurationError(f"KINDLE_POOL_MAX={self.max_size!r} is out of range: at least 1 and at least "
                                     f"KINDLE_POOL_MIN ({self.min_size})")
        if not 0 < self.timeout < math.inf:  # nan too
            raise ConfigurationError(f"KINDLE_POOL_TIMEOUT={self.timeout!r} is not a positive number of seconds")
        if not 0 <= self.statement_timeout_ms <= _MAX_TIMEOUT_MS:
            raise ConfigurationError(f"KINDLE_STATEMENT_TIMEOUT_MS={self.statement_timeout_ms!r} is out of range: "
                                     f"0 (no timeout) to {_MAX_TIMEOUT_MS}")

    def __repr__(self) -> str:
        return f"Settings(database_url={mask_url(self.database_url)!r}, schema={self.schema!r})"

    @property
    def masked_url(self) -> str:
        return mask_url(self.database_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read DATABASE_URL, KINDLE_SCHEMA and KINDLE_POOL_* / KINDLE_*_TIMEOUT; refuse to guess a URL."""
        env = os.environ if env is None else env
        url = overrides.pop("database_url", None) or env.get("DATABASE_URL")
        if not url:
            raise ConfigurationError(
                "DATABASE_URL is not set: give a postgresql:// URL (or use Store.embedded() for a local server)"
            )
        prepare = env.get("KINDLE_PREPARE_THRESHOLD", "5").strip().lower()
        values: dict[str, object] = {
            "database_url": url,
            "schema": env.get("KINDLE_SCHEMA", yoyo_schema(str(url))[1] or DEFAULT_SCHEMA),
            "min_size": _int(env, "KINDLE_POOL_MIN", 1),
            "max_size": _int(env, "KINDLE_POOL_MAX", 10),
            "timeout": _float(env, "KINDLE_POOL_TIMEOUT", 10.0),
            "statement_timeout_ms": _int(env, "KINDLE_STATEMENT_TIMEOUT_MS", 30_000),
            "prepare_threshold": None if prepare in ("", "off", "none") else _int(env, "KINDLE_PREPARE_THRESHOLD", 5),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
