"""zoo: a plugin-based model zoo and registry for transfer learning.

This module is zoo's public face: plugins (first-party ones included) import only what is
re-exported here. It stays light: importing ``zoo`` imports no torch, timm or mlflow.
"""

from __future__ import annotations

from zoo.backbone import ModuleBackbone
from zoo.checkpoints import load_state_dict, map_state_dict, save_safetensors
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
from zoo.onnx_export import export_onnx
from zoo.refs import Ref, parse_ref
from zoo.stages import check_partition, stages_from_assignment
from zoo.types import (
    Backbone,
    BackboneInfo,
    CheckSet,
    Exporter,
    ExportOptions,
    ExportResult,
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
    "CheckSet",
    "DataError",
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "FileRecord",
    "IntegrityError",
    "Interrupted",
    "LicenseError",
    "ModuleBackbone",
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
    "export_onnx",
    "check_partition",
    "home",
    "hookimpl",
    "license_from_url",
    "load_state_dict",
    "map_state_dict",
    "normalize_license",
    "parse_ref",
    "save_safetensors",
    "stages_from_assignment",
    "subdir",
]
