"""Where MLflow keeps zoo's runs and models: the embedded store or a tracking server.

Default: an SQLite database and an artifact folder under ``$ZOO_HOME/mlflow/``.
``MLFLOW_TRACKING_URI`` (or ``--tracking-uri``, which sets it) points zoo at any MLflow
server instead. Two MLflow habits are corrected here:

* an SQLite URI alone makes MLflow write artifacts to ``./mlruns`` in the current folder,
  so every experiment zoo creates gets an explicit artifact location beside the database
  (``$ZOO_HOME/mlflow/artifacts`` for the embedded store, ``DIR/NAME-artifacts`` for
  ``sqlite:///DIR/NAME.db``);
* several processes opening a *fresh* SQLite store at once crash in MLflow's schema
  migrations, so zoo creates any SQLite store under a file lock, once, and marks it ready.

The embedded store's ready mark records where its artifacts live: MLflow keeps absolute
artifact URIs, so a zoo home moved with ``mv`` is noticed (and refused, naming
``zoo home move``) before anything is written at the old or the new place.

``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is forced to ``false`` for zoo's own loads.
mlflow is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from zoo.errors import UsageError
from zoo.home import disk_full, home, subdir

__all__ = [
    "DEFAULT_EXPERIMENT",
    "artifact_root",
    "check_not_moved",
    "client",
    "configure",
    "embedded_exists",
    "embedded_uri",
    "experiment_id",
    "is_embedded",
    "move_home",
    "recorded_artifact_root",
    "sqlite_path",
    "store_lock",
    "tracking_uri",
]

DEFAULT_EXPERIMENT = "zoo"
_READY_MARK = ".zoo-store-ready"  # written once the schema exists; skips the lock afterwards


def store_dir() -> Path:
    """``$ZOO_HOME/mlflow``: the SQLite database, its lock and the artifact folder."""
    return subdir("mlflow")


def embedded_uri() -> str:
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def embedded_exists() -> bool:
    """Has the embedded store been created (its schema migrated)?"""
    return (store_dir() / _READY_MARK).exists()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (None for other URIs, ``:memory:``)."""
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///") :].split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    return Path(raw).expanduser().absolute()


def artifact_root(uri: str | None = None) -> Path:
    """Where an SQLite store keeps artifacts: beside its database, never ./mlruns.

    The embedded store (the default): ``$ZOO_HOME/mlflow/artifacts``; any other
    ``sqlite:///DIR/NAME.db``: ``DIR/NAME-artifacts``.
    """
    uri = uri or tracking_uri()
    db = None if is_embedded(uri) else sqlite_path(uri)
    path = store_dir() / "artifacts" if db is None else db.parent / f"{db.stem}-artifacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def tracking_uri() -> str:
    """The URI zoo uses: ``MLFLOW_TRACKING_URI`` when set, else the embedded store."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return env or embedded_uri()


def is_embedded(uri: str | None = None) -> bool:
    uri = uri or tracking_uri()
    return uri == embedded_uri()


@contextlib.contextmanager
def store_lock(path: Path | None = None) -> Iterator[None]:
    """An exclusive lock across processes (POSIX ``flock``; released if the holder dies)."""
    import fcntl

    lock_path = path or store_dir() / ".lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _store_files(uri: str) -> tuple[Path, Path]:
    """(lock, ready mark) of an SQLite store: in the store folder, or beside the database."""
    if is_embedded(uri):
        return store_dir() / ".lock", store_dir() / _READY_MARK
    db = sqlite_path(uri)
    assert db is not None
    return db.parent / f".{db.name}.zoo-lock", db.parent / f".{db.name}.zoo-ready"


def recorded_artifact_root() -> Path | None:
    """The artifact root the embedded store's versions point at (from its ready mark)."""
    try:
        text = (store_dir() / _READY_MARK).read_text(encoding="utf-8")
        root = json.loads(text).get("artifact_root")
    except (OSError, ValueError, AttributeError):
        return None  # no store yet, or a mark written before zoo recorded the root
    return Path(root) if isinstance(root, str) and root else None


def _check_not_moved() -> None:
    recorded = recorded_artifact_root()
    if recorded is None:
        return
    here = store_dir() / "artifacts"
    if recorded != here:
        old_home = recorded.parent.parent
        raise UsageError(
            f"this zoo home was moved from {old_home} without `zoo home move`: its registered "
            f"versions still point there. Run `zoo home move {home()}` to rewrite them for "
            f"the new place (or move the folder back to {old_home})"
        )


def check_not_moved() -> None:
    """Refuse a home moved without `zoo home move` (a stat and a small read; no MLflow):
    for readers that skip :func:`configure` (zoo.registry.read's direct SQLite listing)."""
    _check_not_moved()


def _write_mark(mark: Path, uri: str) -> None:
    doc = {"ready": True}
    if is_embedded(uri):
        doc["artifact_root"] = str(store_dir() / "artifacts")  # type: ignore[assignment]
    with contextlib.suppress(OSError):  # a read-only folder: the lock is taken each time
        mark.write_text(json.dumps(doc) + "\n", encoding="utf-8")


def _create_sqlite_store(uri: str) -> None:
    """Run MLflow's schema migrations once, under the lock; later calls are a stat()."""
    lock, mark = _store_files(uri)
    if mark.exists():
        if is_embedded(uri):
            _check_not_moved()
        return
    with store_lock(lock):
        if mark.exists():
            return
        db = sqlite_path(uri)
        fresh = db is not None and not db.exists()
        try:
            with disk_full(f"the MLflow store {db}"):
                _migrate(uri)
        except BaseException:
            if fresh and db is not None:  # a half-made schema: the next run starts clean
                db.unlink(missing_ok=True)
            raise
        _write_mark(mark, uri)


def _migrate(uri: str) -> None:
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
        # The tracking store creates the Default experiment: give it our artifact root.
        tracking = TrackingStore(uri, artifact_root(uri).as_uri())
        registry = RegistryStore(uri)
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    for store in (tracking, registry):
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()


def configure(tracking_uri_override: str | None = None) -> str:
    """Point MLflow at zoo's store (created if needed) and return the tracking URI.

    ``tracking_uri_override`` (the CLI's ``--tracking-uri``) wins over
    ``MLFLOW_TRACKING_URI``; it is exported so child processes see the same store.
    """
    if tracking_uri_override:
        _check_uri(tracking_uri_override)
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri_override
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow writes run links to stdout when talking to a server: keep stdout for zoo's
    # own output (--json documents, printed references).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    uri = tracking_uri()
    import mlflow

    if sqlite_path(uri) is not None:
        _create_sqlite_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _check_uri(uri: str) -> None:
    scheme = urlparse(uri).scheme
    if scheme not in {"http", "https", "sqlite", "postgresql", "mysql", "file", "databricks"} and (
        "+" not in scheme
    ):
        raise UsageError(
            f"'{uri}' is not an MLflow tracking URI: use http(s)://HOST:PORT for a server "
            "or sqlite:///PATH for a database file"
        )


def client() -> Any:
    """An ``MlflowClient`` on zoo's store (configured first); a server refusing zoo's
    credentials is a :class:`zoo.SecurityError` naming the variables to set."""
    uri = configure()
    from mlflow import MlflowClient

    return _Guarded(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)


class _Guarded:
    """Calls through to the client; an HTTP 401/403 from a server becomes one line."""

    def __init__(self, inner: Any, uri: str) -> None:
        self._inner = inner
        self._uri = uri

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                refused = _refused(exc)
                if refused is None:
                    raise
                from zoo.errors import SecurityError

                raise SecurityError(
                    f"the registry at {self._uri} refused zoo ({refused}): set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account "
                    "it knows (see registry/README.md)"
                ) from None

        return call


def _refused(exc: BaseException) -> str | None:
    text = str(exc)
    if "error code 401" in text or "UNAUTHENTICATED" in getattr(exc, "error_code", ""):
        return "not authenticated"
    if "error code 403" in text or "PERMISSION_DENIED" in getattr(exc, "error_code", ""):
        return "permission denied"
    return None


def experiment_id(name: str = DEFAULT_EXPERIMENT) -> str:
    """Get or create experiment ``name``; on an SQLite store its artifacts stay beside it.

    On a server the server's artifact root decides (``--artifacts-destination``).
    Concurrent creators race safely: the loser reads the winner's experiment.
    """
    uri = configure()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mc = _Guarded(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)
    found = mc.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mc.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    location = None
    if sqlite_path(uri) is not None:
        location = (artifact_root(uri) / _safe(name)).as_uri()
    try:
        return str(mc.create_experiment(name, artifact_location=location))
    except MlflowException:
        found = mc.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


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
    from zoo.home import atomic_write_text

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
        mark = new_home / "mlflow" / _READY_MARK
        mark.write_text(
            json.dumps({"ready": True, "artifact_root": str(new_root)}) + "\n", encoding="utf-8"
        )
    _rewrite_cache_records(new_home, old_home, new_home)
    return old_home, new_home, changed
