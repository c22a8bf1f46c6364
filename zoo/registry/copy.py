"""`zoo registry copy`: a version, and every ancestor it needs, into another store.

The source is zoo's store (``ZOO_HOME``'s, ``--tracking-uri``, ``MLFLOW_TRACKING_URI``)
and is only read: no write API of MLflow is called on it. The destination is another
SQLite store (``sqlite:///PATH``, created as zoo creates its own) or an MLflow server.

What is copied, ancestors first (every parent's chain; a multi-backbone version has
several parents): the version's files (weights byte for byte), its tags, the run that
made it (params, every metric's history, tags, dataset inputs, artifacts) and the
registered model's tags. Lineage is re-pointed: every ``models:/NAME/N`` of a copied
version, in the tags and in the ``zoo.lineage`` record (``lineage.json`` and the model
card follow it), becomes the destination's number; a parent's pinned SHA-256 stays, as
the bytes are the same. Exports of a copied version come along with ``with_exports``.
Aliases are not copied (the destination's own).

Each copy is tagged ``zoo.copied_from`` (source store, version, weights SHA-256); a
re-run finds it there and copies nothing. Per version the order is registration's
(:mod:`zoo.registry.write`): a run tagged ``pending NAME``, files uploaded and checked,
then the version in one call with all its tags and description. An interrupted copy
leaves at most a pending run (``zoo registry check`` lists it); the re-run removes it
and completes the copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse, urlunparse

from zoo.contract.errors import LicenseError, NotFoundError, UsageError
from zoo.contract.refs import JOINER, parse_ref
from zoo.registry import store
from zoo.registry.copy_write import copied_from, copy_one, repoint, weights_sha
from zoo.registry.read import get_version, list_versions
from zoo.registry.records import TAG, RegisteredVersion, from_model_version, parents_of

__all__ = ["Copied", "CopyReport", "copy_version", "plan", "repoint", "same_store"]


@dataclass(frozen=True)
class Copied:
    """One version of the copy: where it came from, where it is now."""

    source: str  # models:/NAME/N in the source store
    destination: str  # models:/NAME/M in the destination
    sha256: str | None  # of the weights (the same bytes in both stores)
    copied: bool  # False: a copy was there already (found by zoo.copied_from)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "sha256": self.sha256,
            "copied": self.copied,
        }


@dataclass
class CopyReport:
    source_store: str
    destination_store: str
    versions: list[Copied] = field(default_factory=list)  # ancestors first, the asked last

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_store": self.source_store,
            "destination_store": self.destination_store,
            "versions": [c.to_dict() for c in self.versions],
        }


def shown_uri(uri: str) -> str:
    """A store URI without credentials (what the copied_from tag records)."""
    parsed = urlparse(uri)
    if parsed.scheme in {"http", "https"} and "@" in parsed.netloc:
        parsed = parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[1])
        return urlunparse(parsed)
    return uri


def same_store(a: str, b: str) -> bool:
    """Do two tracking URIs name one store (a database file, or a server)?"""
    da, db = store.sqlite_path(a), store.sqlite_path(b)
    if da is not None or db is not None:
        return da is not None and db is not None and da.resolve() == db.resolve()
    pa, pb = urlparse(shown_uri(a)), urlparse(shown_uri(b))
    return (pa.scheme, pa.netloc.lower(), pa.path.rstrip("/")) == (
        pb.scheme,
        pb.netloc.lower(),
        pb.path.rstrip("/"),
    )


def _refuse_destination(src: str, dst: str) -> None:
    if not dst:
        raise UsageError("--to needs a store: sqlite:///PATH/NAME.db or http(s)://HOST:PORT")
    if same_store(src, dst):
        raise UsageError(
            f"{dst} is the store being copied from: name another store with --to "
            "(the source is ZOO_HOME's store, --tracking-uri or MLFLOW_TRACKING_URI)"
        )
    db = store.sqlite_path(dst)
    if dst.startswith("sqlite:") and db is None:
        raise UsageError(f"'{dst}' names no database file: write sqlite:///PATH/NAME.db")
    if db is not None and not db.parent.is_dir():
        raise UsageError(
            f"the folder of {db} does not exist: create it first, or name another --to store"
        )


def _parent_refs(v: RegisteredVersion) -> list[str]:
    refs = [str(p.get("reference") or "") for p in parents_of(v.lineage)]
    refs += [*(v.tags.get(TAG.PARENT) or "").split(JOINER), v.tags.get(TAG.DERIVED_FROM) or ""]
    return [r for r in dict.fromkeys(refs) if r.startswith("models:/")]


def plan(target: RegisteredVersion, *, with_exports: bool = False) -> list[RegisteredVersion]:
    """``target`` and every registered ancestor, ancestors first (each once); with
    ``with_exports``, then every export of any of them."""
    order: list[RegisteredVersion] = []
    seen: set[str] = set()

    def visit(v: RegisteredVersion) -> None:
        if v.model_uri in seen:
            return
        seen.add(v.model_uri)
        for ref in _parent_refs(v):
            try:
                parent = get_version(ref)
            except NotFoundError:
                raise NotFoundError(
                    f"{v.model_uri} names {ref} as its parent, which is no longer in the "
                    "source store: its lineage cannot be copied whole"
                ) from None
            visit(parent)
        order.append(v)

    visit(target)
    if with_exports:
        copied = {v.model_uri for v in order}
        for v in list_versions():
            if v.relation == "export" and v.tags.get(TAG.DERIVED_FROM) in copied:
                visit(v)
    return order


def identity(src_uri: str, v: RegisteredVersion) -> dict[str, Any]:
    return {"store": shown_uri(src_uri), "version": v.model_uri, "sha256": weights_sha(v)}


def _is_copy_of(tags: Mapping[str, str], ident: Mapping[str, Any]) -> bool:
    """The same version, the same bytes; with no weights hash to compare, the same store
    too (a home moved with `zoo home move`, or a server reached by another address, still
    finds its copies when the hash is known)."""
    have = copied_from(tags)
    if have.get("version") != ident["version"] or have.get("sha256") != ident["sha256"]:
        return False
    return bool(ident["sha256"]) or have.get("store") == ident["store"]


def existing_copy(dmc: Any, v: RegisteredVersion, ident: Mapping[str, Any]) -> str | None:
    """``models:/NAME/M`` of the destination's copy of ``v``, or None."""
    name = v.name.replace("'", "\\'")
    for mv in dmc.search_model_versions(f"name = '{name}'"):
        if _is_copy_of({str(k): str(val) for k, val in (mv.tags or {}).items()}, ident):
            return f"models:/{mv.name}/{mv.version}"
    return None


def destination_version(dmc: Any, ref: str) -> RegisteredVersion:
    """A ``models:/NAME/N`` of the destination, read through its own client."""
    parsed = parse_ref(ref)
    return from_model_version(dmc.get_model_version(parsed.name, str(parsed.version)))


def recheck_license(dmc: Any, record: Mapping[str, Any], uri: str) -> None:
    """The licence decision of registration, run again on the destination's copies of
    the parents: the copy must come to the licence the source recorded."""
    from zoo.licenses.compat import decide_licenses
    from zoo.registry.lineage import Pin, resolve_parents

    lic = record.get("license") or {}
    parents = parents_of(record)
    if not lic.get("id") or not parents:
        return  # not a zoo lineage record: nothing to decide
    pins = [Pin(str(p["reference"]), p.get("sha256"), p.get("license")) for p in parents]
    infos = resolve_parents(pins, get_version=lambda ref: destination_version(dmc, ref))
    declared = None if lic.get("inherited") else lic.get("id")
    try:
        decided, _ = decide_licenses(
            [(p.license, p.licenses) for p in infos], declared, lic.get("override")
        )
    except LicenseError as exc:
        reason = str(exc).split("; pass --license-override", 1)[0]
        raise LicenseError(
            f"{uri} cannot be copied: on the destination, {reason[:1].lower()}{reason[1:]}. "
            "The destination's copies of its parents differ from the source's: correct "
            "them there, or copy to another store"
        ) from None
    if decided != lic["id"]:
        raise LicenseError(
            f"{uri} is licensed {lic['id']}, but its parents' chain on the destination "
            f"decides {decided}: nothing was copied for it"
        )


def copy_version(ref: str, to: str, *, with_exports: bool = False) -> CopyReport:
    """Copy ``ref`` (and, as needed, its ancestors) to the store ``to``; see the module."""
    src_uri = store.tracking_uri()
    dst_uri = to.strip()
    _refuse_destination(src_uri, dst_uri)
    if store.is_embedded(src_uri) and not store.embedded_exists():
        raise NotFoundError(f"no registered version '{ref}': nothing is registered here yet")
    target = get_version(ref)  # unknown: NotFoundError, before the destination is touched
    todo = plan(target, with_exports=with_exports)
    smc = store.client()
    dmc = store.open_other(dst_uri)
    report = CopyReport(shown_uri(src_uri), shown_uri(dst_uri))
    mapping: dict[str, str] = {}
    for v in todo:
        ident = identity(src_uri, v)
        found = existing_copy(dmc, v, ident)
        if found is None:
            recheck_license(dmc, repoint(dict(v.lineage), mapping), v.model_uri)
            found = copy_one(smc, dmc, v, mapping=mapping, ident=ident, dst_uri=dst_uri)
            report.versions.append(Copied(v.model_uri, found, ident["sha256"], True))
        else:
            report.versions.append(Copied(v.model_uri, found, ident["sha256"], False))
        mapping[v.model_uri] = found
    return report
