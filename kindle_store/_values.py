"""Rules both backends share: what a profile may store, how emails match, how "now" is written."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .errors import InvalidProfile

__all__ = ["DEPTH_SECTION", "DEPTH_TOP", "check_storable", "check_user_field", "email_key", "is_storable", "json_items",
           "now_iso", "now_seconds"]

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes; jsonb would keep more, the JSON file cannot
_MAX_DEPTH = 128  # orjson refuses much deeper documents; this also stops a value that contains itself
#: How deep in its profile a value of a top-level key, and one inside a section or the preferences, sits: nesting
#: is counted from the profile wherever a value comes in (set, edit, import), so that what one takes the others do.
DEPTH_TOP, DEPTH_SECTION = 1, 2


def _utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable_str(s: str) -> bool:
    return "\x00" not in s and (s.isascii() or _utf8(s))


def is_storable(value: Any, depth: int = 0) -> bool:
    """Whether check_storable accepts `value` (`depth` levels inside the value it checks): a quick yes or no,
    with no message to build."""
    t = type(value)
    if t is str:
        return _storable_str(value)
    if value is None or t is bool:
        return True
    if t is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    if t is float:
        return math.isfinite(value)
    if t is dict:
        if depth >= _MAX_DEPTH:
            return not value
        for k, v in value.items():
            if type(k) is not str or not _storable_str(k) or not is_storable(v, depth + 1):
                return False
        return True
    if t is list:
        if depth >= _MAX_DEPTH:
            return not value
        return all(is_storable(v, depth + 1) for v in value)
    return False


def check_storable(value: Any, where: str, depth: int = 0) -> None:
    """Raise InvalidProfile (a ValueError) naming `where` and the path inside unless `value` (`depth` levels inside
    the document it belongs to) is exact JSON."""
    if not is_storable(value, depth):
        _explain(value, where, depth)


def _check_str(s: str, where: str) -> None:
    if "\x00" in s:
        raise InvalidProfile(f"{where}: a NUL character cannot be stored")
    if not _utf8(s):
        raise InvalidProfile(f"{where}: a lone surrogate cannot be stored as UTF-8")


def json_items(value: Any) -> Iterator[tuple[str, Any, int]]:
    """(path, item, depth) of `value` and of everything inside it, in document order; a path is `.key` and `[i]`
    steps (each key cut to 40 characters). A dict's keys are read only after the caller has seen the dict."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        v, path, depth = stack.pop()
        yield path, v, depth
        if type(v) is dict:
            stack.extend((item, f"{path}.{k[:40]}", depth + 1) for k, item in reversed(v.items()))
        elif type(v) is list:
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in reversed(list(enumerate(v))))


def _explain(value: Any, where: str, depth: int = 0) -> None:
    """Raise InvalidProfile naming what in `value` cannot be stored, and where (the slow walk is_storable skips)."""
    # Exact types only: a tuple, an IntEnum or a str subclass would not come back as what was stored.
    for path, v, inside in json_items(value):
        at, t = f"{where}{path}", type(v)
        if depth + inside > _MAX_DEPTH:
            raise InvalidProfile(f"{where}: nested deeper than {_MAX_DEPTH} levels")
        if v is None or t is bool:
            continue
        if t is str:
            _check_str(v, at)
        elif t is int:
            if not _INT_MIN <= v <= _INT_MAX:
                raise InvalidProfile(f"{at}: integer {v} does not fit in 64 bits")
        elif t is float:
            if not math.isfinite(v):
                raise InvalidProfile(f"{at}: {v} cannot be written as JSON")
        elif t is dict:
            for k in v:
                if type(k) is not str:
                    raise InvalidProfile(f"{at}: key {k!r} is not a string")
                _check_str(k, f"{at}: key {k[:40]!r}")
        elif t is not list:
            raise InvalidProfile(f"{at}: {t.__name__} is not a JSON value")


def check_user_field(field: str, value: Any, section: str | None = None) -> None:
    """Raise InvalidProfile naming the field unless `field`, `section` and `value` can all be stored."""
    where = f"field {field!r}" if section is None else f"field {field!r} in section {section!r}"
    if type(field) is not str or (section is not None and type(section) is not str):
        raise InvalidProfile(f"{where}: a field or section name must be a string")  # a key of a JSON object
    check_storable(field, f"{where} (its name)")
    if section is not None:
        check_storable(section, f"{where} (the section name)")
    check_storable(value, where, DEPTH_TOP if section is None else DEPTH_SECTION)


def email_key(email: str) -> str:
    """The case-insensitive form emails are matched by (the stored spelling is kept as given)."""
    return email.lower()


def now_iso() -> str:
    """Now as the old app wrote it: `datetime.now().isoformat()`, local clock, naive."""
    return datetime.now().isoformat()


def now_seconds() -> int:
    """Now as whole Unix seconds, the way `last_used` is written."""
    return int(time.time())
