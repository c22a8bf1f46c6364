"""The lineage record of a derivative: where it comes from, how it was made, its licence
(its Markdown description: :mod:`zoo.registry.describe`, re-exported here).

A parent is a provider reference pinned to a revision and weights SHA-256
(``timm:arch.tag@rev``), ``local:NAME`` with its SHA-256, or another registered version
(``models:/NAME/N``). The base model is the root of that chain, found by walking parents.
The record is plain JSON: it goes into the ``zoo.lineage`` tag and ``lineage.json``.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from zoo.contract.errors import IntegrityError, NotFoundError
from zoo.contract.refs import parse_ref
from zoo.licenses.compat import Ancestor
from zoo.licenses.ids import UNKNOWN, normalize_license
from zoo.registry.describe import describe_markdown, version_link
from zoo.registry.records import RegisteredVersion, parents_of

__all__ = [
    "LINEAGE_FORMAT",
    "ParentInfo",
    "Pin",
    "build_record",
    "describe_markdown",
    "library_versions",
    "license_chain",
    "merged_ancestors",
    "parents_of",
    "resolve_parent",
    "resolve_parents",
    "strategy_plugin_of",
    "version_link",
]

LINEAGE_FORMAT = 1


@dataclass(frozen=True)
class ParentInfo:
    """A parent resolved and pinned, with the chain up to the root."""

    reference: str  # pinned: models:/NAME/N, timm:arch.tag@rev, local:NAME
    kind: str  # "registered", "local" or "provider"
    sha256: str | None
    license: str
    base: str  # root of the chain (a provider or local reference)
    base_sha256: str | None
    base_license: str
    chain: tuple[str, ...]  # root first, parent last
    # every ancestor's licence and override, root first, parent last (the licence decision)
    licenses: tuple[Ancestor, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "kind": self.kind,
            "sha256": self.sha256,
            "license": self.license,
        }


@dataclass(frozen=True)
class Pin:
    """A parent as the trainer knows it: reference, weights SHA-256 and licence (either may
    be unknown: :func:`resolve_parent` fills them from the registry or catalogue)."""

    reference: str
    sha256: str | None = None
    license: str | None = None


def resolve_parent(
    parent: str,
    *,
    parent_sha256: str | None,
    parent_license: str | None,
    get_version: Callable[[str], RegisteredVersion],
) -> ParentInfo:
    """Pin ``parent`` and find the root of its chain.

    A registered parent is read from the registry (``latest`` and aliases become a
    number); its licence and weights hash come from there, and a ``parent_sha256`` that
    disagrees is an integrity error. A provider parent's licence comes from the argument
    or, failing that, from the catalogue; it is ``unknown`` when neither knows.
    """
    ref = parse_ref(parent)
    if ref.scheme == "bare":
        from zoo.catalog.index import resolve

        ref = resolve(ref)
    if ref.is_registered:
        pv = get_version(str(ref))
        own_sha = pv.tags.get("zoo.weights_sha256") or None
        if parent_sha256 and own_sha and parent_sha256 != own_sha:
            raise IntegrityError(
                f"parent {pv.model_uri} has weights sha256 {own_sha}, not {parent_sha256}: "
                "register against the version the model was trained from"
            )
        lineage = pv.lineage
        base = lineage.get("base") or {}
        chain = (*tuple(lineage.get("chain") or ()), pv.model_uri)
        return ParentInfo(
            licenses=license_chain(pv, get_version=get_version),
            reference=pv.model_uri,
            kind="registered",
            sha256=own_sha or parent_sha256,
            license=pv.license,
            base=str(base.get("reference") or pv.base or pv.model_uri),
            base_sha256=base.get("sha256"),
            base_license=str(base.get("license") or pv.license),
            chain=chain,
        )
    license_id = normalize_license(parent_license) if parent_license else _catalog_license(str(ref))
    kind = "local" if ref.scheme == "local" else "provider"
    from zoo.registry.upstream import upstream_lineage

    up = upstream_lineage(str(ref))  # a repo `zoo registry push` wrote: its base is ours
    if up is not None:
        return ParentInfo(
            reference=str(ref), kind=kind, sha256=parent_sha256, license=license_id,
            base=up.base, base_sha256=up.base_sha256, base_license=up.base_license,
            chain=(*up.chain, str(ref)), licenses=(*up.ancestors, Ancestor(str(ref), license_id)),
        )  # fmt: skip
    return ParentInfo(
        reference=str(ref),
        kind=kind,
        sha256=parent_sha256,
        license=license_id,
        base=str(ref),
        base_sha256=parent_sha256,
        base_license=license_id,
        chain=(str(ref),),
        licenses=(Ancestor(str(ref), license_id),),
    )


def resolve_parents(
    pins: Sequence[Pin], *, get_version: Callable[[str], RegisteredVersion]
) -> list[ParentInfo]:
    """:func:`resolve_parent` for each parent, in order."""
    return [
        resolve_parent(
            p.reference, parent_sha256=p.sha256, parent_license=p.license, get_version=get_version
        )
        for p in pins
    ]


def license_chain(
    version: RegisteredVersion, *, get_version: Callable[[str], RegisteredVersion] | None = None
) -> tuple[Ancestor, ...]:
    """Every model from the root down to ``version`` (included), with its licence and the
    override it was registered with: what :func:`zoo.licenses.compat.decide_license` checks a
    derivative of ``version`` against.

    Versions registered since zoo records it carry the list in their lineage
    (``license.ancestors``); older ones are walked through their ``chain`` instead.
    """
    lineage = version.lineage
    lic = lineage.get("license") or {}
    recorded = lic.get("ancestors")
    if isinstance(recorded, list):
        above = [Ancestor.from_dict(a) for a in recorded if isinstance(a, Mapping)]
    else:  # a store written before ancestors were recorded
        if get_version is None:
            from zoo.registry.read import get_version as read_version

            get_version = read_version
        base = lineage.get("base") or {}
        above = []
        for ref in lineage.get("chain") or ():
            ref = str(ref)
            if ref.startswith("models:/"):
                try:
                    v = get_version(ref)
                except NotFoundError:
                    continue  # deleted with --cascade's blessing: nothing left to check
                above.append(Ancestor(ref, v.license, v.tags.get("zoo.license_override")))
            else:
                root_license = base.get("license") if ref == base.get("reference") else None
                above.append(Ancestor(ref, normalize_license(root_license or lic.get("parent"))))
    own = Ancestor(version.model_uri, version.license, lic.get("override") or None)
    return (*above, own)


def _catalog_license(reference: str) -> str:
    """The catalogue's licence for a provider reference; ``unknown`` when it cannot say."""
    try:
        from zoo.catalog.index import describe

        return normalize_license(describe(reference).license)
    except Exception:
        return UNKNOWN


def strategy_plugin_of(strategy: str, given: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"plugin", "distribution", "version"}`` of the plugin that provides ``strategy``."""
    if isinstance(given, Mapping):
        return {k: given.get(k) for k in ("plugin", "distribution", "version")}
    if isinstance(given, str) and given:
        dist, _, version = given.partition("==")
        return {"plugin": None, "distribution": dist, "version": version or None}
    try:
        from zoo.contract.plugins import get_plugin_manager

        pm = get_plugin_manager()
        pm.strategies()
        owner = pm.owner("strategy", strategy)
        info = pm.plugins.get(owner) if owner else None
    except Exception:
        owner, info = None, None
    if info is None:
        return {"plugin": owner, "distribution": None, "version": None}
    return {"plugin": owner, "distribution": info.distribution, "version": info.version}


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("transfer-zoo", "torch", "torchvision", "timm", "mlflow", "safetensors", "onnx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["zoo"] = out.pop("transfer-zoo")
    return out


def merged_ancestors(parents: Sequence[ParentInfo]) -> tuple[Ancestor, ...]:
    """Every ancestor of every parent, once each, roots first: the DAG the licence of a
    derivative of several parents must be compatible with."""
    seen: dict[str, Ancestor] = {}
    for p in parents:
        for a in p.licenses:
            seen.setdefault(a.reference, a)
    return tuple(seen.values())


def build_record(
    *,
    name: str,
    relation: str,
    parents: Sequence[ParentInfo],
    license_id: str,
    license_inherited: bool,
    license_override: str | None,
    strategy: str | None,
    strategy_settings: Mapping[str, Any] | None,
    strategy_plugin: Mapping[str, Any] | None,
    dataset: Mapping[str, Any] | None,
    metrics: Mapping[str, float] | None,
    preprocessing: Mapping[str, Any] | None,
    class_names: list[str] | tuple[str, ...] | None,
    weights: Mapping[str, Any] | None,
    fmt: str,
    architecture: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record; ``parents`` (at least one) in order. With one parent, ``base`` and
    ``chain`` are its; with several, ``base`` joins their bases and ``chain`` lists every
    ancestor once (roots first), while ``parents`` keeps each one pinned."""
    parent = parents[0]
    several = len(parents) > 1
    if several:
        from zoo.contract.refs import JOINER

        bases = list(dict.fromkeys(p.base for p in parents))
        base = {"reference": JOINER.join(bases), "sha256": None, "license": None}
        chain = list(dict.fromkeys(ref for p in parents for ref in p.chain))
        ancestors = merged_ancestors(parents)
    else:
        base = {
            "reference": parent.base,
            "sha256": parent.base_sha256,
            "license": parent.base_license,
        }
        chain = list(parent.chain)
        ancestors = parent.licenses
    record: dict[str, Any] = {
        "format": LINEAGE_FORMAT,
        "name": name,
        "relation": relation,
        "parent": parent.to_dict(),  # the first parent: what readers of one parent see
        "parents": [p.to_dict() for p in parents],
        "base": base,
        "chain": chain,
        "strategy": {
            "name": strategy,
            "settings": dict(strategy_settings or {}),
            "plugin": dict(strategy_plugin or {}),
        },
        "dataset": dict(dataset or {}),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "license": {
            "id": license_id,
            "parent": parent.license if not several else None,
            "parents": [p.license for p in parents],
            "inherited": license_inherited,
            "override": license_override,
            "ancestors": [a.to_dict() for a in ancestors],
        },
        "preprocessing": dict(preprocessing or {}),
        "class_names": list(class_names or ()),
        "num_classes": len(class_names) if class_names else None,
        "weights": dict(weights or {}),
        "model_format": fmt,
        "versions": library_versions(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if architecture:
        record["architecture"] = dict(architecture)
    return record
