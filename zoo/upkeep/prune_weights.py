"""Which pulled weights something refers to, for `zoo home prune --unreferenced-weights`.

A pulled model (a record of ``zoo.weights.cache``) is referred to, and kept, when

- a registered version's lineage names it as a parent or base, by SHA-256 of one of its
  files, by its pinned reference, or by a reference without a revision (then every
  pulled revision of that name is kept): the versions of the store zoo uses now
  (``MLFLOW_TRACKING_URI``, or the embedded one);
- a local import was made from one of its files (the same real path, or the SHA-256);
- an unfinished run (``runs/KEY/recipe.yaml`` without ``result.json``) was started
  from it: resuming builds the backbone again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.upkeep.prune_plan import Item, Plan, Skip
from zoo.upkeep.usage import human, registered_version

if TYPE_CHECKING:  # pragma: no cover
    from zoo.contract.types import PulledWeights

__all__ = ["plan_weights"]

_UNKNOWN = {"", "unknown", "None"}


def _lineage_refs() -> tuple[set[str], set[str]]:
    """(SHA-256s, references) that registered versions' lineages name."""
    from zoo.registry import store

    if store.is_embedded() and not store.embedded_exists():
        return set(), set()  # no store yet: nothing registered (and nothing created here)
    from zoo.contract.refs import JOINER
    from zoo.registry import TAG, list_versions

    shas: set[str] = set()
    refs: set[str] = set()
    for v in list_versions():
        lineage = v.lineage or {}
        entries = [*(lineage.get("parents") or []), lineage.get("parent"), lineage.get("base")]
        for entry in entries:
            if isinstance(entry, dict):
                shas.add(str(entry.get("sha256") or ""))
                refs.add(str(entry.get("reference") or ""))
        for tag in (TAG.PARENT, TAG.BASE):
            refs.update(r.strip() for r in (v.tags.get(tag) or "").split(JOINER))
        shas.update(s.strip() for s in (v.tags.get(TAG.PARENT_SHA256) or "").split(JOINER))
    return shas - _UNKNOWN, refs - _UNKNOWN


def _unfinished_refs(root: Path) -> set[str]:
    """The backbones of runs that have not registered yet (what they resume from)."""
    import yaml

    refs: set[str] = set()
    for recipe in sorted((root / "runs").glob("*/recipe.yaml")):
        if registered_version(recipe.parent) is not None:
            continue
        try:
            data = yaml.safe_load(recipe.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        ref = data.get("ref") if isinstance(data, dict) else None
        if isinstance(ref, str):
            refs.update(r.strip() for r in ref.split(","))
    return refs


def _named(records: list[PulledWeights], refs: set[str]) -> set[str]:
    """References of the records that ``refs`` name (a revision narrows to it; a name
    without a provider matches that name under any provider)."""
    from zoo.contract.refs import parse_ref
    from zoo.weights.cache import match_records

    out: set[str] = set()
    for text in refs:
        try:
            ref = parse_ref(text)
        except Exception:
            continue
        if ref.scheme in ("models", "local"):
            continue
        if ref.scheme == "bare":
            for rec in records:
                name = rec.reference.split(":", 1)[1].rsplit("@", 1)[0]
                if name == ref.name or name.startswith(ref.name + "."):
                    out.add(rec.reference)
            continue
        out.update(r.reference for r in match_records(ref))
    return out


def _local_sources() -> tuple[set[str], set[str]]:
    from zoo.weights.local import local_models

    models = local_models()
    return {os.path.realpath(m.source) for m in models}, {m.source_sha256 for m in models}


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size  # a Hub snapshot's link: the blob's size
    except OSError:
        return 0


def _record_files(root: Path) -> dict[str, list[Path]]:
    """reference -> its record file(s) under ``cache/records`` (removed with it)."""
    out: dict[str, list[Path]] = {}
    for path in sorted((root / "cache" / "records").glob("*/*.json")):
        try:
            reference = json.loads(path.read_text(encoding="utf-8"))["reference"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        out.setdefault(str(reference), []).append(path)
    return out


def plan_weights(plan: Plan, unreferenced: bool) -> None:
    """Add the pulled models nothing refers to (``unreferenced``), or a line saying the
    pulled weights are kept."""
    if not (plan.root / "cache" / "records").is_dir():
        return
    from zoo.weights.cache import list_records, match_records

    records = list_records()
    if not records:
        return
    total = sum(f.size for r in records for f in r.files)
    if not unreferenced:
        plan.kept.append(
            f"pulled weights ({len(records)} model{'s' if len(records) > 1 else ''}, "
            f"{human(total)}): --unreferenced-weights also removes those no lineage, local "
            "import or unfinished run refers to"
        )
        return
    shas, refs = _lineage_refs()
    refs |= _unfinished_refs(plan.root)
    named = _named(records, refs)
    local_paths, local_shas = _local_sources()
    record_files = _record_files(plan.root)
    kept = []
    for rec in records:
        files = rec.files
        if (
            rec.reference in named
            or any(f.sha256 in shas or f.sha256 in local_shas for f in files)
            or any(os.path.realpath(f.path) in local_paths for f in files)
        ):
            kept.append(rec.reference)
            continue
        if len(match_records(rec.reference)) != 1:
            plan.skipped.append(
                Skip(rec.reference, "its reference names several cached models: `zoo cache rm`")
            )
            continue
        present = [f.path for f in files if Path(f.path).exists()]
        present += [str(p) for p in record_files.get(rec.reference, [])]
        what = f"{rec.reference} ({rec.license}): no lineage, local import or run refers to it"
        size = sum(_size(p) for p in present)
        plan.items.append(Item("weights", what, present, size, reference=rec.reference))
    if kept:
        plan.kept.append(
            "pulled weights a lineage, local import or unfinished run refers to: " + ", ".join(kept)
        )
