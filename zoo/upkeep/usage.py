"""`zoo home du`: what the zoo home holds, by kind, with sizes and file counts.

Every regular file under the home is counted once, in exactly one kind, by its apparent
size (``st_size``; a file with several hard links once); symbolic links are not
followed. The kinds follow where zoo writes (the modules named below own each place):

    mlflow/ (but artifacts/)   the registry store: MLflow's database (zoo.registry.store)
    mlflow/artifacts/          registered versions' and runs' artifacts
    exports/                   `zoo export` output folders (zoo.deploy.export)
    cache/                     pulled weights: records, plain-URL files (zoo.weights.cache)
    local/                     `zoo import` models (zoo.weights.local)
    runs/KEY/*.pt              checkpoints (zoo.engine.checkpoint): of registered runs
                               (KEY/result.json names the version) or unfinished ones
    runs/KEY/ (the rest)       run records: result.json, figures, recipe, the lock
    features/ stage-features/ prefix/   the engine's tensor caches (zoo.engine.caches)
    data/decoded/              decoded, resized images (zoo.data.check)
    data/verdicts/             the image check's verdicts by file identity (zoo.data.verdicts)
    catalog/                   provider indexes (zoo.catalog.index)
    logs/, *.log               logs
    anything else              other (locks, staging folders)

Hub files live in the Hugging Face cache (``HF_HUB_CACHE``), usually outside the home:
they are listed apart, from the pull records, and are not part of the home's total.
Measuring writes nothing.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.engine.checkpoint import BEST_FILE, DONE_FILE, FINAL_FILE, STATE_FILE

__all__ = [
    "CACHE_KINDS",
    "CHECKPOINT_FILES",
    "KINDS",
    "HomeUsage",
    "KindUsage",
    "classify",
    "human",
    "measure",
    "registered_version",
]

CHECKPOINT_FILES = (STATE_FILE, BEST_FILE, FINAL_FILE)
CACHE_KINDS = {"features": "features", "stage-features": "stage-features", "prefix": "prefix"}

# kind -> label, in the order `zoo home du` shows them
KINDS: dict[str, str] = {
    "store": "registry store (MLflow database)",
    "artifacts": "registry artifacts (versions, runs)",
    "exports": "exports",
    "weights": "pulled weights (records, plain-URL files)",
    "imports": "local imports",
    "checkpoints-registered": "checkpoints of registered runs",
    "checkpoints-unfinished": "checkpoints of unfinished runs",
    "run-records": "run records (result, figures, recipe)",
    "features": "feature caches",
    "stage-features": "stage-feature caches",
    "prefix": "frozen-prefix caches",
    "decoded": "decoded images",
    "verdicts": "image check verdicts",
    "catalog": "catalogue indexes",
    "logs": "logs",
    "other": "other (locks, staging)",
}


@dataclass
class KindUsage:
    kind: str
    files: int = 0
    bytes: int = 0

    @property
    def label(self) -> str:
        return KINDS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": self.label, "files": self.files, "bytes": self.bytes}


@dataclass
class HomeUsage:
    root: Path
    kinds: dict[str, KindUsage]
    unreadable: list[str] = field(default_factory=list)  # folders that could not be listed
    outside_files: int = 0  # pulled files outside the home (the Hugging Face cache)
    outside_bytes: int = 0
    outside_models: int = 0

    @property
    def files(self) -> int:
        return sum(k.files for k in self.kinds.values())

    @property
    def bytes(self) -> int:
        return sum(k.bytes for k in self.kinds.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": str(self.root),
            "files": self.files,
            "bytes": self.bytes,
            "kinds": [k.to_dict() for k in self.kinds.values()],
            "unreadable": self.unreadable,
            "outside": {
                "what": "pulled weights in the Hugging Face cache (not in the home's total)",
                "models": self.outside_models,
                "files": self.outside_files,
                "bytes": self.outside_bytes,
            },
        }


def registered_version(run: Path) -> str | None:
    """The version a finished run registered (its ``result.json``), None otherwise."""
    try:
        info = json.loads((run / DONE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    uri = info.get("model_uri") if isinstance(info, dict) else None
    return uri if isinstance(uri, str) and uri else None


def classify(parts: tuple[str, ...], registered: dict[str, bool]) -> str:
    """The kind of the file at ``parts`` (its path relative to the home, split);
    ``registered``: run folder name -> whether that run registered a version."""
    top = parts[0] if parts else ""
    if top == "mlflow":
        return "artifacts" if len(parts) > 2 and parts[1] == "artifacts" else "store"
    if top == "runs" and len(parts) >= 3:
        if len(parts) == 3 and parts[2] in CHECKPOINT_FILES:
            done = registered.get(parts[1])
            return "checkpoints-registered" if done else "checkpoints-unfinished"
        return "run-records"
    if top == "data" and len(parts) > 2 and parts[1] in ("decoded", "verdicts"):
        return parts[1]
    simple = {"exports": "exports", "cache": "weights", "local": "imports", "catalog": "catalog"}
    if top in simple and len(parts) > 1:
        return simple[top]
    if top in CACHE_KINDS and len(parts) > 1:
        return CACHE_KINDS[top]
    if top == "logs" or parts[-1].endswith(".log"):
        return "logs"
    return "other"


def _registered_runs(root: Path) -> dict[str, bool]:
    runs = root / "runs"
    try:
        folders = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return {}
    return {p.name: registered_version(p) is not None for p in folders}


def _outside(root: Path, usage: HomeUsage) -> None:
    """Pulled files whose real path is outside the home, from the records (read as they
    are: nothing is created)."""
    from zoo.weights.cache import record_from_dict

    seen: set[str] = set()
    for record in sorted((root / "cache" / "records").glob("*/*.json")):
        try:
            rec = record_from_dict(json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        counted = False
        for f in rec.files:
            real = os.path.realpath(f.path)
            if real in seen or Path(real).is_relative_to(root):
                continue
            try:
                size = os.stat(real).st_size
            except OSError:
                continue  # gone since the pull: `zoo cache verify` says so
            seen.add(real)
            usage.outside_files += 1
            usage.outside_bytes += size
            counted = True
        usage.outside_models += counted


def measure(root: Path) -> HomeUsage:
    """Walk the home once; every regular file lands in one kind."""
    usage = HomeUsage(root, {k: KindUsage(k) for k in KINDS})
    registered = _registered_runs(root)
    seen: set[tuple[int, int]] = set()

    def unreadable(exc: OSError) -> None:
        usage.unreadable.append(str(exc.filename or exc))

    for folder, _dirs, names in os.walk(root, onerror=unreadable):
        rel = Path(folder).relative_to(root).parts
        for name in names:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue  # removed while we walked
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            kind = usage.kinds[classify((*rel, name), registered)]
            kind.files += 1
            kind.bytes += st.st_size
    _outside(root, usage)
    return usage


def human(n: int) -> str:
    """Bytes as people read them (decimal units, as `zoo cache ls`)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover
