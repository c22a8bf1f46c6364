"""A refusal by an MLflow server (HTTP 401/403) as one line naming the variables to set.

MLflow raises these deep inside a call as ``MlflowException``; every call zoo makes
through :func:`zoo.store.client` goes through :class:`Guarded`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Guarded", "refused"]


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
                    raise
                from zoo.errors import SecurityError

                raise SecurityError(
                    f"the registry at {self._uri} refused zoo ({reason}): set "
                    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account "
                    "it knows (see registry/README.md)"
                ) from None

        return call


def refused(exc: BaseException) -> str | None:
    text = str(exc)
    if "error code 401" in text or "UNAUTHENTICATED" in getattr(exc, "error_code", ""):
        return "not authenticated"
    if "error code 403" in text or "PERMISSION_DENIED" in getattr(exc, "error_code", ""):
        return "permission denied"
    return None
