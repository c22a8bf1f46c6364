"""The local record of every pulled model.

Weights themselves live where their source's tooling keeps them: Hub files (timm and hf
references) in the shared Hugging Face cache (``HF_HUB_CACHE``), plain-URL files
(torchvision) under ``$ZOO_HOME/cache/<provider>/``. zoo keeps one JSON record per pulled
revision under ``$ZOO_HOME/cache/records/<provider>/``: reference, resolved revision,
files with SHA-256 and size as verified at pull time, licence, source URL, time.

`zoo cache verify` and `zoo cache rm` work on these records: :mod:`zoo.upkeep.cache`.

Every use of a cached file checks it against its pinned SHA-256 (:func:`verified_files`,
:func:`pin_for`), cheaply: each record keeps, per file, the (size, mtime_ns, ctime_ns,
inode) the file had when it was last hashed (``verified_stat``); while they are the same
the bytes are the ones hashed, and any change (an edit, a copy over it, ``touch -r``,
which cannot set ctime) means hashing again. A file that no longer matches is refused
(:class:`IntegrityError`, naming the file and ``zoo pull --force``), never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from zoo.contract.errors import IntegrityError
from zoo.contract.refs import Ref, parse_ref
from zoo.contract.types import FileRecord, PulledWeights
from zoo.disk.paths import ReadOnlyHomeError, atomic_write_text, home, subdir
from zoo.weights.download import sha256_file

__all__ = [
    "RECORD_FORMAT",
    "Pin",
    "file_stat",
    "find_record",
    "info_extras",
    "list_records",
    "match_records",
    "pin_for",
    "record_from_dict",
    "record_to_dict",
    "records_dir",
    "save_record",
    "verified_files",
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
    """Write the record of files just hashed (their stat is recorded as verified now)."""
    path = _record_path(pulled.provider, _name_of(pulled), pulled.revision)
    data = record_to_dict(pulled)
    data[_STAT_KEY] = {f.name: s for f in pulled.files if (s := file_stat(f.path)) is not None}
    atomic_write_text(path, json.dumps(data, indent=2))
    return path


# ------------------------------------------------------------------ verified on every use

_STAT_KEY = "verified_stat"  # file name -> [size, mtime_ns, ctime_ns, inode] when last hashed
Stat = list[int]


def file_stat(path: str | Path, st: os.stat_result | None = None) -> Stat | None:
    """(size, mtime_ns, ctime_ns, inode) of a file (followed through links), None if gone.

    Any write changes mtime and ctime, a rename or copy over it changes the inode, and
    ctime cannot be set back by anyone (``touch -r`` and ``os.utime`` set mtime only).
    """
    if st is None:
        try:
            st = os.stat(path)
        except OSError:
            return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _record_file(pulled: PulledWeights) -> Path:
    return _record_path(pulled.provider, _name_of(pulled), pulled.revision)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stats(data: dict[str, Any]) -> dict[str, Any]:
    found = data.get(_STAT_KEY)
    return found if isinstance(found, dict) else {}


def _remember_stat(record: Path, name: str, sha256: str, stat: Stat) -> None:
    """Note that ``name`` was hashed (``sha256``, matching) with ``stat``. Best effort: a
    read-only cache keeps its record as it is (the file is then hashed on each use), and
    a record that now pins other bytes (a pull since) is left alone."""
    data = _read_json(record)
    files = data.get("files") if data is not None else None
    if data is None or not isinstance(files, list):
        return
    if not any(isinstance(f, dict) and f.get("name") == name and f.get("sha256") == sha256
               for f in files):  # fmt: skip
        return
    stats = _stats(data)
    if stats.get(name) == stat:
        return
    data[_STAT_KEY] = {**stats, name: stat}
    with contextlib.suppress(OSError):
        atomic_write_text(record, json.dumps(data, indent=2))


def _tampered(reference: str, path: str, pinned: str, actual: str) -> IntegrityError:
    return IntegrityError(
        f"{path} no longer matches the SHA-256 recorded when {reference} was pulled "
        f"({pinned[:16]}..., now {actual[:16]}...): it was changed after the pull and is not "
        f"used; fetch it again with `zoo pull --force {reference}`"
    )


@dataclass(frozen=True)
class Pin:
    """A cached file's pinned SHA-256, and the stat it had when last hashed."""

    reference: str
    name: str
    path: str
    sha256: str
    stat: Stat | None
    record: Path

    def vouches_for(self, stat: Stat | None) -> bool:
        """The file is the one hashed: the same size, times and inode."""
        return self.stat is not None and stat == self.stat

    def check(self, actual: str, stat: Stat | None) -> None:
        """``actual`` (the SHA-256 of the bytes read while the file had ``stat``) matches
        the pin, or the file is refused. A match is remembered."""
        if actual != self.sha256:
            raise _tampered(self.reference, self.path, self.sha256, actual)
        if stat is not None:
            _remember_stat(self.record, self.name, self.sha256, stat)


def _pins(record: Path) -> list[Pin]:
    data = _read_json(record)
    if data is None:
        return []
    stats = _stats(data)
    try:
        return [
            Pin(data["reference"], f["name"], f["path"], f["sha256"], stats.get(f["name"]), record)
            for f in data["files"]
        ]
    except (KeyError, TypeError):
        return []


def pin_for(path: str | Path) -> Pin | None:
    """The pin of a cached file, by the path its record holds (None: not a cached file)."""
    try:
        root = records_dir()
    except ReadOnlyHomeError:
        return None  # a read-only home without records: nothing was pulled
    wanted = {str(path), os.path.realpath(path)}
    for record in sorted(root.glob("*/*.json")):
        for pin in _pins(record):
            if pin.path in wanted or os.path.realpath(pin.path) in wanted:
                return pin
    return None


def verified_files(pulled: PulledWeights) -> bool:
    """Every file of a record is there and still the one pulled: the cheap stat check,
    and a re-hash for each file whose stat changed since it was last hashed.

    False when a file is missing or has another size (the caller fetches it again);
    :class:`IntegrityError` when a file of the right size has other bytes.
    """
    if not files_present(pulled):
        return False
    record = _record_file(pulled)
    pins = {p.name: p for p in _pins(record)}
    for f in pulled.files:
        pin, stat = pins.get(f.name), file_stat(f.path)
        if pin is not None and pin.sha256 == f.sha256 and pin.vouches_for(stat):
            continue
        Pin(pulled.reference, f.name, f.path, f.sha256, None, record).check(
            sha256_file(f.path), stat
        )
    return True


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
