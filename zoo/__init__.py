"""zoo: a plugin-based model zoo and registry for transfer learning.

This module is zoo's public face: plugins (first-party ones included) import only what is
re-exported here. It stays light: importing ``zoo`` imports no torch, timm or mlflow.
"""

from __future__ import annotations

from zoo.backbone import ModuleBackbone
from zoo.build import build_backbone
from zoo.checkpoints import load_state_dict, map_state_dict, save_safetensors
from zoo.download import is_offline, sha256_file
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
    TrainingError,
    UnknownModelError,
    UsageError,
    ZooError,
)
from zoo.home import atomic_write_text, home, subdir
from zoo.hookspecs import PLUGIN_API, hookimpl
from zoo.inference import SIDECAR as EXPORT_SIDECAR
from zoo.inference import OnnxModel, load_image, preprocessing_from, softmax
from zoo.licenses import (
    UNKNOWN,
    LicenseStatement,
    license_from_url,
    normalize_license,
    publisher_statement,
    spdx_url,
)
from zoo.local import LocalModel, local_model, local_models
from zoo.onnx_export import export_onnx
from zoo.pull import hf_cache_dir, hf_endpoint, pull_hub, pull_url
from zoo.refs import Ref, parse_ref
from zoo.stages import (
    check_partition,
    group_matcher_stages,
    stages_from_assignment,
    timm_style_backbone,
)
from zoo.transferability import hscore, knn_accuracy, leep, logme, nce
from zoo.types import (
    Backbone,
    BackboneInfo,
    Candidate,
    CheckSet,
    Exporter,
    ExportOptions,
    ExportResult,
    FileRecord,
    Metric,
    Phase,
    Progress,
    Provider,
    PulledWeights,
    Strategy,
    StrategySettings,
    TrainingPlan,
    TrainingSummary,
)

__version__ = "0.1.0"

__all__ = [
    "EXPORT_SIDECAR",
    "PLUGIN_API",
    "UNKNOWN",
    "Backbone",
    "BackboneInfo",
    "BadReferenceError",
    "Candidate",
    "CheckSet",
    "DataError",
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "FileRecord",
    "IntegrityError",
    "Interrupted",
    "LicenseError",
    "LicenseStatement",
    "LocalModel",
    "Metric",
    "ModuleBackbone",
    "NotCachedError",
    "NotFoundError",
    "OfflineError",
    "OnnxModel",
    "Phase",
    "PluginError",
    "Progress",
    "Provider",
    "PulledWeights",
    "Ref",
    "SecurityError",
    "Strategy",
    "StrategySettings",
    "TrainingError",
    "TrainingPlan",
    "TrainingSummary",
    "UnknownModelError",
    "UsageError",
    "ZooError",
    "__version__",
    "atomic_write_text",
    "build_backbone",
    "check_partition",
    "export_onnx",
    "group_matcher_stages",
    "hf_cache_dir",
    "hf_endpoint",
    "home",
    "hookimpl",
    "hscore",
    "is_offline",
    "knn_accuracy",
    "leep",
    "license_from_url",
    "load_image",
    "load_state_dict",
    "local_model",
    "local_models",
    "logme",
    "map_state_dict",
    "nce",
    "normalize_license",
    "parse_ref",
    "preprocessing_from",
    "publisher_statement",
    "pull_hub",
    "pull_url",
    "save_safetensors",
    "sha256_file",
    "softmax",
    "spdx_url",
    "stages_from_assignment",
    "subdir",
    "timm_style_backbone",
]
