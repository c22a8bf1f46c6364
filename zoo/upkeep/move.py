"""``zoo home move``: move the zoo home and rewrite the embedded store's artifact locations.

MLflow keeps absolute artifact URIs (experiments, runs, logged models, model versions),
so a plain ``mv`` of the home leaves every version pointing at the old place; this module
rewrites them with Python's sqlite3 (no MLflow import).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from zoo.contract.errors import UsageError
from zoo.disk.paths import home
from zoo.registry.store import READY_MARK, recorded_artifact_root

__all__ = ["move_home"]

# ------------------------------------------------------------------ moving the zoo home

# (table, column) pairs where MLflow keeps absolute artifact locations.
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def _rewrite_locations(db: Path, old: Path, new: Path) -> int:
    """Point every artifact location under ``old`` at ``new`` (URIs and plain paths)."""
    import sqlite3

    pairs = [(old.as_uri() + "/", new.as_uri() + "/"), (str(old) + "/", str(new) + "/")]
    changed = 0
    conn = sqlite3.connect(str(db), timeout=60)
    try:
        with conn:  # one transaction: all rewritten or none
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            for table, column in _LOCATION_COLUMNS:
                if table not in tables:
                    continue
                for before, after in pairs:
                    cur = conn.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE substr({column}, 1, ?) = ?",
                        (after, len(before) + 1, len(before), before),
                    )
                    changed += cur.rowcount
                    exact = (before.rstrip("/"), after.rstrip("/"))
                    cur = conn.execute(
                        f"UPDATE {table} SET {column} = ? WHERE {column} = ?",
                        (exact[1], exact[0]),
                    )
                    changed += cur.rowcount
    finally:
        conn.close()
    return changed


def _rewrite_cache_records(root: Path, old_home: Path, new_home: Path) -> None:
    """Pulled-weights records name their files by absolute path: follow the move."""
    from zoo.disk.paths import atomic_write_text

    records = root / "cache" / "records"
    if not records.is_dir():
        return
    before = str(old_home) + os.sep
    for path in records.rglob("*.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = data.get("files") or []
        except (OSError, ValueError, AttributeError):
            continue
        touched = False
        for f in files:
            if isinstance(f, dict) and str(f.get("path", "")).startswith(before):
                f["path"] = str(new_home) + os.sep + f["path"][len(before) :]
                touched = True
        if touched:
            atomic_write_text(path, json.dumps(data, indent=2))


def move_home(dest: str | Path) -> tuple[Path, Path, int]:
    """Move the zoo home to ``dest`` and rewrite the embedded store's artifact locations.

    MLflow records absolute artifact URIs (experiments, runs, logged models, model
    versions), so a plain ``mv`` leaves every version pointing at the old place. Given
    the folder the home already is (it was moved by hand), only the rewrite is done.
    Returns (old home, new home, rows rewritten). Run it while no other zoo command runs.
    """
    import shutil

    src = home()
    target = Path(dest).expanduser().absolute()
    recorded = recorded_artifact_root()
    if target.resolve() == src:
        old_home = recorded.parent.parent if recorded is not None else src
        new_home = src
    else:
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise UsageError(f"{target} exists and is not an empty folder: choose a new one")
        if src in target.resolve().parents:
            raise UsageError(f"{target} is inside the zoo home {src}: choose a folder outside it")
        old_home = recorded.parent.parent if recorded is not None else src
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.rmdir()
        shutil.move(str(src), str(target))
        new_home = target.resolve()
    db = new_home / "mlflow" / "mlflow.db"
    changed = 0
    if db.is_file():
        old_root = old_home / "mlflow" / "artifacts"
        new_root = new_home / "mlflow" / "artifacts"
        changed = _rewrite_locations(db, old_root, new_root)
        if old_home != src:  # moved by hand: versions may still name the very first place
            changed += _rewrite_locations(db, src / "mlflow" / "artifacts", new_root)
        mark = new_home / "mlflow" / READY_MARK
        mark.write_text(
            json.dumps({"ready": True, "artifact_root": str(new_root)}) + "\n", encoding="utf-8"
        )
    _rewrite_cache_records(new_home, old_home, new_home)
    return old_home, new_home, changed
