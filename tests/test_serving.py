"""Serving a registered export with MLflow's own server: images in over HTTP, classes out.

The real ``mlflow models serve`` runs as a subprocess on loopback against the test's
store; real image files are posted (base64 bytes and paths) and the answer must be
``zoo predict``'s classes and probabilities. The pyfunc is also loaded in-process with
plain ``mlflow.pyfunc.load_model`` (fast), and ``mlflow.onnx.load_model`` still gives the
graph of the same version.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.serving_setup import CLASSES, MODEL_URI, images, post, register_tiny_export, serve
from zoo.cli import run


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A registered derivative, its ONNX export (models:/tiny.onnx/1) and real images."""
    register_tiny_export(tmp_path / "out")
    files = images(tmp_path / "images")
    capsys.readouterr()
    assert run(["predict", MODEL_URI, str(tmp_path / "images"), "--top-k", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected = {
        Path(p["path"]).name: {t["class"]: t["probability"] for t in p["top"]}
        for p in doc["predictions"]
    }
    assert len(expected) == len(files) == 4
    return {"images": files, "expected": expected}


def _same_as_zoo_predict(rows: list[dict[str, Any]], files: list[Path], expected: dict) -> None:
    assert len(rows) == len(files)
    for row, path in zip(rows, files, strict=True):
        want = expected[path.name]
        assert row["error"] is None
        assert row["class"] == max(want, key=want.get)
        assert set(row["probabilities"]) == set(CLASSES)
        for name, probability in want.items():
            assert abs(row["probabilities"][name] - probability) <= 1e-4
        assert abs(row["probability"] - want[row["class"]]) <= 1e-4


def test_registered_export_is_a_pyfunc_of_images_and_still_an_onnx_model(
    served, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import pandas as pd

    from zoo.store import configure

    configure()
    files = served["images"]
    monkeypatch.setenv("ZOO_SERVE_ROOT", str(files[0].parent))  # read when the model loads
    pyfunc = mlflow.pyfunc.load_model(MODEL_URI)
    inputs = {c.name for c in pyfunc.metadata.get_input_schema().inputs}
    assert inputs == {"image", "path"}
    frame = pd.DataFrame({"image": [f.read_bytes() for f in files]})
    rows = pyfunc.predict(frame).to_dict("records")
    _same_as_zoo_predict(rows, files, served["expected"])

    (files[0].parent / "notes.txt").write_text("not an image")
    mixed = pyfunc.predict(pd.DataFrame({"path": [str(files[0]), "notes.txt"]}))
    records = mixed.to_dict("records")
    assert records[0]["error"] is None and records[0]["class"] in CLASSES
    assert records[1]["error"] == "cannot read image notes.txt: not an image Pillow can read"
    assert records[1]["class"] is None
    with pytest.raises(mlflow.exceptions.MlflowException, match="not a file under ZOO_SERVE_ROOT"):
        pyfunc.predict(pd.DataFrame({"path": [str(files[0]), "/no/such/image.png"]}))

    proto = mlflow.onnx.load_model(MODEL_URI)  # the onnx flavour: the graph
    assert proto.graph.input[0].name == "input"


def test_the_served_version_still_verifies(served, capsys) -> None:
    """One copy of the graph, where the lineage records it: check --verify re-hashes it."""
    assert run(["registry", "check", "--verify", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["problems"] == [] and doc["altered"] == []
    assert doc["verified"] >= 4  # both versions' weights and lineage.json


@pytest.mark.slow
def test_mlflow_models_serve_answers_images_over_http_as_zoo_predict_does(
    served, tmp_path: Path
) -> None:
    from zoo.store import configure, tracking_uri

    configure()
    files = served["images"]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri(),
        "MLFLOW_REGISTRY_URI": tracking_uri(),
        "ZOO_PROVIDER": "cpu",
        "ZOO_SERVE_ROOT": str(files[0].parent),
    }
    server = serve(MODEL_URI, env, tmp_path / "serve.log")
    try:
        encoded = [base64.b64encode(f.read_bytes()).decode("ascii") for f in files]
        status, answer = post(
            f"{server.url}/invocations",
            {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}},
        )
        assert status == 200, answer
        _same_as_zoo_predict(answer["predictions"], files, served["expected"])

        status, answer = post(
            f"{server.url}/invocations", {"dataframe_records": [{"path": str(f)} for f in files]}
        )
        assert status == 200, answer
        _same_as_zoo_predict(answer["predictions"], files, served["expected"])
    finally:
        server.stop()
    assert server.proc.poll() is not None
