"""The users.json profile as typed rows, and the one conversion between those rows and the JSON document.

Every well-known field has a typed column. A key whose exact JSON value the columns cannot give back
(an unknown key, an explicit null, a timestamp written with an offset) is kept, as written, in the
`extra` of the row it belongs to, and wins over the column when the profile is rendered: so
`Profile.from_dict(e, d).to_dict() == d` for every document the application could have written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any, ClassVar, NamedTuple, Protocol

from ._values import DEPTH_SECTION, DEPTH_TOP, is_storable
from ._values import check_storable as check_value
from .errors import InvalidProfile

__all__ = [
    "SECTIONS",
    "DeviceIdentifiers",
    "EmulatorSettings",
    "Kind",
    "LibrarySettings",
    "Profile",
    "ReadingSettings",
    "check_email",
    "check_value",
]

MAX_EMAIL_BYTES = 1024
_INT32 = 2**31


class Kind(Enum):
    """How a JSON value maps onto a typed column."""

    TEXT = "a string"
    BOOL = "a boolean"
    INT = "an integer"
    EPOCH = "integer Unix seconds"
    EPOCH_OR_ISO = "integer Unix seconds or an ISO-8601 string"
    ISO = "an ISO-8601 timestamp string"


# encode runs for every key of every profile: the kinds as module names (a member of an Enum class is slow to look up)
_TEXT, _BOOL, _INT = Kind.TEXT, Kind.BOOL, Kind.INT
_EPOCH, _EPOCH_OR_ISO, _ISO = Kind.EPOCH, Kind.EPOCH_OR_ISO, Kind.ISO


def json_type(v: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "float", type(None): "null"}.get(type(v), type(v).__name__)


def _iso(dt: datetime) -> str:
    """Naive UTC, as `datetime.isoformat()` writes it."""
    offset = dt.utcoffset()
    if offset is None:
        return dt.isoformat()
    if offset:
        dt = dt.astimezone(UTC)
    return dt.isoformat()[:-6]  # less its "+00:00": a third of the time of replace(tzinfo=None).isoformat()


def _seconds(dt: datetime) -> int:
    """Whole Unix seconds."""
    return int(dt.timestamp())


def _parse_iso(v: str, where: str) -> tuple[datetime, bool]:
    """The instant an ISO-8601 string names (a naive one is UTC), and whether `_iso` writes the string back."""
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise InvalidProfile(f"{where}: expected an ISO-8601 timestamp, got {v[:60]!r}") from None
    if dt.tzinfo is None:
        # combine rather than replace(tzinfo=UTC): the same value, a fifth of the time
        return datetime.combine(dt.date(), dt.time(), UTC), dt.isoformat() == v
    try:
        return dt.astimezone(UTC), False  # an offset can push the instant out of the representable years
    except OverflowError:
        raise InvalidProfile(f"{where}: {v[:60]!r} is out of range for a timestamp") from None


def _epoch(v: int, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(v, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidProfile(f"{where}: {v} is out of range for Unix seconds") from None


def encode(kind: Kind, v: Any, where: str, strict: bool = True, depth: int = DEPTH_TOP) -> tuple[Any, bool]:
    """(column value, exact): exact when rendering the column gives back `v` itself.

    A value of the wrong type, or one the column cannot hold, is an error when `strict` (importing a file);
    otherwise (the application setting a field) it is kept as written, with no typed value, as the JSON
    backend keeps it, if it is JSON `depth` levels inside its profile.
    """
    if v is None:
        return None, False
    t = type(v)
    try:
        if kind is _TEXT and t is str:
            check_value(v, where)
            return v, True
        if kind is _BOOL and t is bool:
            return v, True
        if kind is _INT and t is int:
            if not -_INT32 <= v < _INT32:
                raise InvalidProfile(f"{where}: {v} is out of range for an integer column")
            return v, True
        if (kind is _EPOCH or kind is _EPOCH_OR_ISO) and t is int:
            return _epoch(v, where), True
        if (kind is _ISO or kind is _EPOCH_OR_ISO) and t is str:
            # no storable check first: a string that parses as ISO-8601 holds no NUL and no lone surrogate (one
            # that does not parse is checked below when kept as written)
            dt, written_back = _parse_iso(v, where)
            return dt, kind is _ISO and written_back
    except InvalidProfile:
        if strict:
            raise
    if not strict:
        check_value(v, where, depth)
        return None, False
    raise InvalidProfile(f"{where}: expected {kind.value}, got {json_type(v)} {str(v)[:40]!r}")


Rendering = tuple[tuple[str, str, Callable[[Any], Any] | None], ...]


class Columns(Protocol):
    """A row's columns by attribute name: a fetched row (a dict) or a typed one."""

    def __getitem__(self, attr: str, /) -> Any: ...


def _render(plan: Rendering, row: Columns, extra: dict[str, Any] | None) -> dict[str, Any]:
    """One row's JSON object: each non-null typed column (`row[attribute]`) rendered under its key, then
    `extra` over them (a key kept as written wins)."""
    out: dict[str, Any] = {}
    for attr, key, conv in plan:
        v = row[attr]
        if v is not None:
            out[key] = v if conv is None else conv(v)
    if extra:
        out.update(extra)
    return out


def renderer(kind: Kind) -> Callable[[Any], Any] | None:
    """What turns a non-null column of `kind` into its JSON value; None when the column is the value."""
    if kind is Kind.ISO:
        return _iso
    if kind in (Kind.EPOCH, Kind.EPOCH_OR_ISO):
        return _seconds
    return None


def check_email(email: Any, where: str = "email") -> str:
    """The email if it can be a profile key, else InvalidProfile."""
    if type(email) is not str or not email:
        raise InvalidProfile(f"{where}: an email must be a non-empty string, got {email!r:.60}")
    check_value(email, where)
    if len(email.encode()) > MAX_EMAIL_BYTES:
        raise InvalidProfile(f"{where}: email longer than {MAX_EMAIL_BYTES} bytes ({email[:40]}...)")
    return email


def is_storable_email(email: Any) -> bool:
    """False for an email no profile or slot can have (not a string, empty, NUL, too long): it matches nothing."""
    try:
        check_email(email)
    except InvalidProfile:
        return False
    return True


def col(kind: Kind, key: str | None = None) -> Any:
    """A typed column; `key` is its JSON key when that differs from the attribute name."""
    return field(default=None, metadata={"kind": kind, "key": key})


class Spec(NamedTuple):
    attr: str
    key: str
    kind: Kind


class _Row:
    """Shared behaviour of the users row and the section rows: typed columns plus `extra`."""

    extra: dict[str, Any]
    #: how deep in the profile the row's values are
    DEPTH: ClassVar[int] = DEPTH_TOP

    def __getitem__(self, attr: str) -> Any:
        """A column's value by attribute name: a typed row renders as a fetched one does."""
        return getattr(self, attr)

    @classmethod
    @cache
    def specs(cls) -> dict[str, Spec]:
        """{JSON key: Spec} of the typed columns."""
        out = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if "kind" in f.metadata:
                key = f.metadata["key"] or f.name
                out[key] = Spec(f.name, key, f.metadata["kind"])
        return out

    @classmethod
    @cache
    def columns(cls) -> tuple[str, ...]:
        """Column names of the typed fields, then extra."""
        return (*(s.attr for s in cls.specs().values()), "extra")

    @classmethod
    @cache
    def _rendering(cls) -> Rendering:
        """(attribute, JSON key, renderer) of each typed column, in document order."""
        return tuple((s.attr, s.key, renderer(s.kind)) for s in cls.specs().values())

    def set_key(self, key: str, value: Any, where: str, strict: bool = True) -> bool:
        """Set one JSON key of this row; False if it is not a typed column (the caller decides)."""
        spec = self.specs().get(key)
        if spec is None:
            return False
        column, exact = encode(spec.kind, value, where, strict, self.DEPTH)
        setattr(self, spec.attr, column)
        if exact:
            self.extra.pop(key, None)
        else:
            self.extra[key] = value
        return True

    def _fill(self, doc: dict[Any, Any], place: str, sep: str, strict: bool) -> None:
        """Set every key of `doc` on this new row; an error names `place`, then `sep` and the key."""
        # set_key for each key, with the place of an error only written out when there is one
        specs, extra, depth = self.specs(), self.extra, self.DEPTH
        for key, value in doc.items():
            spec = specs.get(key) if type(key) is str else None
            if spec is not None:  # a typed column: its key is one of ours, nothing to check
                kind, t = spec.kind, type(value)
                if (kind is _BOOL and t is bool) or (kind is _TEXT and t is str and is_storable(value)):
                    setattr(self, spec.attr, value)  # what encode does for the two commonest cases, inline
                    continue
                column, exact = encode(kind, value, f"{place}{sep}{key}", strict, depth)
                setattr(self, spec.attr, column)
                if not exact:
                    extra[key] = value
                continue
            if not is_storable(key):
                check_value(key, f"{place}: key {str(key)[:40]!r}")
            if not self.set_key(key, value, f"{place}{sep}{key}", strict):
                if not is_storable(value, depth):
                    check_value(value, f"{place}{sep}{key}", depth)
                extra[key] = value


class Section(_Row):
    NAME: ClassVar[str]
    DEPTH: ClassVar[int] = DEPTH_SECTION

    def to_dict(self) -> dict[str, Any]:
        return _render(self._rendering(), self, self.extra)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str, strict: bool = True) -> Section:
        row = cls()
        row._fill(doc, where, ".", strict)
        return row

    @classmethod
    @cache
    def _timestamps(cls) -> tuple[str, ...]:
        """The attributes of the timestamp columns."""
        return tuple(s.attr for s in cls.specs().values() if s.kind not in (Kind.TEXT, Kind.BOOL, Kind.INT))

    @classmethod
    @cache
    def _json_rendering(cls) -> Rendering:
        """_rendering() for `to_json(section_row)`, where a timestamp arrives as an ISO string with an offset."""
        def from_json(conv: Callable[[Any], Any]) -> Callable[[str], Any]:
            return lambda v: conv(datetime.fromisoformat(v))

        return tuple((attr, key, conv if conv is None else from_json(conv)) for attr, key, conv in cls._rendering())

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Section:
        """From `to_json(section_row)`: timestamps arrive as ISO strings with an offset."""
        values: dict[str, Any] = {attr: row.get(attr) for attr in cls.columns()}
        for attr in cls._timestamps():
            if values[attr] is not None:
                values[attr] = datetime.fromisoformat(values[attr])
        values["extra"] = values["extra"] or {}
        return cls(**values)


@dataclass(slots=True, eq=True)
class EmulatorSettings(Section):
    NAME: ClassVar[str] = "emulator_settings"
    hw_overlays_disabled: bool | None = col(Kind.BOOL)
    animations_disabled: bool | None = col(Kind.BOOL)
    sleep_disabled: bool | None = col(Kind.BOOL)
    status_bar_disabled: bool | None = col(Kind.BOOL)
    auto_updates_disabled: bool | None = col(Kind.BOOL)
    memory_optimizations_applied: bool | None = col(Kind.BOOL)
    appium_device_initialized: bool | None = col(Kind.BOOL)
    memory_optimization_timestamp: datetime | None = col(Kind.EPOCH)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=True)
class DeviceIdentifiers(Section):
    NAME: ClassVar[str] = "device_identifiers"
    hw_wifi_mac: str | None = col(Kind.TEXT, "hw.wifi.mac")
    hw_ethernet_mac: str | None = col(Kind.TEXT, "hw.ethernet.mac")
    ro_serialno: str | None = col(Kind.TEXT, "ro.serialno")
    ro_build_id: str | None = col(Kind.TEXT, "ro.build.id")
    ro_product_name: str | None = col(Kind.TEXT, "ro.product.name")
    android_id: str | None = col(Kind.TEXT)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=True)
class LibrarySettings(Section):
    NAME: ClassVar[str] = "library_settings"
    view_type: str | None = col(Kind.TEXT)
    group_by_series: bool | None = col(Kind.BOOL)
    actively_reading_title: str | None = col(Kind.TEXT)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=True)
class ReadingSettings(Section):
    NAME: ClassVar[str] = "reading_settings"
    theme: str | None = col(Kind.TEXT)
    font_size: str | None = col(Kind.TEXT)
    real_time_highlighting: bool | None = col(Kind.BOOL)
    about_book: bool | None = col(Kind.BOOL)
    page_turn_animation: bool | None = col(Kind.BOOL)
    popular_highlights: bool | None = col(Kind.BOOL)
    highlight_menu: bool | None = col(Kind.BOOL)
    extra: dict[str, Any] = field(default_factory=dict)


#: The section tables, by their users.json key.
SECTIONS: dict[str, type[Section]] = {
    cls.NAME: cls for cls in (EmulatorSettings, DeviceIdentifiers, LibrarySettings, ReadingSettings)
}


@dataclass(slots=True, eq=True)
class Profile(_Row):
    """One account's profile: the users row, its sections and preferences."""

    email: str
    inner_email: str | None = col(Kind.TEXT, "email")
    avd_name: str | None = col(Kind.TEXT)
    timezone: str | None = col(Kind.TEXT)
    last_snapshot: str | None = col(Kind.TEXT)
    kindle_version_name: str | None = col(Kind.TEXT)
    kindle_version_code: str | None = col(Kind.TEXT)
    android_version: str | None = col(Kind.TEXT)
    system_image: str | None = col(Kind.TEXT)
    last_used: datetime | None = col(Kind.EPOCH)
    last_used_date: datetime | None = col(Kind.ISO)
    auth_date: datetime | None = col(Kind.ISO)
    auth_failed_date: datetime | None = col(Kind.ISO)
    cold_storage_date: datetime | None = col(Kind.ISO)
    last_snapshot_timestamp: datetime | None = col(Kind.EPOCH_OR_ISO)
    was_running_at_restart: bool | None = col(Kind.BOOL)
    styles_updated: bool | None = col(Kind.BOOL)
    created_from_seed_clone: bool | None = col(Kind.BOOL)
    post_boot_randomized: bool | None = col(Kind.BOOL)
    needs_device_randomization: bool | None = col(Kind.BOOL)
    cold_storage_dry_run: bool | None = col(Kind.BOOL)
    vnc_instance: int | None = col(Kind.INT)
    extra: dict[str, Any] = field(default_factory=dict)
    emulator_settings: EmulatorSettings | None = None
    device_identifiers: DeviceIdentifiers | None = None
    library_settings: LibrarySettings | None = None
    reading_settings: ReadingSettings | None = None
    #: None when the document has no `preferences` object
    preferences: dict[str, Any] | None = None
    id: int | None = None
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The users.json-shaped document."""
        doc = _render(self._rendering(), self, None)  # extra goes over everything, last
        for name in SECTIONS:
            section: Section | None = getattr(self, name)
            if section is not None:
                doc[name] = section.to_dict()
        if self.preferences is not None:
            doc["preferences"] = dict(self.preferences)
        doc.update(self.extra)
        return doc

    @classmethod
    def from_dict(cls, email: str, doc: Any, strict: bool = True) -> Profile:
        """Validate a users.json profile and type it; InvalidProfile names the key that is wrong."""
        check_email(email)
        if type(doc) is not dict:
            raise InvalidProfile(f"{email}: a profile must be an object, got {json_type(doc)}")
        p = cls(email=email)
        p._fill(doc, email, ": ", strict)
        return p

    def set_key(self, key: str, value: Any, where: str, strict: bool = True) -> bool:
        """Set one top-level key of the document, sections and preferences included."""
        section_cls = SECTIONS.get(key)
        if section_cls is not None or key == "preferences":
            if type(value) is dict:
                if section_cls is not None:
                    setattr(self, key, section_cls.from_dict(value, where, strict))
                else:
                    check_value(value, where, DEPTH_TOP)
                    self.preferences = dict(value)
                self.extra.pop(key, None)
            elif value is None or not strict:
                check_value(value, where, DEPTH_TOP)
                setattr(self, key, None)
                self.extra[key] = value
            else:
                raise InvalidProfile(f"{where}: expected an object or null, got {json_type(value)}")
            return True
        if not _Row.set_key(self, key, value, where, strict):
            check_value(value, where, DEPTH_TOP)
            self.extra[key] = value
        return True

    def drop_key(self, key: str) -> None:
        """Remove one top-level key of the document."""
        self.extra.pop(key, None)
        if key in SECTIONS or key == "preferences":
            setattr(self, key, None)
        elif key in self.specs():
            setattr(self, self.specs()[key].attr, None)

    @classmethod
    def document(cls, row: dict[str, Any]) -> dict[str, Any]:
        """`from_row(row).to_dict()`, rendered straight from the `profile_rows` row without the typed rows."""
        extra = row["extra"]
        doc = _render(cls._rendering(), row, None)  # extra goes over everything, last
        for name, section in SECTIONS.items():
            values = row[name]
            if values is not None:
                doc[name] = _render(section._json_rendering(), values, values["extra"])
        if row["has_preferences"]:
            doc["preferences"] = row["preferences"] or {}
        doc.update(extra)
        return doc

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Profile:
        """From a `profile_rows` row (see sql/users.sql)."""
        values = {attr: row[attr] for attr in _PROFILE_ROW}
        for name, sc in SECTIONS.items():
            if values[name] is not None:
                values[name] = sc.from_row(values[name])
        values["preferences"] = (values["preferences"] or {}) if row["has_preferences"] else None
        return cls(**values)


#: the columns of a `profile_rows` row that Profile.from_row takes, by attribute name
_PROFILE_ROW = (*Profile.columns(), *SECTIONS, "email", "preferences", "id", "version", "created_at", "updated_at")
