"""A zoo home written by an earlier release still reads (issue 23's compatibility goal).

tests/fixtures/compat-home.tar.gz is the home that tests/compat/make_home.py wrote with
zoo at b70b89d, the layout before the rooms (its WRITTEN_BY.json says so): a local
import (`local:tiny`), the catalogue cache, the SQLite MLflow store with a registered
fine-tune (`compat/1`) and its ONNX export (`compat.onnx/1`). Its run checkpoints and
decoded-image cache are left out (zoo rebuilds them). The home was written at
/tmp/zoo-compat-fixture/home; here it lands elsewhere, as a home copied to a new machine
does, so zoo first refuses it and `zoo home move` (in place) rewrites the store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

import prefork

pytestmark = pytest.mark.slow

ARCHIVE = Path(__file__).parent / "fixtures" / "compat-home.tar.gz"


def _zoo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZOO_HOME": str(home), "CI": "true", "NO_COLOR": "1"}
    env |= {"OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("ZOO_TRACKING_URI", None)
    if prefork.enabled():  # tests/prefork.py: torch and MLflow imported once
        return prefork.run(["-m", "zoo", *args], env=env, timeout=600)
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def _json(home: Path, *args: str) -> Any:
    proc = _zoo(home, *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_home_written_by_the_earlier_layout_still_reads(tmp_path: Path) -> None:
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    home, data = tmp_path / "home", tmp_path / "data"
    written = json.loads((home / "WRITTEN_BY.json").read_text(encoding="utf-8"))
    assert written["commit"].startswith("b70b89d")

    # copied to a new place: refused in one line naming the fix, nothing rewritten yet
    refused = _zoo(home, "registry", "list")
    assert refused.returncode == 2
    assert f"zoo home move {home}" in refused.stderr
    assert "Traceback" not in refused.stderr
    moved = _zoo(home, "home", "move", str(home))
    assert moved.returncode == 0, moved.stderr

    # the local import and the catalogue
    local = _json(home, "list", "--provider", "local")
    assert [m["reference"] for m in local["models"]] == ["local:tiny"]
    assert _json(home, "info", "local:tiny")["model"]["license"] == "mit"

    # the store: both versions, their lineage and the figures recorded then
    versions = {(v["name"], v["version"]) for v in _json(home, "registry", "list")["versions"]}
    assert versions == {("compat", 1), ("compat.onnx", 1)}
    shown = _json(home, "registry", "show", "models:/compat/1")["version"]
    assert shown["license"] == "mit" and shown["lineage"]["strategy"]["name"] == "linear-probe"
    assert [p["reference"] for p in shown["lineage"]["parents"]] == ["local:tiny"]
    lineage = json.dumps(_json(home, "registry", "lineage", "compat"))
    assert "compat.onnx" in lineage and "local:tiny" in lineage

    # the old ONNX artifact still runs, and agrees with the old PyTorch weights
    onnx = _json(home, "predict", "models:/compat.onnx/1", str(data / "class0"))
    torch_ = _json(home, "predict", "models:/compat/1", str(data / "class0"))
    top = [[p["top"][0]["class"] for p in out["predictions"]] for out in (onnx, torch_)]
    assert len(top[0]) == 8 and top[0] == top[1]

    # an old version is a starting point: a child fine-tune names it as its parent
    child = _json(
        home, "finetune", "models:/compat/1", str(data), "--strategy", "linear-probe",
        "--epochs", "1", "--image-size", "32", "--name", "compat-child",
    )  # fmt: skip
    assert child["model_uri"] == "models:/compat-child/1"
    lineage = json.dumps(_json(home, "registry", "lineage", "compat-child"))
    assert "models:/compat/1" in lineage
