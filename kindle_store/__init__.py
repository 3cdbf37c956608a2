"""kindle_store: the Kindle Automator's profiles and VNC slots in PostgreSQL, raw SQL over a psycopg pool."""

from __future__ import annotations

from .avd import AVDProfileManager
from .errors import (
    ConfigurationError,
    ConnectFailed,
    ConnectionLost,
    InvalidProfile,
    InvalidUsersFile,
    InvalidVncFile,
    KindleStoreError,
    PoolTimeout,
    ProfileNotFound,
    SchemaBehind,
    SqlFileError,
    StatementTimeout,
)
from .profile import Profile
from .settings import Settings
from .store import Store
from .vnc_manager import VNCInstanceManager

__all__ = [
    "AVDProfileManager",
    "ConfigurationError",
    "ConnectFailed",
    "ConnectionLost",
    "InvalidProfile",
    "InvalidUsersFile",
    "InvalidVncFile",
    "KindleStoreError",
    "PoolTimeout",
    "Profile",
    "ProfileNotFound",
    "SchemaBehind",
    "Settings",
    "SqlFileError",
    "StatementTimeout",
    "Store",
    "VNCInstanceManager",
]
__version__ = "0.1.0"
