"""zoo: a plugin-based model zoo and registry for transfer learning.

This module is zoo's public face: plugins (first-party ones included) import only what is
re-exported here. It stays light: importing ``zoo`` imports no torch, timm or mlflow.
"""

from __future__ import annotations

from zoo.errors import (
    BadReferenceError,
    DataError,
    IntegrityError,
    Interrupted,
    LicenseError,
    NotCachedError,
    NotFoundError,
    OfflineError,
    PluginError,
    SecurityError,
    UnknownModelError,
    UsageError,
    ZooError,
)
from zoo.home import atomic_write_text, home, subdir
from zoo.hookspecs import hookimpl
from zoo.licenses import UNKNOWN, license_from_url, normalize_license
from zoo.refs import Ref, parse_ref
from zoo.types import (
    Backbone,
    BackboneInfo,
    Exporter,
    FileRecord,
    Progress,
    Provider,
    PulledWeights,
    Strategy,
)

__version__ = "0.1.0"

__all__ = [
    "UNKNOWN",
    "Backbone",
    "BackboneInfo",
    "BadReferenceError",
    "DataError",
    "Exporter",
    "FileRecord",
    "IntegrityError",
    "Interrupted",
    "LicenseError",
    "NotCachedError",
    "NotFoundError",
    "OfflineError",
    "PluginError",
    "Progress",
    "Provider",
    "PulledWeights",
    "Ref",
    "SecurityError",
    "Strategy",
    "UnknownModelError",
    "UsageError",
    "ZooError",
    "__version__",
    "atomic_write_text",
    "home",
    "hookimpl",
    "license_from_url",
    "normalize_license",
    "parse_ref",
    "subdir",
]
