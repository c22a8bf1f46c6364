"""The team server (a real `mlflow server --app-name basic-auth`, configured by zoo):
a request with an untrusted Host header is refused (DNS rebinding), a request without
credentials is refused, and zoo without credentials says so in one line."""

from __future__ import annotations

import http.client
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_backends import free_port, stop_group, wait_http

from faults.helpers import expect_error, run_zoo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    from zoo.registry.server import ServerConfig, server_command

    root = tmp_path_factory.mktemp("team")
    port = free_port()
    cmd, env = server_command(
        ServerConfig(
            backend_store_uri=f"sqlite:///{root / 'server.db'}",
            artifacts_destination=str(root / "artifacts"),
            port=port,
            basic_auth=True,
            auth_dir=str(root / "auth"),
            allowed_hosts=("registry.test",),
        )
    )
    log = root / "server.log"
    proc = subprocess.Popen(
        cmd,
        stdout=open(log, "w"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,  # its workers stop with it (stop_group)
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, 240, log)
        yield port
    finally:
        stop_group(proc)


def _get(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/2.0/mlflow/experiments/search?max_results=1", headers={"Host": host})
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.mark.slow
def test_untrusted_host_header_is_refused(server: int) -> None:
    assert _get(server, "evil.example") in (400, 403)
    assert _get(server, f"evil.example:{server}") in (400, 403)
    assert _get(server, "registry.test") == 401  # trusted host, but no credentials


@pytest.mark.slow
def test_zoo_without_credentials_is_one_line(server: int, tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{server}"}
    for args in (["registry", "list"], ["registry", "show", "models:/x/1"]):
        proc = run_zoo(*args, env=env, timeout=300)
        expect_error(proc, (2, 3, 4), "MLFLOW_TRACKING_USERNAME")
