"""The team server (a real `mlflow server --app-name basic-auth`, configured by zoo):
a request with an untrusted Host header is refused (DNS rebinding), a request without
credentials is refused, and zoo without credentials says so in one line."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_backends import start_auth_server, stop_group

from faults.helpers import expect_error, run_zoo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    proc, port = start_auth_server(
        tmp_path_factory.mktemp("team"), allowed_hosts=("registry.test",)
    )
    try:
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
