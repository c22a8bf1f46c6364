"""The record of one registered version, and the MLflow tag names zoo writes.

Every tag zoo sets on a model version starts with ``zoo.``; the whole lineage record is
also kept as JSON in the ``zoo.lineage`` tag (MLflow allows 100,000 characters there), so
reading a version never downloads artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TAG", "RegisteredVersion", "from_model_version", "parents_of"]


class TAG:
    """Tag names on model versions (filterable: ``tags.`zoo.license` = 'mit'``)."""

    LINEAGE = "zoo.lineage"  # the whole lineage record as JSON
    PARENT = "zoo.parent"  # pinned parent reference
    PARENT_SHA256 = "zoo.parent_sha256"
    BASE = "zoo.base"  # root of the chain: a provider or local reference
    RELATION = "zoo.relation"  # "finetune" or "export"
    DERIVED_FROM = "zoo.derived_from"  # exports: models:/NAME/N of the source version
    STRATEGY = "zoo.strategy"
    STRATEGY_PLUGIN = "zoo.strategy_plugin"  # "distribution==version"
    EXPORTER_PLUGIN = "zoo.exporter_plugin"  # exports: "distribution==version"
    DATASET_DIGEST = "zoo.dataset_digest"
    LICENSE = "zoo.license"
    LICENSE_OVERRIDE = "zoo.license_override"  # the reason, when an override was used
    FORMAT = "zoo.format"  # "pytorch", "onnx", ...
    WEIGHTS_SHA256 = "zoo.weights_sha256"  # of the version's own weights file
    NUM_CLASSES = "zoo.num_classes"
    ZOO_VERSION = "zoo.zoo_version"
    MODEL_ID = "zoo.model_id"  # MLflow logged-model id holding the artifacts
    RECIPE_KEY = "zoo.recipe_key"  # fine-tunes: the recipe's key (its checkpoint folder)
    # precision the version's metrics were computed in: "fp32" (fine-tunes since the
    # evaluation record), an export's own precision; absent on older versions
    EVAL_PRECISION = "zoo.eval_precision"
    # `zoo registry copy`: JSON {"store", "version", "sha256"} of the version copied
    # (on the copy's version and on its run); a re-run finds the copy by it
    COPIED_FROM = "zoo.copied_from"

    # On runs: "pending NAME" while registering, "NAME/N" once the version exists.
    RUN_REGISTRATION = "zoo.registration"


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered model version as zoo sees it."""

    name: str
    version: int
    run_id: str | None
    model_uri: str  # "models:/NAME/N"
    license: str
    lineage: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    class_names: tuple[str, ...]
    tags: Mapping[str, str]
    # extras (not in the interface other helpers write against)
    source: str = ""  # where MLflow keeps the artifacts
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    created_at: int | None = None  # ms since the epoch

    @property
    def parent(self) -> str | None:
        return self.tags.get(TAG.PARENT)

    @property
    def base(self) -> str | None:
        return self.tags.get(TAG.BASE)

    @property
    def relation(self) -> str:
        return self.tags.get(TAG.RELATION, "finetune")

    @property
    def license_warning(self) -> str | None:
        """A line to show wherever this version is shown, or None."""
        if self.license == "unknown":
            return (
                f"{self.model_uri} has licence 'unknown': check the base model's terms "
                "before shipping it"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_uri": self.model_uri,
            "run_id": self.run_id,
            "license": self.license,
            "parent": self.parent,
            "base": self.base,
            "relation": self.relation,
            "aliases": list(self.aliases),
            "lineage": dict(self.lineage),
            "preprocessing": dict(self.preprocessing),
            "class_names": list(self.class_names),
            "tags": dict(self.tags),
            "source": self.source,
            "created_at": self.created_at,
        }


def from_model_version(mv: Any) -> RegisteredVersion:
    """Build the record from an MLflow ``ModelVersion``."""
    tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
    try:
        lineage = json.loads(tags.get(TAG.LINEAGE, "{}"))
    except ValueError:
        lineage = {}
    if not isinstance(lineage, dict):
        lineage = {}
    return RegisteredVersion(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id or None,
        model_uri=f"models:/{mv.name}/{mv.version}",
        license=tags.get(TAG.LICENSE, "unknown"),
        lineage=lineage,
        preprocessing=lineage.get("preprocessing") or {},
        class_names=tuple(lineage.get("class_names") or ()),
        tags={k: v for k, v in tags.items() if k != TAG.LINEAGE},
        source=mv.source or "",
        description=mv.description or "",
        aliases=tuple(getattr(mv, "aliases", None) or ()),
        created_at=getattr(mv, "creation_timestamp", None),
    )


def parents_of(lineage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pinned parents of a lineage record: ``parents``, or the one ``parent`` of a
    record written before versions could have several."""
    listed = lineage.get("parents")
    if isinstance(listed, list) and listed:
        return [dict(p) for p in listed if isinstance(p, Mapping)]
    one = lineage.get("parent")
    return [dict(one)] if isinstance(one, Mapping) and one else []
