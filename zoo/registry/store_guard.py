"""MLflow's failures as zoo's one line: a server's refusal (HTTP 401/403) naming the
variables to set, a server that stops answering mid-command (timed out, connection
refused: exit 3), and no traceback logged by MLflow before it raises.

MLflow raises refusals deep inside a call as ``MlflowException``; every call zoo makes
through :func:`zoo.registry.store.client` goes through :class:`Guarded`.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["Guarded", "quiet_db_error_log", "refused", "unreachable"]


class Guarded:
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
                reason = refused(exc)
                if reason is None:
                    lost = unreachable(exc, self._uri)
                    if lost is None:
                        raise
                    from zoo.contract.errors import OfflineError

                    raise OfflineError(
                        f"the MLflow server {self._uri} stopped answering ({lost}) while zoo "
                        f"was calling {name}: check that it is up, or give it longer with "
                        "ZOO_STORE_TIMEOUT (seconds)"
                    ) from None
                from zoo.contract.errors import SecurityError

                raise SecurityError(
                    f"the registry at {self._uri} refused zoo ({reason}): set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account "
                    "it knows (see registry/README.md)"
                ) from None

        return call


def unreachable(exc: BaseException, uri: str) -> str | None:
    """Why a server's REST call failed on the network (timed out, connection refused...),
    or None when it did not (an answer MLflow refused, a local store's error)."""
    if not uri.startswith(("http://", "https://")):
        return None
    text = str(exc)
    if "API request to" not in text:  # MLflow's words for a request that got no answer
        return None
    from zoo.registry.store_health import network_reason

    reason = network_reason(text)
    return None if reason == "no answer" else reason


def refused(exc: BaseException) -> str | None:
    text = str(exc)
    if "error code 401" in text or "UNAUTHENTICATED" in getattr(exc, "error_code", ""):
        return "not authenticated"
    if "error code 403" in text or "PERMISSION_DENIED" in getattr(exc, "error_code", ""):
        return "permission denied"
    return None


class _DropDbErrorLog(logging.Filter):
    """MLflow logs an SQLite OperationalError (a full disk, a locked database) with its
    traceback, then raises it as an MlflowException: zoo reports that exception in one
    line (``--debug`` shows the traceback), so the log record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


def quiet_db_error_log() -> None:
    log = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropDbErrorLog) for f in log.filters):
        log.addFilter(_DropDbErrorLog())
