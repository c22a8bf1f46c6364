"""zoo's model registry on MLflow: derivatives with their lineage and licence.

Modules, one job each: ``records`` (the version record, tag names), ``lineage`` (parent
resolution, the lineage record), ``describe`` (the Markdown description, children listed as
they register), ``picture`` (the lineage drawn), ``modelcard`` (Hugging Face model card),
``write`` and ``write_export`` (registering a trained model, an export), ``read`` (looking
up, zoo's reload), ``search`` with ``paging`` and ``sqlite_read`` (versions by filter, a page
at a time, asked of the store), ``tree`` (lineage trees), ``maintain`` (aliases, deletes,
the invariant scan), ``copy`` with ``copy_write`` (a version and its ancestors into another store),
``push`` and ``upstream`` (a version onto the Hugging Face Hub; the lineage a pushed repo
carries back), ``store`` with ``store_health`` and ``store_guard`` (the MLflow store),
``server`` and ``supervise`` (the MLflow server zoo starts), ``datasets`` (a run's data as
an MLflow dataset, versions by data set), ``leakage`` (splits against ancestors' images).
Importing this package imports no mlflow or torch; the functions do.
"""

from __future__ import annotations

from zoo.registry.maintain import CheckReport, check, children, delete, plan_delete, set_alias
from zoo.registry.read import get_version, has_model, list_models, list_versions, load_model
from zoo.registry.records import TAG, RegisteredVersion
from zoo.registry.write import register_derivative
from zoo.registry.write_export import register_export

__all__ = [
    "TAG",
    "CheckReport",
    "RegisteredVersion",
    "check",
    "children",
    "delete",
    "get_version",
    "has_model",
    "list_models",
    "list_versions",
    "load_model",
    "plan_delete",
    "register_derivative",
    "register_export",
    "set_alias",
]
