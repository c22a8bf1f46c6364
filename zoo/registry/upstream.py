"""The lineage a pulled Hub repo carries upstream: ``lineage.json``, as `zoo registry
push` writes it (:mod:`zoo.registry.push`). A fine-tune of ``hf:ORG/REPO`` that zoo pushed
then records the original base and the chain through the repo, not the repo as a root."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.contract.refs import parse_ref
from zoo.licenses.compat import Ancestor

__all__ = ["LINEAGE_FILE", "Upstream", "upstream_lineage"]

LINEAGE_FILE = "lineage.json"


class Upstream:
    """What a pushed repo's record says above it: the base, the chain (references that
    are not versions of some store, root first) and every ancestor's licence."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        base = record.get("base") or {}
        self.base = str(base.get("reference") or "")
        self.base_sha256 = base.get("sha256")
        self.base_license = str(base.get("license") or "unknown")
        # versions of the store it was pushed from mean nothing here: the repo stands for them
        self.chain = tuple(
            str(c) for c in record.get("chain") or () if not str(c).startswith("models:/")
        )
        lic = record.get("license") or {}
        self.ancestors = tuple(
            Ancestor.from_dict(a) for a in lic.get("ancestors") or () if isinstance(a, Mapping)
        )
        self.pushed = dict(record.get("pushed") or {})


def upstream_lineage(reference: str) -> Upstream | None:
    """The pulled repo's upstream lineage, from the local cache record of ``reference``
    (pinned), or None (not pulled, no ``lineage.json``, or not one `zoo registry push`
    wrote: it has ``pushed``)."""
    try:
        ref = parse_ref(reference)
    except Exception:
        return None
    if ref.is_registered or ref.scheme in ("bare", "local"):
        return None
    from zoo.weights.cache import find_record

    rec = find_record(ref.scheme, ref.name, ref.revision)
    if rec is None:
        return None
    path = next((Path(f.path) for f in rec.files if f.name == LINEAGE_FILE), None)
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or "pushed" not in record:  # not one zoo pushed
        return None
    if not (record.get("base") or {}).get("reference"):
        return None
    return Upstream(record)
