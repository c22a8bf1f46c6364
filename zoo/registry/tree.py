"""Lineage trees: from a root base model down to every derivative and export."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from zoo.contract.errors import NotFoundError
from zoo.contract.refs import JOINER, parse_ref
from zoo.registry.paging import VersionFilter
from zoo.registry.records import TAG, RegisteredVersion, parents_of
from zoo.registry.search import find

__all__ = ["LineageNode", "children_of", "derivative_trees", "lineage_trees", "parent_keys"]


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


def parent_keys(v: RegisteredVersion) -> list[str]:
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
        if len(parents_of(v.lineage)) > 1:  # its chain joins its parents' chains: no path
            continue
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


def children_of(model_uri: str) -> list[RegisteredVersion]:
    """Versions made from ``model_uri`` (fine-tunes, exports, multi-parent versions that
    name it among their parents), by name and number: the store is asked for the
    versions whose parent tags name it, not for every version."""
    asked = find(
        VersionFilter(contains=((TAG.PARENT, model_uri),)),
        VersionFilter(tags=((TAG.DERIVED_FROM, model_uri),)),
    )
    return [v for v in asked if model_uri in parent_keys(v)]


def under_roots(roots: set[str] | list[str]) -> list[RegisteredVersion]:
    """Every version whose chain starts at one of ``roots`` (a version's roots are its
    ``zoo.base``, several joined by commas; a version zoo did not register is its own
    root, and a root is no node's child): what the trees of those roots hold, asked of
    the store by base."""
    if not roots:
        return []
    wanted = set(roots)
    asked = find(*(VersionFilter(contains=((TAG.BASE, r),)) for r in sorted(wanted)))
    return [v for v in asked if wanted & set(_roots(v))]


def _grow(roots: list[str], everything: list[RegisteredVersion]) -> list[LineageNode]:
    by_parent: dict[str, list[RegisteredVersion]] = {}
    for v in everything:
        for key in parent_keys(v):
            by_parent.setdefault(key, []).append(v)

    links = _pushed_links(everything)

    def build(node: LineageNode, seen: set[str]) -> LineageNode:
        for child in sorted(by_parent.get(node.reference, []), key=lambda v: (v.name, v.version)):
            if child.model_uri in seen:
                continue
            seen.add(child.model_uri)
            others = [p for p in parent_keys(child) if p != node.reference]
            item = LineageNode(child.model_uri, child.license, child, also_under=others)
            node.children.append(build(item, seen))
        for ref, license_id in sorted(links.get(node.reference, {}).items()):
            if ref not in seen:
                seen.add(ref)
                node.children.append(build(LineageNode(ref, license_id), seen))
        return node

    return [build(LineageNode(r, _root_license(r, everything)), set()) for r in roots]


def lineage_trees(name: str) -> list[LineageNode]:
    """One tree per root base of ``name``'s versions, with every descendant of that root
    (other registered models fine-tuned from the same chain included)."""
    mine = find(VersionFilter(name=name))
    if not mine:
        raise NotFoundError(
            f"no registered model named '{name}': see `zoo registry list` for the names"
        )
    roots = sorted({root for v in mine for root in _roots(v)})
    return _grow(roots, under_roots(roots))


def derivative_trees(reference: str) -> list[LineageNode]:
    """Every registered derivative of the catalogue reference ``reference`` (any model
    name), one tree per pinned revision of it that versions were made from; ``[]`` when
    nothing registered derives from it. A reference without ``@REV`` matches every
    revision; one with a revision matches that one."""
    wanted = parse_ref(reference)
    # the versions that name a parent like it (the store's filter; matched exactly below)
    named = find(VersionFilter(contains=((TAG.PARENT, wanted.name),)))
    keys = {key for v in named for key in parent_keys(v) if not key.startswith("models:/")}

    def matches(key: str) -> bool:
        try:
            have = parse_ref(key)
        except Exception:  # a parent recorded in a form this zoo no longer parses
            return key == reference
        if wanted.revision is not None:
            return str(have) == str(wanted)
        return (have.scheme, have.name) == (wanted.scheme, wanted.name)

    roots = sorted(k for k in keys if matches(k))
    # a derivative's descendants share its roots (zoo.base): a pushed repo's fine-tunes
    # are rooted at the repo's own base, not at the repo
    bases = {r for v in named for r in _roots(v) if set(parent_keys(v)) & set(roots)}
    return _grow(roots, under_roots(bases))
