"""What `zoo cache` does with the records of pulled models (:mod:`zoo.weights.cache`):
``verify`` re-hashes files against them; ``remove`` frees one revision's files (for the
Hugging Face cache through huggingface_hub's own cache API, so its refs and snapshots stay
consistent) and drops the record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo.contract.errors import NotFoundError, UsageError
from zoo.contract.refs import Ref
from zoo.contract.types import PulledWeights
from zoo.weights.cache import (
    _name_of,
    _record_file,
    _record_path,
    _remember_stat,
    file_stat,
    list_records,
    match_records,
)
from zoo.weights.download import sha256_file

__all__ = ["CacheEntry", "remove", "verify"]


@dataclass(frozen=True)
class CacheEntry:
    """One file as `zoo cache verify` found it."""

    reference: str
    name: str
    path: str
    ok: bool
    problem: str | None = None


def verify(records: list[PulledWeights]) -> list[CacheEntry]:
    """Re-hash every file of the records against the SHA-256 recorded at pull time."""
    out = []
    for rec in records:
        for f in rec.files:
            path = Path(f.path)
            if not path.is_file():
                out.append(CacheEntry(rec.reference, f.name, f.path, False, "missing"))
                continue
            before = file_stat(path)
            digest = sha256_file(path)
            if digest != f.sha256:
                out.append(
                    CacheEntry(
                        rec.reference,
                        f.name,
                        f.path,
                        False,
                        f"SHA-256 {digest} does not match the recorded {f.sha256}",
                    )
                )
            else:
                out.append(CacheEntry(rec.reference, f.name, f.path, True))
                if before is not None:
                    _remember_stat(_record_file(rec), f.name, f.sha256, before)
    return out


def remove(ref: Ref | str) -> list[PulledWeights]:
    """Delete one revision's files and record; returns what was removed."""
    records = match_records(ref)
    if not records:
        raise NotFoundError(f"nothing cached for '{ref}': see `zoo cache ls`")
    if len(records) > 1:
        listed = ", ".join(sorted(r.reference for r in records))
        raise UsageError(
            f"'{ref}' matches {len(records)} cached models ({listed}): give one of them"
        )
    rec = records[0]
    others = [r for r in list_records() if r.reference != rec.reference]
    if rec.extra.get("storage") == "hf":
        _remove_hf_revision(rec, others)
    else:
        shared = {f.path for r in others for f in r.files}
        for f in rec.files:
            if f.path not in shared:
                Path(f.path).unlink(missing_ok=True)
    _record_path(rec.provider, _name_of(rec), rec.revision).unlink(missing_ok=True)
    return [rec]


def _remove_hf_revision(rec: PulledWeights, others: list[PulledWeights]) -> None:
    """Delete the revision through huggingface_hub's cache API, unless another record
    (the same repo pulled as timm: and as hf:) still uses it."""
    repo_id, commit = rec.extra.get("repo_id"), rec.revision
    if any(o.extra.get("repo_id") == repo_id and o.revision == commit for o in others):
        return
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_dir = rec.extra.get("cache_dir")
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return
    for repo in info.repos:
        if repo.repo_id == repo_id and repo.repo_type == "model":
            if any(r.commit_hash == commit for r in repo.revisions):
                info.delete_revisions(str(commit)).execute()
            return
