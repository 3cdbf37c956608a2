"""The users.json profile as typed rows, and the one conversion between those rows and the JSON document.

Every well-known field has a typed column. A key whose exact JSON value the columns cannot give back
(an unknown key, an explicit null, a timestamp written with an offset) is kept, as written, in the
`extra` of the row it belongs to, and wins over the column when the profile is rendered: so
`Profile.from_dict(e, d).to_dict() == d` for every document the application could have written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any, ClassVar, NamedTuple

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


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "float", type(None): "null"}.get(type(v), type(v).__name__)


def _iso(dt: datetime) -> str:
    """Naive UTC, as `datetime.isoformat()` writes it."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat()


def _parse_iso(v: str, where: str) -> datetime:
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise InvalidProfile(f"{where}: expected an ISO-8601 timestamp, got {v[:60]!r}") from None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)  # an offset can push the instant out of the representable years
    except OverflowError:
        raise InvalidProfile(f"{where}: {v[:60]!r} is out of range for a timestamp") from None


def _epoch(v: int, where: str) -> datetime:
    try:
        return datetime.fromtimestamp(v, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidProfile(f"{where}: {v} is out of range for Unix seconds") from None


def encode(kind: Kind, v: Any, where: str, strict: bool = True) -> tuple[Any, bool]:
    """(column value, exact): exact when rendering the column gives back `v` itself.

    A value of the wrong type is an error when `strict` (importing a file); otherwise (the application
    setting a field) it is kept as written, with no typed value.
    """
    if v is None:
        return None, False
    t = type(v)
    if kind is Kind.TEXT and t is str:
        check_value(v, where)
        return v, True
    if kind is Kind.BOOL and t is bool:
        return v, True
    if kind is Kind.INT and t is int:
        if not -_INT32 <= v < _INT32:
            raise InvalidProfile(f"{where}: {v} is out of range for an integer column")
        return v, True
    if kind in (Kind.EPOCH, Kind.EPOCH_OR_ISO) and t is int:
        return _epoch(v, where), True
    if kind in (Kind.ISO, Kind.EPOCH_OR_ISO) and t is str:
        check_value(v, where)
        try:
            dt = _parse_iso(v, where)
        except InvalidProfile:
            if strict:
                raise
            return None, False
        return dt, kind is Kind.ISO and _iso(dt) == v
    if not strict:
        check_value(v, where)
        return None, False
    raise InvalidProfile(f"{where}: expected {kind.value}, got {_type_name(v)} {str(v)[:40]!r}")


def render(kind: Kind, col: Any) -> Any:
    """The JSON value a non-null column stands for."""
    if kind is Kind.ISO:
        return _iso(col)
    if kind in (Kind.EPOCH, Kind.EPOCH_OR_ISO):
        return int(col.timestamp())
    return col


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

    def _fields_to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in self.specs().values():
            v = getattr(self, spec.attr)
            if v is not None:
                out[spec.key] = render(spec.kind, v)
        out.update(self.extra)
        return out

    def set_key(self, key: str, value: Any, where: str, strict: bool = True) -> bool:
        """Set one JSON key of this row; False if it is not a typed column (the caller decides)."""
        spec = self.specs().get(key)
        if spec is None:
            return False
        column, exact = encode(spec.kind, value, where, strict)
        setattr(self, spec.attr, column)
        if exact:
            self.extra.pop(key, None)
        else:
            self.extra[key] = value
        return True


class Section(_Row):
    NAME: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return self._fields_to_dict()

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str, strict: bool = True) -> Section:
        row = cls()
        for key, value in doc.items():
            check_value(key, f"{where}: key {str(key)[:40]!r}")
            if not row.set_key(key, value, f"{where}.{key}", strict):
                check_value(value, f"{where}.{key}")
                row.extra[key] = value
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Section:
        """From `to_json(section_row)`: timestamps arrive as ISO strings with an offset."""
        values = {}
        for spec in cls.specs().values():
            v = row.get(spec.attr)
            if v is not None and spec.kind in (Kind.EPOCH, Kind.EPOCH_OR_ISO, Kind.ISO):
                v = datetime.fromisoformat(v)
            values[spec.attr] = v
        return cls(**values, extra=row.get("extra") or {})  # type: ignore[call-arg]


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
        doc = self._fields_to_dict()
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
            raise InvalidProfile(f"{email}: a profile must be an object, got {_type_name(doc)}")
        p = cls(email=email)
        for key, value in doc.items():
            check_value(key, f"{email}: key {str(key)[:40]!r}")
            p.set_key(key, value, f"{email}: {key}", strict)
        return p

    def set_key(self, key: str, value: Any, where: str, strict: bool = True) -> bool:
        """Set one top-level key of the document, sections and preferences included."""
        section_cls = SECTIONS.get(key)
        if section_cls is not None or key == "preferences":
            if type(value) is dict:
                if section_cls is not None:
                    setattr(self, key, section_cls.from_dict(value, where, strict))
                else:
                    check_value(value, where)
                    self.preferences = dict(value)
                self.extra.pop(key, None)
            elif value is None or not strict:
                check_value(value, where)
                setattr(self, key, None)
                self.extra[key] = value
            else:
                raise InvalidProfile(f"{where}: expected an object or null, got {_type_name(value)}")
            return True
        if not _Row.set_key(self, key, value, where, strict):
            check_value(value, where)
            self.extra[key] = value
        return True

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Profile:
        """From a `profile_rows` row (see sql/users.sql)."""
        values = {spec.attr: row[spec.attr] for spec in cls.specs().values()}
        sections = {name: (None if row[name] is None else sc.from_row(row[name])) for name, sc in SECTIONS.items()}
        prefs = row["preferences"]
        return cls(
            email=row["email"], extra=row["extra"], id=row["id"], version=row["version"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            preferences=(prefs or {}) if row["has_preferences"] else None,
            **values, **sections,  # type: ignore[arg-type]
        )
