"""What `zoo registry` prints for people: readable rows, right plurals, and where the
store is, so plain MLflow clients find it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.cli import run


def _version(name: str, settings: dict) -> None:
    from zoo.registry.store import client

    mc = client()
    mc.create_registered_model(name)
    record = {
        "format": 1,
        "parent": {"reference": "timm:test_resnet", "kind": "provider"},
        "base": {"reference": "timm:test_resnet", "license": "apache-2.0"},
        "chain": ["timm:test_resnet"],
        "strategy": {"name": "lp-ft", "settings": settings},
        "license": {"id": "apache-2.0", "inherited": True},
    }
    tags = {
        "zoo.lineage": json.dumps(record),
        "zoo.parent": "timm:test_resnet",
        "zoo.base": "timm:test_resnet",
        "zoo.license": "apache-2.0",
    }
    mc.create_model_version(name, "file:///nowhere", tags=tags, await_creation_for=0)


def test_show_renders_strategy_settings_as_rows(capsys: pytest.CaptureFixture[str]) -> None:
    settings = {
        "epochs": 3,
        "plan": {"phases": [{"name": "probe", "lr": 0.01}, {"name": "finetune", "lr": 1e-4}]},
        "augment": False,
    }
    _version("readable", settings)
    capsys.readouterr()
    assert run(["registry", "show", "models:/readable/1"]) == 0
    out = capsys.readouterr().out
    assert "{'" not in out and "[{" not in out  # no Python reprs
    for line in ("epochs: 3", "phases 1:", "name: probe", "phases 2:", "lr: 0.0001", "augment: no"):
        assert line in out, (line, out)


def test_counts_are_singular_for_one(capsys: pytest.CaptureFixture[str]) -> None:
    _version("single", {"epochs": 1})
    capsys.readouterr()
    assert run(["registry", "list"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("\n1 version")
    assert run(["registry", "check"]) == 4  # made without artifacts: one problem
    err = capsys.readouterr().err
    assert "1 version checked, 1 problem\n" in err and "1 version points at missing" in err


def test_where_prints_the_uri_plain_mlflow_clients_use(zoo_home: Path) -> None:
    import os

    _version("found", {})
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    where = subprocess.run(
        [sys.executable, "-m", "zoo", "registry", "where"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert where.returncode == 0, where.stderr
    uri = where.stdout.strip()
    assert uri.startswith("sqlite:///") and str(zoo_home) in uri
    plain = (  # plain MLflow, no zoo code
        "import mlflow; print([m.name for m in mlflow.MlflowClient().search_registered_models()])"
    )
    found = subprocess.run(
        [sys.executable, "-c", plain],
        capture_output=True,
        text=True,
        env={**env, "MLFLOW_TRACKING_URI": uri},
        timeout=120,
    )
    assert found.returncode == 0, found.stderr
    assert "found" in found.stdout
