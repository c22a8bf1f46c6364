"""The MLflow servers zoo runs: the team registry, ``zoo ui`` and ``zoo serve``.

The team registry keeps runs and models in PostgreSQL and artifacts under an artifact
root served through the server (clients need no access to the storage). Optional
basic-auth uses MLflow's own ``--app-name basic-auth`` with its own user database.
``zoo ui`` (``mlflow server`` on the embedded store) and ``zoo serve`` (``mlflow models
serve``) run quietly under :func:`zoo.registry.supervise.run_quietly`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from zoo.contract.errors import UsageError

__all__ = [
    "ServerConfig",
    "auth_config",
    "model_server_command",
    "quiet_env",
    "server_command",
    "ui_command",
]


@dataclass(frozen=True)
class ServerConfig:
    backend_store_uri: str  # postgresql://USER:PASSWORD@HOST:PORT/DB (or sqlite:///...)
    artifacts_destination: str  # a folder or object-store URI
    host: str = "127.0.0.1"
    port: int = 5000
    allowed_hosts: tuple[str, ...] = ()  # Host headers accepted (besides localhost)
    basic_auth: bool = False
    auth_dir: str | None = None  # where the basic-auth user database and config live
    workers: int = 1


def _mlflow() -> list[str]:
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    return [exe] if exe else [sys.executable, "-m", "mlflow"]


def auth_config(auth_dir: Path, admin_password: str | None = None) -> Path:
    """Write MLflow's basic-auth config (users in SQLite under ``auth_dir``); return it.

    The admin password comes from ``ZOO_REGISTRY_ADMIN_PASSWORD`` or is generated once and
    kept in ``auth_dir/admin-password`` (mode 600).
    """
    auth_dir.mkdir(parents=True, exist_ok=True)
    pw_file = auth_dir / "admin-password"
    password = admin_password or os.environ.get("ZOO_REGISTRY_ADMIN_PASSWORD")
    if not password:
        if pw_file.exists():
            password = pw_file.read_text(encoding="utf-8").strip()
        else:
            password = secrets.token_urlsafe(18)
            pw_file.write_text(password + "\n", encoding="utf-8")
            pw_file.chmod(0o600)
    ini = auth_dir / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{auth_dir / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
        encoding="utf-8",
    )
    ini.chmod(0o600)
    return ini


def _secret_key(auth_dir: Path) -> str:
    """The CSRF key of the auth app: the environment's, else one kept in ``auth_dir``
    (the same across restarts and across servers sharing the folder)."""
    key = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
    if key:
        return key
    path = auth_dir / "secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def server_command(cfg: ServerConfig) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment for the team registry server."""
    if cfg.host not in {"127.0.0.1", "localhost", "::1"} and not cfg.basic_auth:
        raise UsageError(
            f"serving on {cfg.host} without authentication would let anyone on the network "
            "change the registry: add --basic-auth, or bind to 127.0.0.1 behind a proxy"
        )
    cmd = [
        *_mlflow(),
        "server",
        "--backend-store-uri",
        cfg.backend_store_uri,
        "--artifacts-destination",
        cfg.artifacts_destination,
        "--serve-artifacts",
        "--host",
        cfg.host,
        "--port",
        str(cfg.port),
        "--workers",
        str(cfg.workers),
    ]
    hosts = [*cfg.allowed_hosts]
    if hosts:
        local = [f"{h}:{cfg.port}" for h in ("127.0.0.1", "localhost")] + ["127.0.0.1", "localhost"]
        cmd += ["--allowed-hosts", ",".join(dict.fromkeys([*hosts, *local]))]
    env: dict[str, str] = {}
    if cfg.basic_auth:
        if not cfg.auth_dir:
            raise UsageError("--basic-auth needs a folder for its user database (--auth-dir)")
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config(Path(cfg.auth_dir)))
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = _secret_key(Path(cfg.auth_dir))
        cmd += ["--app-name", "basic-auth"]
    return cmd, env


def ui_command(
    backend_store_uri: str, artifact_root: str, *, host: str = "127.0.0.1", port: int = 5000
) -> list[str]:
    """``mlflow server`` on zoo's embedded store: the same database and artifact folder."""
    return [
        *_mlflow(),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--registry-store-uri",  # named, so MLflow does not announce that it chose it
        backend_store_uri,
        "--default-artifact-root",
        artifact_root,
        "--no-serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def model_server_command(
    model_uri: str, *, host: str = "127.0.0.1", port: int = 5001, workers: int = 1
) -> list[str]:
    """``mlflow models serve`` of a registered model, from the current environment."""
    return [
        *_mlflow(),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
        "--workers",
        str(workers),
    ]


# Python warnings the servers' own imports raise, filtered at their source (module and
# category): Starlette's notice that MLflow's FastAPI app still mounts its WSGI adapter.
_WARNING_FILTERS = (
    "ignore:starlette.middleware.wsgi is deprecated:UserWarning:mlflow.server.fastapi_app",
)


def quiet_env(environ: dict[str, str] | None = None, *, ui: bool = False) -> dict[str, str]:
    """The environment of a server zoo runs for a user: MLflow's and uvicorn's own
    settings for warnings and errors only (no INFO lines, no access log, no artifact
    progress bars), the known import-time warnings filtered, the interpreter's folder
    first on PATH (``mlflow models serve`` runs ``uvicorn`` from PATH: the same
    environment's, even from an unactivated venv). ``ui``: no job-execution consumers
    (MLflow's GenAI jobs; the UI of a model zoo needs none)."""
    env = dict(os.environ if environ is None else environ)
    env.update(
        MLFLOW_LOGGING_LEVEL="WARNING",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        UVICORN_LOG_LEVEL="warning",
        UVICORN_ACCESS_LOG="false",
    )
    if ui:
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    filters = [f for f in env.get("PYTHONWARNINGS", "").split(",") if f]
    env["PYTHONWARNINGS"] = ",".join(dict.fromkeys([*filters, *_WARNING_FILTERS]))
    bin_dir = str(Path(sys.executable).parent)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    env["PATH"] = os.pathsep.join([bin_dir, *[p for p in path if p != bin_dir]])
    return env
