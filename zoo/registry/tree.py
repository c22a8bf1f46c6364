"""Lineage trees: from a root base model down to every derivative and export."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.errors import NotFoundError
from zoo.registry.read import list_versions
from zoo.registry.records import TAG, RegisteredVersion

__all__ = ["LineageNode", "lineage_trees"]


@dataclass
class LineageNode:
    reference: str  # a provider/local reference (root) or models:/NAME/N
    license: str
    version: RegisteredVersion | None = None  # None for the root base
    children: list[LineageNode] = field(default_factory=list)

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
        out["children"] = [c.to_dict() for c in self.children]
        return out

    def walk(self) -> list[LineageNode]:
        out = [self]
        for c in self.children:
            out.extend(c.walk())
        return out


def _parent_key(v: RegisteredVersion) -> str | None:
    if v.relation == "export":
        return v.tags.get(TAG.DERIVED_FROM) or v.parent
    return v.parent


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
        key = _parent_key(v)
        if key:
            by_parent.setdefault(key, []).append(v)

    def build(node: LineageNode, seen: set[str]) -> LineageNode:
        for child in sorted(by_parent.get(node.reference, []), key=lambda v: (v.name, v.version)):
            if child.model_uri in seen:
                continue
            seen.add(child.model_uri)
            node.children.append(build(LineageNode(child.model_uri, child.license, child), seen))
        return node

    roots: list[LineageNode] = []
    for base in sorted({v.base or v.model_uri for v in mine}):
        base_license = "unknown"
        for v in everything:
            if v.base == base:
                base_license = str((v.lineage.get("base") or {}).get("license") or "unknown")
                break
        roots.append(build(LineageNode(base, base_license), set()))
    return roots
