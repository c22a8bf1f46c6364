"""A new SQLite store starts as a copy of an empty, migrated MLflow schema.

MLflow builds a fresh SQLite store by running every one of its schema migrations (one to
three seconds on a laptop, paid by each new zoo home and by each store a team creates).
The result depends only on the MLflow version, so zoo migrates once per version into
``<user cache>/zoo/mlflow-schema-<version>.db`` (platformdirs' cache folder:
``$XDG_CACHE_HOME/zoo`` or ``~/.cache/zoo`` on Linux) and copies that file into each new
store. The template holds no experiment: MLflow's own store creates its Default
experiment on first open, with the new store's artifact root, as it does after a
migration. Deleting the cache folder is always safe; a cache that cannot be written
means the store is migrated in place, as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

__all__ = ["copy_empty_schema", "migrate", "template_path"]


def template_path() -> Path:
    """Where this MLflow version's empty schema is kept."""
    import mlflow
    import platformdirs

    cache = Path(platformdirs.user_cache_dir("zoo", appauthor=False))
    return cache / f"mlflow-schema-{mlflow.__version__}.db"


def copy_empty_schema(db: Path) -> bool:
    """Write the migrated empty schema to ``db`` (which does not exist yet).

    False, with nothing written, when no template can be made here (a read-only or full
    cache folder): the caller migrates ``db`` itself. An error writing ``db`` is raised.
    """
    try:
        template = _template()
    except (OSError, sqlite3.Error):
        return False
    shutil.copyfile(template, db)
    return True


def _template() -> Path:
    path = template_path()
    if path.is_file() and _intact(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # built in a folder of its own beside its final name and moved there whole: processes
    # making it at once each build their own, and every reader sees a complete file
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=path.parent))
    try:
        _migrate_empty(building / "schema.db")
        os.replace(building / "schema.db", path)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return path


def _intact(db: Path) -> bool:
    """A readable SQLite file that records its schema's revision (a template damaged
    since it was made is built again, not copied)."""
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            (ok,) = conn.execute("PRAGMA quick_check").fetchone()
            revision = conn.execute("SELECT * FROM alembic_version").fetchone()
            return bool(ok == "ok" and revision)
    except sqlite3.Error:
        return False


def migrate(uri: str, artifact_uri: str) -> None:
    """Run MLflow's schema migrations on the store at ``uri`` (its tracking store names
    ``artifact_uri`` as the Default experiment's folder), quietly."""
    import logging

    from mlflow.store.model_registry.sqlalchemy_store import (
        SqlAlchemyStore as RegistryStore,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    # MLflow announces its schema migration ("Creating initial MLflow database tables",
    # "Updating database tables") at INFO on the user's terminal: zoo made the store, and
    # says nothing about it unless something goes wrong.
    quiet = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    try:
        tracking = TrackingStore(uri, artifact_uri)
        registry = RegistryStore(uri)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    for engine in (getattr(tracking, "engine", None), getattr(registry, "engine", None)):
        if engine is not None:
            engine.dispose()


def _migrate_empty(db: Path) -> None:
    migrate(f"sqlite:///{db}", (db.parent / "unused-artifacts").as_uri())
    # the Default experiment MLflow just made names this file's artifact folder: a store
    # copied from it makes its own on first open
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM experiments WHERE experiment_id = 0")
