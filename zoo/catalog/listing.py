"""``zoo list``: every provider's entries that match a glob, a licence, pretrained weights.

Each provider's cached index (``index.py``) is matched on its references before a record
is parsed, then filtered on the parsed records before any entry is built (a listing reads
thousands and shows a few); a stale index is rebuilt, all stale
ones under one progress line; a provider with a remote ``search`` (the Hub) is asked only
when named, and falls back to what is cached locally when offline.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from zoo.catalog.index import build_indexes, cached_index, index, providers
from zoo.contract.errors import OfflineError, UsageError
from zoo.contract.types import BackboneInfo

__all__ = ["DEFAULT_REMOTE_TIMEOUT", "Listing", "list_models"]

DEFAULT_REMOTE_TIMEOUT = 10.0


@dataclass
class Listing:
    entries: list[BackboneInfo]
    notes: list[str] = field(default_factory=list)  # e.g. "offline: listing the local cache"


def _matches(entry: BackboneInfo, pattern: str) -> bool:
    return _name_matches(entry.reference, pattern)


def _name_matches(reference: str, pattern: str) -> bool:
    """The glob matches the reference or its name (case-insensitive)."""
    pat, ref = pattern.lower(), reference.lower()
    return fnmatch.fnmatchcase(ref.split(":", 1)[-1], pat) or fnmatch.fnmatchcase(ref, pat)


def _record_filter(pretrained: bool, license: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """The listing's other filters, on an index's stored records (``BackboneInfo.to_dict``)."""

    def keep(record: Mapping[str, Any]) -> bool:
        if pretrained and not record.get("pretrained", True):
            return False
        return not license or record.get("license") == license

    return keep


def list_models(
    pattern: str | None = None,
    *,
    provider: str | None = None,
    pretrained: bool = False,
    license: str | None = None,
    timeout: float = DEFAULT_REMOTE_TIMEOUT,
) -> Listing:
    """Every matching entry of every provider (or of one).

    Providers with a remote ``search`` (the Hub) are contacted only when named with
    ``provider``; offline, they fall back to what is cached locally and say so.
    """
    found = providers()
    if provider is not None and provider not in found:
        names = ", ".join(sorted(found)) or "none"
        raise UsageError(f"no provider named '{provider}' (installed: {names})")
    selected = [found[provider]] if provider else [found[n] for n in sorted(found)]
    if license:
        from zoo.licenses.ids import normalize_license

        license = normalize_license(license)  # "MIT License", "MIT" -> mit
    listing = Listing(entries=[])
    searched = {
        p.name for p in selected if provider is not None and callable(getattr(p, "search", None))
    }
    # every stale index is built in one go, under one progress line
    keep = _record_filter(pretrained, license)
    named = partial(_name_matches, pattern=pattern) if pattern else None
    indexed = {
        p.name: cached_index(p, keep, named=named)
        for p in selected
        if p.name not in searched and getattr(p, "cache_index", True)
    }
    stale = [p for p in selected if p.name in indexed and indexed[p.name] is None]
    if stale:
        indexed.update(build_indexes(stale))
    for prov in selected:
        search = getattr(prov, "search", None)
        if prov.name in searched and callable(search):
            try:
                entries = list(search(pattern, timeout=timeout))
            except OfflineError as exc:
                listing.notes.append(f"{exc}; listing the local cache only")
                entries = index(prov)
        else:
            known = indexed.get(prov.name)
            entries = known if known is not None else index(prov)
        for entry in entries:
            if pattern and not _matches(entry, pattern):
                continue
            if pretrained and not entry.pretrained:
                continue
            if license and entry.license != license:
                continue
            listing.entries.append(entry)
    return listing
