"""Lineage trees: from a root base model down to every derivative and export."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from zoo.contract.errors import NotFoundError
from zoo.contract.refs import JOINER
from zoo.registry.read import list_versions
from zoo.registry.records import TAG, RegisteredVersion, parents_of

__all__ = ["LineageNode", "lineage_trees"]


@dataclass
class LineageNode:
    reference: str  # a provider/local reference (root) or models:/NAME/N
    license: str
    version: RegisteredVersion | None = None  # None for the root base
    children: list[LineageNode] = field(default_factory=list)
    # a version of several parents is listed under each; here, the parents it is not under
    also_under: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reference": self.reference, "license": self.license}
        if self.version is not None:
            v = self.version
            out.update(
                relation=v.relation,
                strategy=v.tags.get(TAG.STRATEGY),
                format=v.tags.get(TAG.FORMAT),
                aliases=list(v.aliases),
                license_override=v.tags.get(TAG.LICENSE_OVERRIDE),
            )
        if self.also_under:
            out["also_under"] = list(self.also_under)
        out["children"] = [c.to_dict() for c in self.children]
        return out

    def walk(self) -> list[LineageNode]:
        out = [self]
        for c in self.children:
            out.extend(c.walk())
        return out


def _parent_keys(v: RegisteredVersion) -> list[str]:
    """Every parent of ``v`` (several for a multi-backbone probe; the tag joins them)."""
    if v.relation == "export":
        key = v.tags.get(TAG.DERIVED_FROM) or v.parent
        return [key] if key else []
    return v.parent.split(JOINER) if v.parent else []


def _roots(v: RegisteredVersion) -> list[str]:
    return v.base.split(JOINER) if v.base else [v.model_uri]


def _root_license(root: str, everything: list[RegisteredVersion]) -> str:
    for v in everything:
        for p in parents_of(v.lineage):
            if p.get("reference") == root and p.get("license"):
                return str(p["license"])
        base = v.lineage.get("base") or {}
        if v.base == root and base.get("license"):
            return str(base["license"])
    return "unknown"


def _pushed_links(everything: list[RegisteredVersion]) -> dict[str, dict[str, str]]:
    """Links through references that are no version here: a fine-tune of a repo `zoo
    registry push` wrote records its chain through it (root -> hf:ORG/REPO@REV), so the
    repo is a node between the root and the fine-tune. above -> {reference: licence}."""
    links: dict[str, dict[str, str]] = {}
    for v in everything:
        chain = [str(c) for c in v.lineage.get("chain") or ()]
        licences = {
            a.get("reference"): a.get("license")
            for a in (v.lineage.get("license") or {}).get("ancestors") or ()
            if isinstance(a, dict)
        }
        for above, below in pairwise(chain):
            if not below.startswith("models:/"):
                links.setdefault(above, {})[below] = str(licences.get(below) or "unknown")
    return links


def lineage_trees(name: str) -> list[LineageNode]:
    """One tree per root base of ``name``'s versions, with every descendant of that root
    (other registered models fine-tuned from the same chain included)."""
    everything = list_versions()
    mine = [v for v in everything if v.name == name]
    if not mine:
        raise NotFoundError(
            f"no registered model named '{name}': see `zoo registry list` for the names"
        )
    by_parent: dict[str, list[RegisteredVersion]] = {}
    for v in everything:
        for key in _parent_keys(v):
            by_parent.setdefault(key, []).append(v)

    links = _pushed_links(everything)

    def build(node: LineageNode, seen: set[str]) -> LineageNode:
        for child in sorted(by_parent.get(node.reference, []), key=lambda v: (v.name, v.version)):
            if child.model_uri in seen:
                continue
            seen.add(child.model_uri)
            others = [p for p in _parent_keys(child) if p != node.reference]
            item = LineageNode(child.model_uri, child.license, child, also_under=others)
            node.children.append(build(item, seen))
        for ref, license_id in sorted(links.get(node.reference, {}).items()):
            if ref not in seen:
                seen.add(ref)
                node.children.append(build(LineageNode(ref, license_id), seen))
        return node

    roots: list[LineageNode] = []
    for base in sorted({root for v in mine for root in _roots(v)}):
        roots.append(build(LineageNode(base, _root_license(base, everything)), set()))
    return roots
