"""An SQLite store named by MLFLOW_TRACKING_URI (the way MLflow's docs say to): artifacts
go beside the database, never to ./mlruns of the current folder, and several first runs
at once create it once, under a lock, instead of racing in MLflow's migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from registry_backends import WORKER


def _worker(name: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), "register", name],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sqlite_uri_keeps_artifacts_beside_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "team" / "store.db"
    db.parent.mkdir()
    uri = f"sqlite:///{db}"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = _worker("beside", env, cwd)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert list(cwd.iterdir()) == []  # no ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from zoo import registry
    from zoo.registry.read import artifact_uri

    v = registry.get_version("models:/beside/1")
    weights = Path(unquote(urlparse(artifact_uri(v, "weights/model.safetensors")).path))
    assert weights.is_file()
    assert (db.parent / "store-artifacts") in weights.parents
    monkeypatch.chdir(tmp_path)  # read back from another folder: the location is absolute
    from zoo.registry.read import download_weights

    assert download_weights(v, tmp_path / "dl").is_file()  # and verified against its hash


@pytest.mark.slow
def test_four_first_runs_on_a_fresh_sqlite_uri_all_register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "fresh.db"
    uri = f"sqlite:///{db}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    procs = [_worker("raced", env, tmp_path) for _ in range(4)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
    assert not (tmp_path / "mlruns").exists()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from zoo import registry

    assert sorted(v.version for v in registry.list_versions("raced")) == [1, 2, 3, 4]
