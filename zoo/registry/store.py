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

from zoo.contract.errors import UsageError
from zoo.disk.paths import disk_full, home, subdir
from zoo.registry.store_guard import Guarded, quiet_db_error_log

__all__ = [
    "DEFAULT_EXPERIMENT",
    "artifact_root",
    "check_health",
    "check_not_moved",
    "client",
    "configure",
    "embedded_exists",
    "embedded_uri",
    "experiment_id",
    "is_embedded",
    "open_other",
    "ready_to_write",
    "recorded_artifact_root",
    "sqlite_path",
    "store_lock",
    "tracking_uri",
]

DEFAULT_EXPERIMENT = "zoo"
READY_MARK = ".zoo-store-ready"  # written once the schema exists; skips the lock afterwards


def store_dir() -> Path:
    """``$ZOO_HOME/mlflow``: the SQLite database, its lock and the artifact folder."""
    return subdir("mlflow")


def embedded_uri() -> str:
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def embedded_exists() -> bool:
    """Has the embedded store been created (its schema migrated)?"""
    return (store_dir() / READY_MARK).exists()


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


@contextlib.contextmanager
def _lock_if_possible(path: Path) -> Iterator[None]:
    """:func:`store_lock`, or nothing where the lock file cannot be made (read-only)."""
    import fcntl

    try:
        fh = open(path, "a+")  # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def _store_files(uri: str) -> tuple[Path, Path]:
    """(lock, ready mark) of an SQLite store: in the store folder, or beside the database."""
    if is_embedded(uri):
        return store_dir() / ".lock", store_dir() / READY_MARK
    db = sqlite_path(uri)
    assert db is not None
    return db.parent / f".{db.name}.zoo-lock", db.parent / f".{db.name}.zoo-ready"


def recorded_artifact_root() -> Path | None:
    """The artifact root the embedded store's versions point at (from its ready mark)."""
    try:
        text = (store_dir() / READY_MARK).read_text(encoding="utf-8")
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


def _has_schema(db: Path | None) -> bool:
    """A non-empty database file (check_health already refused a damaged one)."""
    try:
        return db is not None and db.stat().st_size > 0
    except OSError:
        return False


def _create_sqlite_store(uri: str) -> None:
    """Run MLflow's schema migrations once, under the lock; later calls are a stat(). A new
    database starts as a copy of the migrated empty schema (:mod:`zoo.registry.store_template`)."""
    lock, mark = _store_files(uri)
    db = sqlite_path(uri)
    if mark.exists() and _has_schema(db):
        if is_embedded(uri):
            _check_not_moved()
        return
    with store_lock(lock):
        if mark.exists() and _has_schema(db):
            return
        fresh = db is not None and not db.exists()
        try:
            with disk_full(f"the MLflow store {db}"):
                if fresh and db is not None:
                    from zoo.registry.store_template import copy_empty_schema

                    copy_empty_schema(db)  # the migrations' result, or nothing: then run them
                _migrate(uri)  # on a copy: checks the schema, makes the Default experiment
        except BaseException:
            if fresh and db is not None:  # a half-made schema: the next run starts clean
                db.unlink(missing_ok=True)
            raise
        _write_mark(mark, uri)


def _migrate(uri: str) -> None:
    from zoo.registry.store_template import migrate

    # The tracking store creates the Default experiment: give it our artifact root.
    migrate(uri, artifact_root(uri).as_uri())


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
    uri = check_health()
    import mlflow

    quiet_db_error_log()

    if sqlite_path(uri) is not None:
        _create_sqlite_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


_HEALTHY: set[str] = set()  # URIs checked in this process (the checks run once each)


def _artifacts_of(uri: str) -> Path:
    """:func:`artifact_root` without creating it (the health check only looks)."""
    db = None if is_embedded(uri) else sqlite_path(uri)
    return store_dir() / "artifacts" if db is None else db.parent / f"{db.stem}-artifacts"


def check_health(uri: str | None = None) -> str:
    """Refuse a store zoo cannot use, in seconds and before any work; return its URI.

    A ``file:`` store (no registry); an SQLite database that is damaged, or empty or
    missing beside registered artifacts (never re-created over them); a server that does
    not answer within ``ZOO_STORE_TIMEOUT``. Each URI is checked once per process. An
    SQLite check imports no MLflow (zoo.registry.read's direct listing runs it too).
    """
    from zoo.registry import store_health

    uri = uri or tracking_uri()
    store_health.refuse_file_store(uri)
    scheme = urlparse(uri).scheme
    if scheme in {"http", "https"}:
        store_health.apply_http_timeouts()
    if uri in _HEALTHY:
        return uri
    db = sqlite_path(uri)
    if db is not None:
        if is_embedded(uri):
            _check_not_moved()
            fix = (
                f"restore {db.name} from a backup, or set ZOO_HOME to another home "
                "(or MLFLOW_TRACKING_URI to another store)"
            )
        else:
            fix = f"restore {db.name} from a backup, or point MLFLOW_TRACKING_URI elsewhere"
        lock, mark = _store_files(uri)
        if mark.exists():
            store_health.check_sqlite(db, _artifacts_of(uri), fix)
        else:  # maybe being created right now: look once its creator is done
            with _lock_if_possible(lock):
                store_health.check_sqlite(db, _artifacts_of(uri), fix)
    elif scheme in {"http", "https"}:
        store_health.check_server(uri)
    _HEALTHY.add(uri)
    return uri


def ready_to_write(what: str, *, home_too: bool = True) -> str:
    """Before a command that writes, and before it does any work: the zoo home (when
    ``home_too``) and an SQLite store's folder writable, the store healthy. ``what``
    names the command in the one-line refusal. Returns the tracking URI."""
    from zoo.disk.paths import ReadOnlyHomeError, is_writable, require_writable

    if home_too:
        require_writable(what)
    uri = check_health()
    db = sqlite_path(uri)
    if db is not None and db.parent.is_dir() and not is_writable(db.parent):
        raise ReadOnlyHomeError(
            f"the MLflow store's folder {db.parent} is read-only: {what} writes the store "
            "there. Make it writable, or point ZOO_HOME / MLFLOW_TRACKING_URI elsewhere"
        )
    return uri


def _check_uri(uri: str) -> None:
    from zoo.registry.store_health import refuse_file_store

    refuse_file_store(uri)
    scheme = urlparse(uri).scheme
    if scheme not in {"http", "https", "sqlite", "postgresql", "mysql", "databricks"} and (
        "+" not in scheme
    ):
        raise UsageError(
            f"'{uri}' is not an MLflow tracking URI: use http(s)://HOST:PORT for a server "
            "or sqlite:///PATH for a database file"
        )


def open_other(uri: str) -> Any:
    """An ``MlflowClient`` on a store other than zoo's (``zoo registry copy``'s
    destination): the URI checked, the store healthy, an SQLite one created as zoo
    creates its own; MLflow's current tracking URI is left as it is."""
    _check_uri(uri)
    check_health(uri)
    if sqlite_path(uri) is not None:
        _create_sqlite_store(uri)
    from mlflow import MlflowClient

    return Guarded(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)


def client() -> Any:
    """An ``MlflowClient`` on zoo's store (configured first); a server refusing zoo's
    credentials is a :class:`zoo.SecurityError` naming the variables to set."""
    uri = configure()
    from mlflow import MlflowClient

    return Guarded(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)


def experiment_id(name: str = DEFAULT_EXPERIMENT, uri: str | None = None) -> str:
    """Get or create experiment ``name``; on an SQLite store its artifacts stay beside it.

    On a server the server's artifact root decides (``--artifacts-destination``).
    Concurrent creators race safely: the loser reads the winner's experiment. ``uri``:
    a store opened with :func:`open_other` instead of zoo's own.
    """
    uri = uri or configure()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mc = Guarded(MlflowClient(tracking_uri=uri, registry_uri=uri), uri)
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
