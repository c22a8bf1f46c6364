"""Is the store usable? Cheap checks run before anything opens it through MLflow.

MLflow takes an empty or missing SQLite file for a new store and builds a fresh schema
over it, so a database emptied or lost beside a folder full of registered artifacts
silently becomes an empty registry (and new versions go into it). A damaged file fails
deep inside SQLAlchemy with "database disk image is malformed". A server that refuses
connections is retried for two minutes without a word. Each is turned here into one
line naming the store and the fix, in seconds, before a command does any work.

Pure functions of paths and URIs: :mod:`zoo.registry.store` decides which paths belong to a URI.
sqlite3 is Python's own; mlflow is imported inside the server probe only.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from zoo.contract.errors import IntegrityError, OfflineError, UsageError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "QUICK_CHECK_MAX_BYTES",
    "apply_http_timeouts",
    "check_server",
    "check_sqlite",
    "refuse_file_store",
    "store_timeout",
]

DEFAULT_TIMEOUT_S = 10.0  # ZOO_STORE_TIMEOUT when unset
QUICK_CHECK_MAX_BYTES = 256 << 20  # larger databases: schema read only (quick_check is linear)
_HTTP_RETRIES = "2"  # MLflow's default is 7 with exponential backoff: ~2 minutes of silence
_SQLITE_HEADER = b"SQLite format 3\x00"


def store_timeout() -> float:
    """``ZOO_STORE_TIMEOUT`` in seconds (default 10): how long a server may take to answer."""
    raw = os.environ.get("ZOO_STORE_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise UsageError(
            f"ZOO_STORE_TIMEOUT={raw!r} is not a number of seconds above 0: set it to e.g. "
            f"{DEFAULT_TIMEOUT_S:g}, or unset it"
        )
    return value


def apply_http_timeouts() -> None:
    """Map ``ZOO_STORE_TIMEOUT`` onto MLflow's own request timeout and retries, unless the
    user set those (MLflow reads them at each request, so this runs before the first)."""
    timeout = store_timeout()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(timeout))))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", _HTTP_RETRIES)


def refuse_file_store(uri: str) -> None:
    """MLflow's file store (``file://`` or a plain path) has no model registry zoo can use."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "file" or (not scheme and uri.startswith(("/", ".", "~"))):
        raise UsageError(
            f"the tracking URI {uri} is a file store (MLFLOW_TRACKING_URI or --tracking-uri): "
            "zoo's registry needs a database-backed store. Use sqlite:///PATH/mlflow.db or a "
            "server http(s)://HOST:PORT (or unset it for the embedded store under ZOO_HOME)"
        )


def _holds_files(folder: Path) -> bool:
    try:
        return any(p.is_file() for p in folder.rglob("*"))
    except OSError:
        return False


def check_sqlite(db: Path, artifacts: Path, fix: str) -> None:
    """Refuse a damaged database, or an empty or missing one beside registered artifacts.

    A missing or 0-byte file with no artifacts beside it is a store yet to be made (MLflow
    makes the schema). Otherwise the file must be an SQLite database with MLflow's schema
    (``alembic_version``) that passes ``PRAGMA quick_check`` (up to
    :data:`QUICK_CHECK_MAX_BYTES`; larger files get the schema read only). Read-only:
    nothing is written. ``fix`` ends the line (how to get a good store back).
    """
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError as exc:
        raise IntegrityError(
            f"the MLflow store {db} cannot be read ({exc.strerror}): {fix}"
        ) from None
    if not size:
        if _holds_files(artifacts):
            state = "missing" if size is None else "empty (0 bytes)"
            raise IntegrityError(
                f"the MLflow store {db} is {state} but {artifacts} holds registered "
                f"artifacts: zoo will not start a new store over them. {fix}"
            )
        return
    problem = _sqlite_problem(db, size)
    if problem:
        raise IntegrityError(f"the MLflow store {db} is damaged ({problem}): {fix}")


def _sqlite_problem(db: Path, size: int) -> str | None:
    try:
        with open(db, "rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if header != _SQLITE_HEADER:
        return "not an SQLite database"
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return _one_line(str(exc))
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if not tables:
            return "no tables"
        if "alembic_version" not in tables:
            return "no MLflow schema: alembic_version is missing"
        if conn.execute("SELECT version_num FROM alembic_version").fetchone() is None:
            return "no MLflow schema version"
        if size <= QUICK_CHECK_MAX_BYTES:
            verdict = conn.execute("PRAGMA quick_check(1)").fetchone()
            if not verdict or verdict[0] != "ok":
                return "PRAGMA quick_check: " + _one_line(verdict[0] if verdict else "no answer")
    except sqlite3.Error as exc:
        return _one_line(str(exc))
    finally:
        conn.close()
    return None


def _one_line(text: str) -> str:
    words = " ".join(str(text).replace("*", " ").split())
    return words if len(words) <= 120 else words[:117] + "..."


def check_server(uri: str) -> None:
    """One cheap request (search one experiment) within ``ZOO_STORE_TIMEOUT``, no
    retries: a server that refuses, does not answer or is not there fails in seconds, as
    does one answering as no MLflow server would (401/403: the command says so)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking._tracking_service.utils import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    timeout = store_timeout()
    try:
        answer = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            params={"max_results": 1},
            max_retries=0,
            timeout=timeout,
            raise_on_status=False,
        )
    except MlflowException as exc:
        reason = network_reason(str(exc))
        raise OfflineError(
            f"the MLflow server {uri} cannot be reached ({reason}, waited up to "
            f"{timeout:g} s): start it or check MLFLOW_TRACKING_URI / --tracking-uri "
            "(ZOO_STORE_TIMEOUT sets the wait)"
        ) from None
    status = int(getattr(answer, "status_code", 200))
    if status >= 300 and status not in (401, 403):  # 401/403: the command names the fix
        raise OfflineError(
            f"{uri} answered HTTP {status} to an MLflow API request: it is not an MLflow "
            "server (or a proxy is in the way). Check MLFLOW_TRACKING_URI / --tracking-uri"
        )


def network_reason(text: str) -> str:
    """Why a request failed, from its error's text: 'connection refused', 'timed out',
    'unknown host'... ('no answer' when the text names none)."""
    lowered = text.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("read timeout", "timed out"),
        ("name or service not known", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("temporary failure in name resolution", "unknown host"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
    ):
        if needle in lowered:
            return reason
    return "no answer"
