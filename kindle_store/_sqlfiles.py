"""Load named queries from sql/*.sql into Query objects; every mistake is reported at load time as file:line.

A file holds queries like this::

    -- name: get_profile(email) :one
    -- The whole profile of one email, matched case-insensitively; no row if unknown.
    SELECT ... FROM {schema}.users WHERE lower(email) = lower(:email)

`:param` is a value (sent as a parameter, never pasted), `{schema}` and any other `{ident}` declared in the
signature are identifiers, composed with `psycopg.sql.Identifier`. Result kinds: `:one` (a row or None),
`:many` (a list of rows), `:scalar` (the first column of the first row, or None), `:affected` (row count).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from psycopg import Connection, Cursor, sql

from .errors import SqlFileError

__all__ = ["Query", "QueryConnection", "load_dir", "load_file"]

Kind = Literal["one", "many", "scalar", "affected"]

_HEADER = re.compile(r"--\s*name:")
_SIGNATURE = re.compile(
    r"--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*\((?P<params>[^)]*)\)\s*:(?P<kind>one|many|scalar|affected)\s*$"
)
_VALUE = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_IDENT = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_ARG = re.compile(r"\{?[a-z_][a-z0-9_]*\}?")


@dataclass(frozen=True)
class Query:
    """One named statement from an SQL file."""

    name: str
    kind: Kind
    doc: str
    params: tuple[str, ...]
    idents: tuple[str, ...]
    text: str = field(repr=False)
    where: str = ""
    _rendered: dict[tuple[Any, ...], bytes] = field(default_factory=dict, repr=False, compare=False)
    _columns: dict[tuple[Any, ...], tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def compose(self, schema: str, **idents: str) -> sql.Composed:
        """The statement for `schema`, with `{ident}` placeholders filled by identifiers."""
        names = {"schema": schema, **idents}
        if set(names) != {"schema", *self.idents}:
            raise TypeError(f"{self.name}: identifiers {sorted(self.idents)} expected, got {sorted(idents)}")
        parts = [sql.Identifier(names[piece]) if i % 2 else sql.SQL(piece)
                 for i, piece in enumerate(_IDENT.split(self.text))]
        return sql.Composed(parts)

    def _statement(self, conn: Connection[Any], schema: str,
                   idents: dict[str, str]) -> tuple[tuple[Any, ...], bytes]:
        """(cache key, statement bytes) for `schema` and `idents` (psycopg names a missing parameter itself)."""
        # The composed statement is rendered once (identifier quoting does not vary between our connections):
        # psycopg then recognises the same bytes and skips re-parsing the placeholders.
        key = (schema, *sorted(idents.items()))
        text = self._rendered.get(key)
        if text is None:
            text = self._rendered[key] = self.compose(schema, **idents).as_bytes(conn)
        return key, text

    def cursor(self, conn: Connection[Any], schema: str, params: Mapping[str, Any], **idents: str) -> Cursor[Any]:
        """A new cursor on which the statement has been executed (its rows not yet fetched)."""
        _, text = self._statement(conn, schema, idents)
        cur = conn.cursor()
        cur.execute(text, params)
        return cur

    def run(self, conn: Connection[Any], schema: str, params: Mapping[str, Any] | None = None, *,
            dicts: bool = False, **idents: str) -> Any:
        """Execute and return what the query's kind promises; rows are tuples, or dicts with `dicts`."""
        params = params or {}
        key, text = self._statement(conn, schema, idents)
        cur = _cursor(conn)
        cur.execute(text, params)
        if self.kind == "affected":
            return cur.rowcount
        if self.kind == "scalar":
            row = cur.fetchone()
            return None if row is None else row[0]
        if self.kind == "one":
            row = cur.fetchone()
            return dict(zip(self._names(key, cur), row, strict=True)) if dicts and row is not None else row
        rows = cur.fetchall()
        if dicts:
            names = self._names(key, cur)
            return [dict(zip(names, row, strict=True)) for row in rows]
        return rows

    def _names(self, key: tuple[Any, ...], cur: Cursor[Any]) -> tuple[str, ...]:
        """The result's column names, kept from one execution to the next rather than decoded each time: they
        change only when a migration changes the statement's result, and are read again when their number does
        (PostgreSQL itself refuses a prepared statement whose result changed: restart after such a migration)."""
        names = self._columns.get(key)
        if names is None or cur.pgresult is None or len(names) != cur.pgresult.nfields:
            names = self._columns[key] = tuple(c.name for c in cur.description or ())
        return names


class QueryConnection(Connection[Any]):
    """A psycopg connection that keeps one cursor for Query.run: a new cursor looks up every column's loader
    again, some 15 µs for a profile row. The Store's pool makes these; any other connection works too."""

    query_cursor: Cursor[Any] | None = None


def _cursor(conn: Connection[Any]) -> Cursor[Any]:
    """The cursor Query.run executes on: the connection's own if it keeps one, else a new one."""
    if not isinstance(conn, QueryConnection):
        return conn.cursor()
    if conn.query_cursor is None:
        conn.query_cursor = conn.cursor()
    return conn.query_cursor


def _parse_signature(line: str, where: str) -> tuple[str, Kind, tuple[str, ...], tuple[str, ...]]:
    m = _SIGNATURE.match(line.strip())
    if not m:
        raise SqlFileError(f"{where}: malformed name line {line.strip()!r}; expected '-- name: f(a, b) :one'")
    args = [a.strip() for a in m["params"].split(",") if a.strip()]
    for a in args:
        if not _ARG.fullmatch(a):
            raise SqlFileError(f"{where}: bad parameter {a!r} in {m['name']}")
    params = tuple(a for a in args if not a.startswith("{"))
    idents = tuple(a[1:-1] for a in args if a.startswith("{"))
    return m["name"], m["kind"], params, idents  # type: ignore[return-value]


def _strip_comment(line: str) -> str:
    return line.split("--", 1)[0] if "--" in line else line


def _build(path: Path, start: int, header: str, body: Sequence[str]) -> Query:
    where = f"{path.name}:{start}"
    name, kind, params, idents = _parse_signature(header, where)
    doc = []
    i = 0
    while i < len(body) and body[i].lstrip().startswith("--"):
        doc.append(body[i].lstrip()[2:].strip())
        i += 1
    code = [_strip_comment(x).rstrip() for x in body[i:]]
    text = "\n".join(x for x in code if x.strip())
    if not text:
        raise SqlFileError(f"{where}: query {name} has no SQL")
    if not doc:
        raise SqlFileError(f"{where}: query {name} has no doc comment")
    for lineno, line in enumerate(code, start=start + 1 + i):
        for used in _VALUE.findall(line):
            if used not in params:
                raise SqlFileError(f"{path.name}:{lineno}: parameter :{used} is used but not declared in {name}")
        for used in _IDENT.findall(line):
            if used != "schema" and used not in idents:
                raise SqlFileError(f"{path.name}:{lineno}: identifier {{{used}}} is not declared in {name}")
    unused = [p for p in params if f":{p}" not in text] + [p for p in idents if f"{{{p}}}" not in text]
    if unused:
        raise SqlFileError(f"{where}: {name} declares {unused} but never uses it")
    # psycopg placeholders: %(name)s; a literal % must be doubled
    text = _VALUE.sub(lambda m: f"%({m[1]})s", text.replace("%", "%%"))
    return Query(name, kind, " ".join(doc), params, idents, text, where)


def _split(path: Path, lines: Sequence[str]) -> Iterator[tuple[int, str, list[str]]]:
    start = 0
    header = ""
    body: list[str] = []
    for n, line in enumerate(lines, start=1):
        if _HEADER.match(line.strip()):
            if header:
                yield start, header, body
            start, header, body = n, line, []
        elif header:
            body.append(line)
        elif line.strip() and not line.lstrip().startswith("--"):
            raise SqlFileError(f"{path.name}:{n}: SQL before the first '-- name:' line")
    if header:
        yield start, header, body


def load_file(path: Path) -> dict[str, Query]:
    """Every query of one file, by name."""
    queries: dict[str, Query] = {}
    for start, header, body in _split(path, path.read_text(encoding="utf-8").splitlines()):
        q = _build(path, start, header, body)
        if q.name in queries:
            raise SqlFileError(f"{path.name}:{start}: duplicate query name {q.name} (first at {queries[q.name].where})")
        queries[q.name] = q
    if not queries:
        raise SqlFileError(f"{path.name}:1: no '-- name:' line in the file")
    return queries


def load_dir(directory: Path) -> dict[str, dict[str, Query]]:
    """Every file of a directory: {file stem: {query name: Query}}."""
    return {p.stem: load_file(p) for p in sorted(directory.glob("*.sql"))}
