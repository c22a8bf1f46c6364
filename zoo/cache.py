"""The local record of every pulled model, and what `zoo cache` does with it.

Weights themselves live where their source's tooling keeps them: Hub files (timm and hf
references) in the shared Hugging Face cache (``HF_HUB_CACHE``), plain-URL files
(torchvision) under ``$ZOO_HOME/cache/<provider>/``. zoo keeps one JSON record per pulled
revision under ``$ZOO_HOME/cache/records/<provider>/``: reference, resolved revision,
files with SHA-256 and size as verified at pull time, licence, source URL, time.

``verify`` re-hashes files against those records; ``remove`` frees one revision's files
(for the Hugging Face cache through huggingface_hub's own cache API, so its refs and
snapshots stay consistent) and drops the record.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from zoo.download import sha256_file
from zoo.errors import NotFoundError, UsageError
from zoo.home import ReadOnlyHomeError, atomic_write_text, home, subdir
from zoo.refs import Ref, parse_ref
from zoo.types import FileRecord, PulledWeights

__all__ = [
    "RECORD_FORMAT",
    "CacheEntry",
    "find_record",
    "info_extras",
    "list_records",
    "match_records",
    "record_from_dict",
    "record_to_dict",
    "records_dir",
    "remove",
    "save_record",
    "verify",
]

RECORD_FORMAT = 1


def records_dir(provider: str | None = None) -> Path:
    parts = ("cache", "records", provider) if provider else ("cache", "records")
    try:
        return subdir(*parts)
    except ReadOnlyHomeError:  # a read-only home: readers find no records, writers refuse
        return home().joinpath(*parts)


def _name_of(pulled: PulledWeights) -> str:
    """The reference's NAME part without provider or revision."""
    name = pulled.reference.split(":", 1)[1]
    return name.rsplit("@", 1)[0] if pulled.revision else name


def _record_path(provider: str, name: str, revision: str | None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "--", name)
    return records_dir(provider) / f"{safe}@{revision or '-'}.json"


def record_to_dict(pulled: PulledWeights) -> dict[str, Any]:
    data = asdict(pulled)
    data["files"] = [asdict(f) for f in pulled.files]
    data["extra"] = dict(pulled.extra)
    data["name"] = _name_of(pulled)
    data["format"] = RECORD_FORMAT
    return data


def record_from_dict(data: dict[str, Any]) -> PulledWeights:
    return PulledWeights(
        reference=data["reference"],
        provider=data["provider"],
        revision=data.get("revision"),
        files=tuple(FileRecord(**f) for f in data["files"]),
        license=data.get("license", "unknown"),
        source=data.get("source"),
        pulled_at=data["pulled_at"],
        extra=data.get("extra") or {},
    )


def save_record(pulled: PulledWeights) -> Path:
    path = _record_path(pulled.provider, _name_of(pulled), pulled.revision)
    atomic_write_text(path, json.dumps(record_to_dict(pulled), indent=2))
    return path


def list_records(provider: str | None = None) -> list[PulledWeights]:
    """Every record (of one provider), oldest first."""
    root = records_dir()
    if not root.is_dir():
        return []
    folders = [root / provider] if provider else sorted(p for p in root.iterdir() if p.is_dir())
    found = []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            try:
                found.append(record_from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged record is as good as none: the next pull rewrites it
    return sorted(found, key=lambda r: r.pulled_at)


def files_present(pulled: PulledWeights) -> bool:
    """Every file still there with its recorded size (the cheap check; verify re-hashes)."""
    for f in pulled.files:
        path = Path(f.path)
        if not path.is_file() or path.stat().st_size != f.size:
            return False
    return True


def find_record(provider: str, name: str, revision: str | None = None) -> PulledWeights | None:
    """The record of NAME at REVISION (the latest pulled one when REVISION is None)."""
    if revision is not None:
        path = _record_path(provider, name, revision)
        if not path.exists():
            return None
        try:
            return record_from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None
    matches = [r for r in list_records(provider) if _name_of(r) == name]
    return matches[-1] if matches else None


def match_records(ref: Ref | str) -> list[PulledWeights]:
    """Records a user's reference names: ``timm:resnet50`` matches every tag of resnet50,
    ``@REV`` narrows to one revision."""
    if isinstance(ref, str):
        ref = parse_ref(ref)
    out = []
    for rec in list_records(ref.scheme) if records_dir().joinpath(ref.scheme).is_dir() else []:
        name = _name_of(rec)
        if name != ref.name and not name.startswith(ref.name + "."):
            continue
        if ref.revision is not None and rec.revision != ref.revision:
            continue
        out.append(rec)
    return out


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


def info_extras(reference: str) -> dict[str, object]:
    """`zoo info`'s "cache" field: the latest local record of this reference, if any."""
    try:
        ref = parse_ref(reference)
    except Exception:
        return {}
    if ref.scheme in ("models", "bare"):
        return {}
    rec = find_record(ref.scheme, ref.name, ref.revision)
    if rec is None:
        return {"cache": "not pulled (run `zoo pull " + reference + "`)"}
    data = record_to_dict(rec)
    data.pop("format", None)
    return {"cache": data}


def with_extra(pulled: PulledWeights, **extra: Any) -> PulledWeights:
    return replace(pulled, extra={**pulled.extra, **extra})
