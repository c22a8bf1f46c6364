"""Where MLflow keeps zoo's runs and models: the embedded store or a tracking server.

Default: an SQLite database and an artifact folder under ``$ZOO_HOME/mlflow/``.
``MLFLOW_TRACKING_URI`` (or ``--tracking-uri``, which sets it) points zoo at any MLflow
server instead. Two MLflow habits are corrected here:

* an SQLite URI alone makes MLflow write artifacts to ``./mlruns`` in the current folder,
  so every experiment zoo creates gets an explicit artifact location under the store;
* several processes opening a *fresh* SQLite store at once crash in MLflow's schema
  migrations, so zoo creates the store under a file lock, once, and marks it ready.

``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is forced to ``false`` for zoo's own loads.
mlflow is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from zoo.errors import UsageError
from zoo.home import subdir

__all__ = [
    "DEFAULT_EXPERIMENT",
    "artifact_root",
    "client",
    "configure",
    "embedded_exists",
    "embedded_uri",
    "experiment_id",
    "is_embedded",
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


def artifact_root() -> Path:
    """Where the embedded store keeps artifacts (never ./mlruns)."""
    path = store_dir() / "artifacts"
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


def _create_embedded_store(uri: str) -> None:
    """Run MLflow's schema migrations once, under the lock; later calls are a stat()."""
    mark = store_dir() / _READY_MARK
    if mark.exists():
        return
    with store_lock():
        if mark.exists():
            return
        from mlflow.store.model_registry.sqlalchemy_store import (
            SqlAlchemyStore as RegistryStore,
        )
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

        # The tracking store creates the Default experiment: give it our artifact root.
        tracking = TrackingStore(uri, artifact_root().as_uri())
        registry = RegistryStore(uri)
        for store in (tracking, registry):
            engine = getattr(store, "engine", None)
            if engine is not None:
                engine.dispose()
        mark.write_text("ok\n", encoding="utf-8")


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
    # MLflow writes run links to stdout when talking to a server: keep stdout for zoo's
    # own output (--json documents, printed references).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    uri = tracking_uri()
    import mlflow

    if is_embedded(uri):
        _create_embedded_store(uri)
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
    """An ``MlflowClient`` on zoo's store (configured first)."""
    uri = configure()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(name: str = DEFAULT_EXPERIMENT) -> str:
    """Get or create experiment ``name``; on the embedded store its artifacts stay under it.

    On a server the server's artifact root decides (``--artifacts-destination``).
    Concurrent creators race safely: the loser reads the winner's experiment.
    """
    uri = configure()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mc = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = mc.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            mc.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    location = None
    if is_embedded(uri):
        location = (artifact_root() / _safe(name)).as_uri()
    try:
        return str(mc.create_experiment(name, artifact_location=location))
    except MlflowException:
        found = mc.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"
