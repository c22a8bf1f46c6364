"""Registry test support: the two backends (embedded SQLite, a real `mlflow server` on
PostgreSQL) and small helpers. Imported by the tests/test_registry*.py modules.

The PostgreSQL server is started once per test session on a free loopback port against a
fresh database that is dropped at the end. Without PostgreSQL the `postgres` tests skip,
except under CI=true, where they fail: CI must run them (registry/setup-services.sh).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import prefork

PG_ADMIN_URI = os.environ.get("ZOO_TEST_PG_URI", "postgresql://zoo:zoo@127.0.0.1:5432/zoo")
WORKER = Path(__file__).with_name("registry_worker.py")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true"}


def missing_service(what: str) -> None:
    """Fail under CI (the service is part of the suite there), skip elsewhere."""
    message = f"{what}; run `bash registry/setup-services.sh` (as root)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_taken(log_text: str) -> bool:
    """Does a server's log say its port was taken: the OS's EADDRINUSE, or zoo's own
    refusal of a busy port (`zoo serve`, `zoo ui`)?"""
    text = log_text.lower()
    return "address already in use" in text or "errno 98" in text or " is in use: " in text


def start_on_free_port(
    start: Callable[[int], subprocess.Popen[Any]],
    health: Callable[[int], str],
    log: Path,
    timeout: float,
    tries: int = 3,
) -> tuple[subprocess.Popen[Any], int]:
    """A server started by ``start(port)`` answering ``health(port)``. MLflow's servers
    say which port they bound only in their logs, and a port free when chosen may be
    taken before the server binds it: then a fresh port, ``tries`` times in all."""
    for attempt in range(tries):
        port = free_port()
        proc = start(port)
        try:
            wait_http(health(port), proc, timeout, log)
            return proc, port
        except RuntimeError:
            stop_group(proc)
            if not port_taken(log.read_text(errors="replace")) or attempt + 1 == tries:
                raise
    raise AssertionError("unreachable")


def start_auth_server(
    root: Path, allowed_hosts: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[Any], int]:
    """A real ``mlflow server --app-name basic-auth`` as zoo configures it, on an SQLite
    store under ``root`` (its admin password in ``root/auth/admin-password``)."""
    from zoo.registry.server import ServerConfig, server_command

    log = root / "server.log"

    def start(port: int) -> subprocess.Popen[Any]:
        cmd, env = server_command(
            ServerConfig(
                backend_store_uri=f"sqlite:///{root / 'server.db'}",
                artifacts_destination=str(root / "artifacts"),
                port=port,
                basic_auth=True,
                auth_dir=str(root / "auth"),
                allowed_hosts=allowed_hosts,
            )
        )
        return subprocess.Popen(
            cmd,
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,  # its workers stop with it (stop_group)
        )

    return start_on_free_port(start, lambda p: f"http://127.0.0.1:{p}/health", log, 240)


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"{url} not up after {timeout:.0f}s: {log.read_text()[-2000:]}")


def stop_group(proc: subprocess.Popen[Any], grace: float = 120.0) -> None:
    """Stop a server started with ``start_new_session=True`` and every process it started
    (MLflow's web workers and job consumers): SIGTERM to the group, SIGKILL after
    ``grace`` seconds. Generous: a loaded machine may take long to shut down gracefully,
    and how fast it does is not what these tests check."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


@dataclass
class PgServer:
    uri: str
    database: str
    proc: subprocess.Popen[Any]
    artifacts: Path

    def stop(self) -> None:
        stop_group(self.proc)
        _admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URI, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


_SERVER: PgServer | None = None


def start_pg_server(workdir: Path) -> PgServer:
    """One mlflow server on a fresh database for the whole session (startup ~30-50 s)."""
    global _SERVER
    if _SERVER is not None and _SERVER.proc.poll() is None:
        return _SERVER
    try:
        import psycopg  # noqa: F401

        _admin("SELECT 1")
    except Exception as exc:
        missing_service(f"PostgreSQL is not reachable at {PG_ADMIN_URI} ({exc})")
    database = f"zoo_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{database}"')
    db_uri = PG_ADMIN_URI.rsplit("/", 1)[0] + f"/{database}"
    artifacts = workdir / "server-artifacts"
    log = workdir / "mlflow-server.log"
    from zoo.registry.server import ServerConfig, server_command

    def start(port: int) -> subprocess.Popen[Any]:
        config = ServerConfig(
            backend_store_uri=db_uri,
            artifacts_destination=str(artifacts),
            port=port,
            allowed_hosts=("registry.test",),
        )
        cmd, env = server_command(config)
        return subprocess.Popen(
            cmd,
            stdout=open(log, "w"),  # lives as long as the server
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )

    try:
        proc, port = start_on_free_port(start, lambda p: f"http://127.0.0.1:{p}/health", log, 240)
    except RuntimeError:
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        raise
    server = PgServer(f"http://127.0.0.1:{port}", database, proc, artifacts)
    atexit.register(server.stop)
    _SERVER = server
    return server


@dataclass(frozen=True)
class Backend:
    name: str  # "sqlite" or "postgres"
    uri: str | None  # None: the embedded store under ``home``
    home: Path  # the ZOO_HOME the module's tests share


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_pg_server(tmp_path_factory.mktemp("pg-server"))
    yield server
    server.stop()


@pytest.fixture(
    scope="module",
    name="backend",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    """The registry suite runs once on the embedded store and once on the team server.

    One store per module and backend (an embedded store under its own ZOO_HOME, or the
    session's server), shared by the module's tests; ``use_backend`` points each test at it.
    """
    home = tmp_path_factory.mktemp(f"zoo-home-{request.param}")
    if request.param == "sqlite":
        return Backend("sqlite", None, home)
    server = request.getfixturevalue("pg_server")
    return Backend("postgres", server.uri, home)


@pytest.fixture(name="use_backend")
def use_backend_fixture(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Backend:
    monkeypatch.setenv("ZOO_HOME", str(backend.home))
    if backend.uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", backend.uri)
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return backend


@contextlib.contextmanager
def backend_env(backend: Backend) -> Any:
    """``use_backend`` for module-scoped fixtures."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_HOME", str(backend.home))
        if backend.uri:
            mp.setenv("MLFLOW_TRACKING_URI", backend.uri)
        else:
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


def unique_name(prefix: str = "pets") -> str:
    """Model names are unique per test: the PostgreSQL server is shared by the session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_worker(
    *args: str, env: dict[str, str] | None = None, wait: bool = True, timeout: float = 300
) -> Any:
    """``python tests/registry_worker.py ARGS`` (forked from the preloaded interpreter of
    tests/prefork.py: 8 of them at once would spend most of their time importing torch
    and MLflow); stdout and stderr on one text pipe, as Popen(stderr=STDOUT) gives."""
    full_env = {**os.environ, **(env or {})}
    proc = prefork.start([str(WORKER), *args], env=full_env, stderr_to_stdout=True)
    if wait:
        proc.wait(timeout)
    return proc
