"""Pulling a plain file (torchvision's weights, timm weights not on the Hub, a local
plugin's packaged file) into ``$ZOO_HOME/cache/<provider>/``, verified by the SHA-256
prefix in its name, and recorded (:mod:`zoo.weights.cache`)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from zoo.contract.errors import IntegrityError, UsageError
from zoo.contract.protocols import Progress
from zoo.contract.types import FileRecord, PulledWeights
from zoo.disk.paths import ReadOnlyHomeError, is_writable, subdir
from zoo.weights.cache import find_record, records_dir, save_record, verified_files
from zoo.weights.download import HASH_PREFIX, download_url, file_lock, sha256_file

__all__ = ["pull_url", "utc_now", "writable_or_refuse"]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def writable_or_refuse(folder: Path, label: str, variable: str) -> None:
    """Before anything is downloaded: refuse in one line, naming the folder, when the
    cache cannot be written (reading what is cached needs no write; pulling does)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not is_writable(probe):
        raise ReadOnlyHomeError(
            f"{folder} is read-only: pulling {label} writes its weights there. Make it "
            f"writable, or point {variable} at a writable folder"
        )


def pull_url(
    *,
    provider: str,
    name: str,
    url: str,
    license: str = "unknown",
    source: str | None = None,
    require_hash: bool = True,
    force: bool = False,
    progress: Progress | None = None,
) -> PulledWeights:
    """Pull a plain file into ``$ZOO_HOME/cache/<provider>/`` and record it.

    The expected SHA-256 prefix comes from the file name (``NAME-<hex>.EXT``, torch.hub's
    convention); with ``require_hash`` a file without one is refused.
    """
    filename = os.path.basename(urlparse(url).path)
    if not filename:
        raise UsageError(f"'{url}' does not name a file")
    m = HASH_PREFIX.search(filename)
    prefix = m.group(1) if m else None
    if prefix is None and require_hash:
        raise IntegrityError(
            f"{filename} carries no published hash (NAME-<sha256 prefix>.EXT), so it cannot "
            "be verified; refused"
        )
    dest = subdir("cache", provider) / filename
    with file_lock(f"{provider}-{filename}"):
        if not force:
            rec = find_record(provider, name)
            if rec is not None and rec.weights_file.name == filename and verified_files(rec):
                return rec
        writable_or_refuse(dest.parent, f"{provider}:{name}", "ZOO_HOME")
        writable_or_refuse(records_dir(provider), f"{provider}:{name}", "ZOO_HOME")
        if dest.exists() and not force:
            digest = sha256_file(dest)
            if prefix is not None and not digest.startswith(prefix):
                dest.unlink()
                digest = download_url(url, dest, sha256_prefix=prefix, progress=progress)
        else:
            dest.unlink(missing_ok=True)
            digest = download_url(url, dest, sha256_prefix=prefix, progress=progress)
        pulled = PulledWeights(
            reference=f"{provider}:{name}",
            provider=provider,
            revision=None,
            files=(FileRecord(filename, str(dest), digest, dest.stat().st_size),),
            license=license,
            source=source or url,
            pulled_at=utc_now(),
            extra={
                "storage": "zoo",
                "url": url,
                "verified": "sha256-prefix" if prefix else "recorded at first pull",
            },
        )
        save_record(pulled)
        return pulled
