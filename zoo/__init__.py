"""zoo: a plugin-based model zoo and registry for transfer learning.

This module is zoo's public face: plugins (first-party ones included) import only what is
re-exported here. It stays light: importing ``zoo`` imports the contract (errors, records,
protocols, the reference grammar, the hook markers) and nothing else; every other name is
imported on first use (PEP 562 ``__getattr__``), so ``import zoo`` imports no torch, timm,
mlflow, onnx, rich or concurrent.futures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zoo.catalog.index import answer_registered_names
from zoo.contract.errors import (
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
from zoo.contract.hookspecs import PLUGIN_API, hookimpl
from zoo.contract.protocols import (
    Backbone,
    DataSource,
    Exporter,
    Metric,
    Progress,
    Provider,
    Strategy,
)
from zoo.contract.refs import NameGrammar, Ref, parse_ref
from zoo.contract.types import (
    BackboneInfo,
    Candidate,
    CheckSet,
    ExportOptions,
    ExportResult,
    FileRecord,
    Phase,
    PulledWeights,
    SourceImage,
    StrategySettings,
    TrainingPlan,
    TrainingSummary,
)
from zoo.contract.version import VERSION

if TYPE_CHECKING:  # the lazy names, for type checkers and readers
    from zoo.catalog.backbone import ModuleBackbone
    from zoo.catalog.build import build_backbone
    from zoo.catalog.stages import (
        check_partition,
        group_matcher_stages,
        stages_from_assignment,
        timm_style_backbone,
    )
    from zoo.choose.transferability import hscore, knn_accuracy, leep, logme, nce
    from zoo.contract.precision import exact_fp32
    from zoo.deploy.exported import SIDECAR as EXPORT_SIDECAR
    from zoo.deploy.images import load_image, preprocessing_from
    from zoo.deploy.predict import softmax
    from zoo.disk.paths import atomic_write_text, home, subdir
    from zoo.licenses.ids import (
        UNKNOWN,
        LicenseStatement,
        license_from_url,
        normalize_license,
        publisher_statement,
        spdx_url,
    )
    from zoo.weights.checkpoints import load_state_dict, map_state_dict, save_safetensors
    from zoo.weights.download import is_offline, sha256_file
    from zoo.weights.local import LocalModel, local_model, local_models
    from zoo.weights.pull import hf_cache_dir, hf_endpoint, pull_hub, pull_url

__version__ = VERSION

# name -> (module, attribute): imported on first use
_LAZY: dict[str, tuple[str, str]] = {
    "EXPORT_SIDECAR": ("zoo.deploy.exported", "SIDECAR"),
    "LicenseStatement": ("zoo.licenses.ids", "LicenseStatement"),
    "LocalModel": ("zoo.weights.local", "LocalModel"),
    "ModuleBackbone": ("zoo.catalog.backbone", "ModuleBackbone"),
    "UNKNOWN": ("zoo.licenses.ids", "UNKNOWN"),
    "atomic_write_text": ("zoo.disk.paths", "atomic_write_text"),
    "build_backbone": ("zoo.catalog.build", "build_backbone"),
    "check_partition": ("zoo.catalog.stages", "check_partition"),
    "exact_fp32": ("zoo.contract.precision", "exact_fp32"),
    "group_matcher_stages": ("zoo.catalog.stages", "group_matcher_stages"),
    "hf_cache_dir": ("zoo.weights.pull", "hf_cache_dir"),
    "hf_endpoint": ("zoo.weights.pull", "hf_endpoint"),
    "home": ("zoo.disk.paths", "home"),
    "hscore": ("zoo.choose.transferability", "hscore"),
    "is_offline": ("zoo.weights.download", "is_offline"),
    "knn_accuracy": ("zoo.choose.transferability", "knn_accuracy"),
    "leep": ("zoo.choose.transferability", "leep"),
    "license_from_url": ("zoo.licenses.ids", "license_from_url"),
    "load_image": ("zoo.deploy.images", "load_image"),
    "load_state_dict": ("zoo.weights.checkpoints", "load_state_dict"),
    "local_model": ("zoo.weights.local", "local_model"),
    "local_models": ("zoo.weights.local", "local_models"),
    "logme": ("zoo.choose.transferability", "logme"),
    "map_state_dict": ("zoo.weights.checkpoints", "map_state_dict"),
    "nce": ("zoo.choose.transferability", "nce"),
    "normalize_license": ("zoo.licenses.ids", "normalize_license"),
    "preprocessing_from": ("zoo.deploy.images", "preprocessing_from"),
    "publisher_statement": ("zoo.licenses.ids", "publisher_statement"),
    "pull_hub": ("zoo.weights.pull", "pull_hub"),
    "pull_url": ("zoo.weights.pull", "pull_url"),
    "save_safetensors": ("zoo.weights.checkpoints", "save_safetensors"),
    "sha256_file": ("zoo.weights.download", "sha256_file"),
    "softmax": ("zoo.deploy.predict", "softmax"),
    "spdx_url": ("zoo.licenses.ids", "spdx_url"),
    "stages_from_assignment": ("zoo.catalog.stages", "stages_from_assignment"),
    "subdir": ("zoo.disk.paths", "subdir"),
    "timm_style_backbone": ("zoo.catalog.stages", "timm_style_backbone"),
}

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
    "DataSource",
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
    "NameGrammar",
    "NotCachedError",
    "NotFoundError",
    "OfflineError",
    "Phase",
    "PluginError",
    "Progress",
    "Provider",
    "PulledWeights",
    "Ref",
    "SecurityError",
    "SourceImage",
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
    "exact_fp32",
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


# Names the public face gave up, with where they went and since which plugin API. For one
# release they still resolve (with a DeprecationWarning) when their distribution is
# installed; docs/plugins.md ("Deprecated names").
_MOVED: dict[str, tuple[str, str, str, int]] = {
    # name: (distribution, module, attribute, the PLUGIN_API that removed it)
    "OnnxModel": ("zoo-onnx", "zoo_onnx", "OnnxModel", 3),
    "export_onnx": ("zoo-onnx", "zoo_onnx", "export_onnx", 3),
}


def _moved(name: str) -> Any:
    import importlib.util
    import warnings

    dist, module, attribute, api = _MOVED[name]
    if importlib.util.find_spec(module) is None:
        raise AttributeError(
            f"zoo.{name} moved to the {dist} distribution (zoo plugin API {api}): install "
            f"it (python -m pip install {dist}; in a zoo checkout: -e plugins/{dist}) and "
            f"use {module}.{attribute}"
        )
    warnings.warn(
        f"zoo.{name} moved to the {dist} distribution (zoo plugin API {api}): use "
        f"{module}.{attribute}; zoo.{name} goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(module), attribute)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return _moved(name)  # not kept: every access warns
    if name not in _LAZY:
        raise AttributeError(f"module 'zoo' has no attribute '{name}'")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _has_registered_model(name: str) -> bool:
    from zoo.registry import has_model  # zoo.registry imports no mlflow until it is asked

    return has_model(name)


# The catalogue resolves a bare NAME to ``models:/NAME/latest`` when the registry has it;
# the registry sits above the catalogue, so the check is handed over here, at the top of
# the import graph, instead of imported by the catalogue.
answer_registered_names(_has_registered_model)
