"""Registering under stress, on both backends: 8 processes at once from an empty zoo home,
and processes SIGKILLed mid-upload or between upload and version creation.

Each registration runs in its own process (tests/registry_worker.py); the invariant scan
``zoo.registry.check`` must then find no version pointing at missing artifacts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from registry_backends import (  # noqa: F401 - fixtures
    Backend,
    pg_server_fixture,
    run_worker,
    unique_name,
)

from zoo import registry

WORKERS = 8


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    """An EMPTY zoo home per test (the embedded store does not exist yet), or the server."""
    home = tmp_path / "empty-zoo-home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    if request.param == "sqlite":
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
        return Backend("sqlite", None, home)
    server = request.getfixturevalue("pg_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    return Backend("postgres", server.uri, home)


@pytest.mark.slow
def test_eight_processes_register_at_once_from_an_empty_home(fresh_backend: Backend) -> None:
    assert not (fresh_backend.home / "mlflow").exists()
    name = unique_name("concurrent")
    # Eight processes reach one single-worker server within a second (tests/prefork.py
    # starts them without their imports in between): on a loaded machine one of them may
    # wait past zoo's 10 s default for an answer. What this test checks is the versions
    # they make, not how fast a server answers: a generous ZOO_STORE_TIMEOUT.
    slow_ok = {"ZOO_STORE_TIMEOUT": "300"}
    procs = [run_worker("register", name, env=slow_ok, wait=False) for _ in range(WORKERS)]
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        outputs.append(out)
        assert proc.returncode == 0, out[-3000:]
    printed = sorted(
        int(line.split()[1])
        for o in outputs
        for line in o.splitlines()
        if line.startswith("VERSION ")
    )
    assert printed == list(range(1, WORKERS + 1))
    versions = registry.list_versions(name)
    assert sorted(v.version for v in versions) == list(range(1, WORKERS + 1))
    report = registry.check()
    assert report.ok, report.problems
    assert not [o for o in report.orphans]
    if fresh_backend.name == "sqlite":
        assert not Path("mlruns").exists()  # artifacts never land in the current folder


def _kill_at(mode: str, name: str, tmp_path: Path) -> str:
    """Start a registration, SIGKILL it at the pause point; return its output."""
    sentinel = tmp_path / f"{mode}.paused"
    proc = run_worker(mode, name, str(sentinel), wait=False)
    deadline = time.monotonic() + 300
    while not sentinel.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"worker exited with {proc.returncode} before pausing: {out[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("worker never reached its pause point")
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return proc.stdout.read() if proc.stdout else ""


@pytest.mark.slow
def test_killed_registrations_leave_no_version_on_missing_artifacts(
    fresh_backend: Backend, tmp_path: Path
) -> None:
    name = unique_name("killed")
    for mode in ("pause-upload", "pause-before-version"):
        _kill_at(mode, name, tmp_path)
        assert registry.list_versions(name) == []  # nothing visible from a dead process
        report = registry.check()
        assert report.ok, report.problems
    # both dead registrations are listed as unfinished, and cleaning removes them
    assert len(registry.check().orphans) >= 2
    cleaned = registry.check(clean=True)
    assert len(cleaned.cleaned) >= 2 and cleaned.ok
    assert registry.check().orphans == []
    # re-running succeeds: the next registration is version 1
    proc = run_worker("register", name)
    out = proc.stdout.read() if proc.stdout else ""
    assert proc.returncode == 0, out[-3000:]
    (v,) = registry.list_versions(name)
    assert v.version == 1
    report = registry.check()
    assert report.ok and report.versions >= 1, report.problems


def test_check_finds_a_version_whose_artifacts_were_removed_behind_zoos_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The scan is not vacuous: remove a version's weights file and it reports (exit 4)."""
    import json
    from urllib.parse import unquote, urlparse

    from zoo.cli import run
    from zoo.registry.read import artifact_uri

    proc = run_worker("register", "scanned")
    assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""
    assert run(["registry", "check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    v = registry.get_version("models:/scanned/1")
    weights = Path(unquote(urlparse(artifact_uri(v, "weights/model.safetensors")).path))
    assert weights.is_file()
    weights.unlink()
    report = registry.check()
    assert not report.ok and "models:/scanned/1" in report.problems[0]
    assert "weights/model.safetensors" in report.problems[0]
    assert run(["registry", "check"]) == 4
    assert "missing artifacts" in capsys.readouterr().err
