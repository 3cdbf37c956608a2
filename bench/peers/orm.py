"""The ORM peer: the original migration guide's design, written the way an SQLAlchemy 2.0 user writes it.

Declarative models for the six tables (the same tables kindle_store migrates; `schema_translate_map` points
them at any schema), a Session per call, a repository that loads a whole profile with one `selectinload` per
relationship, changes it through the ORM objects and commits. The import adds the objects of each profile
field by field and flushes once per user, as the guide's migration script did.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Identity, MetaData, Text, create_engine, func, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    attribute_keyed_dict,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

__all__ = ["OrmProfiles"]

SCHEMA = "kindle_automator"


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA)
    type_annotation_map = {str: Text, datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class _Section:
    """Columns every section table has."""

    user_id: Mapped[int] = mapped_column(ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"), primary_key=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class EmulatorSettings(_Section, Base):
    __tablename__ = "emulator_settings"
    hw_overlays_disabled: Mapped[bool | None]
    animations_disabled: Mapped[bool | None]
    sleep_disabled: Mapped[bool | None]
    status_bar_disabled: Mapped[bool | None]
    auto_updates_disabled: Mapped[bool | None]
    memory_optimizations_applied: Mapped[bool | None]
    appium_device_initialized: Mapped[bool | None]
    memory_optimization_timestamp: Mapped[datetime | None]


class DeviceIdentifiers(_Section, Base):
    __tablename__ = "device_identifiers"
    hw_wifi_mac: Mapped[str | None]
    hw_ethernet_mac: Mapped[str | None]
    ro_serialno: Mapped[str | None]
    ro_build_id: Mapped[str | None]
    ro_product_name: Mapped[str | None]
    android_id: Mapped[str | None]


class LibrarySettings(_Section, Base):
    __tablename__ = "library_settings"
    view_type: Mapped[str | None]
    group_by_series: Mapped[bool | None]
    actively_reading_title: Mapped[str | None]


class ReadingSettings(_Section, Base):
    __tablename__ = "reading_settings"
    theme: Mapped[str | None]
    font_size: Mapped[str | None]
    real_time_highlighting: Mapped[bool | None]
    about_book: Mapped[bool | None]
    page_turn_animation: Mapped[bool | None]
    popular_highlights: Mapped[bool | None]
    highlight_menu: Mapped[bool | None]


class UserPreference(Base):
    __tablename__ = "user_preferences"
    user_id: Mapped[int] = mapped_column(ForeignKey(f"{SCHEMA}.users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    email: Mapped[str]
    inner_email: Mapped[str | None]
    avd_name: Mapped[str | None]
    timezone: Mapped[str | None]
    last_snapshot: Mapped[str | None]
    kindle_version_name: Mapped[str | None]
    kindle_version_code: Mapped[str | None]
    android_version: Mapped[str | None]
    system_image: Mapped[str | None]
    last_used: Mapped[datetime | None]
    last_used_date: Mapped[datetime | None]
    auth_date: Mapped[datetime | None]
    auth_failed_date: Mapped[datetime | None]
    cold_storage_date: Mapped[datetime | None]
    last_snapshot_timestamp: Mapped[datetime | None]
    was_running_at_restart: Mapped[bool | None]
    styles_updated: Mapped[bool | None]
    created_from_seed_clone: Mapped[bool | None]
    post_boot_randomized: Mapped[bool | None]
    needs_device_randomization: Mapped[bool | None]
    cold_storage_dry_run: Mapped[bool | None]
    vnc_instance: Mapped[int | None]
    has_preferences: Mapped[bool] = mapped_column(default=False)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=1, onupdate=sql_text("version + 1"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    emulator_settings: Mapped[EmulatorSettings | None] = relationship(cascade="all, delete-orphan")
    device_identifiers: Mapped[DeviceIdentifiers | None] = relationship(cascade="all, delete-orphan")
    library_settings: Mapped[LibrarySettings | None] = relationship(cascade="all, delete-orphan")
    reading_settings: Mapped[ReadingSettings | None] = relationship(cascade="all, delete-orphan")
    preferences: Mapped[dict[str, UserPreference]] = relationship(
        collection_class=attribute_keyed_dict("key"), cascade="all, delete-orphan")


SECTIONS: dict[str, type[Base]] = {
    "emulator_settings": EmulatorSettings, "device_identifiers": DeviceIdentifiers,
    "library_settings": LibrarySettings, "reading_settings": ReadingSettings,
}
LOAD_ALL = [selectinload(getattr(User, name)) for name in [*SECTIONS, "preferences"]]

# users.json keys whose attribute is spelled differently, and the timestamps written as Unix seconds
_ATTR = {"email": "inner_email", "hw.wifi.mac": "hw_wifi_mac", "hw.ethernet.mac": "hw_ethernet_mac",
         "ro.serialno": "ro_serialno", "ro.build.id": "ro_build_id", "ro.product.name": "ro_product_name"}
_KEY = {attr: key for key, attr in _ATTR.items()}
_EPOCH = {"last_used", "last_snapshot_timestamp", "memory_optimization_timestamp"}
_NOT_DATA = {"id", "user_id", "email", "extra", "has_preferences", "version", "created_at", "updated_at"}


def _to_json(key: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp()) if key in _EPOCH else value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _fields(obj: Base) -> dict[str, Any]:
    doc = {}
    for prop in obj.__mapper__.column_attrs:
        attr, value = prop.key, getattr(obj, prop.key)
        if attr not in _NOT_DATA and value is not None:
            key = _KEY.get(attr, attr)
            doc[key] = _to_json(key, value)
    doc.update(obj.extra)  # type: ignore[attr-defined]
    return doc


def to_dict(user: User) -> dict[str, Any]:
    """The users.json document of a loaded user."""
    doc = _fields(user)
    for name in SECTIONS:
        section = getattr(user, name)
        if section is not None:
            doc[name] = _fields(section)
    if user.has_preferences:
        doc["preferences"] = {key: pref.value for key, pref in user.preferences.items()}
    return doc


def set_key(obj: Base, key: str, value: Any) -> None:
    """Set one users.json key on a user or section: its column if it has one, else a key of `extra`."""
    attr = _ATTR.get(key, key)
    column = obj.__mapper__.columns.get(attr)
    if column is None or attr in _NOT_DATA:
        obj.extra = {**obj.extra, key: value}  # type: ignore[attr-defined]  # a new dict: the ORM sees the change
    elif isinstance(column.type, DateTime) and value is not None:
        setattr(obj, attr, _from_json(value))
    else:
        setattr(obj, attr, value)


class OrmProfiles:
    """The profile repository of the guide: a Session per call."""

    def __init__(self, url: str, schema: str, pool_size: int = 16) -> None:
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                                    pool_size=pool_size, max_overflow=0,
                                    execution_options={"schema_translate_map": {SCHEMA: schema}})
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def _load(self, session: Session, email: str, lock: bool = False) -> User | None:
        query = select(User).where(func.lower(User.email) == email.lower()).options(*LOAD_ALL)
        return session.scalars(query.with_for_update(of=User) if lock else query).one_or_none()

    def get(self, email: str) -> dict[str, Any] | None:
        with self.sessions() as session:
            user = self._load(session, email)
            return None if user is None else to_dict(user)

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        query = (select(User).where(User.last_used.is_not(None))
                 .order_by(User.last_used.desc(), User.id).limit(limit).options(*LOAD_ALL))
        with self.sessions() as session:
            return [to_dict(user) for user in session.scalars(query)]

    def set_field(self, email: str, key: str, value: Any, section: str | None = None) -> bool:
        with self.sessions.begin() as session:
            user = self._load(session, email)
            if user is None:
                return False
            if section is None:
                set_key(user, key, value)
            elif section == "preferences":
                user.has_preferences = True
                if key in user.preferences:
                    user.preferences[key].value = value
                else:
                    user.preferences[key] = UserPreference(key=key, value=value)
            else:
                if getattr(user, section) is None:
                    setattr(user, section, SECTIONS[section](extra={}))
                set_key(getattr(user, section), key, value)
            user.updated_at = func.now()  # a section change is a change of the profile: bump version too
            return True

    def update_auth_state(self, email: str, authenticated: bool) -> bool:
        with self.sessions.begin() as session:
            user = self._load(session, email)
            if user is None:
                return False
            now = datetime.now()
            if authenticated:
                user.auth_date, user.auth_failed_date = now, None
            else:
                user.auth_failed_date = now
            return True

    def increment(self, email: str, *, lock: bool) -> int:
        """vnc_instance += 1 by load, change, commit; `lock` adds FOR UPDATE to the load."""
        with self.sessions.begin() as session:
            user = self._load(session, email, lock=lock)
            if user is None:
                raise KeyError(email)
            user.vnc_instance = (user.vnc_instance or 0) + 1
            return user.vnc_instance

    def import_profiles(self, docs: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Create every profile, object by object, one flush per user, one commit at the end."""
        n = 0
        with self.sessions.begin() as session:
            for email, doc in docs:
                user = User(email=email, extra={})
                session.add(user)
                for key, value in doc.items():
                    if key in SECTIONS and isinstance(value, dict):
                        section = SECTIONS[key](extra={})
                        for k, v in value.items():
                            set_key(section, k, v)
                        setattr(user, key, section)
                        session.add(section)
                    elif key == "preferences" and isinstance(value, dict):
                        user.has_preferences = True
                        for k, v in value.items():
                            pref = UserPreference(key=k, value=v)
                            user.preferences[k] = pref
                            session.add(pref)
                    else:
                        set_key(user, key, value)
                session.flush()
                n += 1
        return n

    def export_profiles(self) -> dict[str, dict[str, Any]]:
        """Every profile, through the models."""
        with self.sessions() as session:
            users = session.scalars(select(User).order_by(User.id).options(*LOAD_ALL))
            return {user.email: to_dict(user) for user in users}
