"""Serving a registered export with MLflow's own server: images in over HTTP, classes out.

The real ``mlflow models serve`` runs as a subprocess on loopback against the test's
store; real image files are posted (base64 bytes and paths) and the answer must be
``zoo predict``'s classes and probabilities. The pyfunc is also loaded in-process with
plain ``mlflow.pyfunc.load_model`` (fast), and ``mlflow.onnx.load_model`` still gives the
graph of the same version.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn
import torch
from PIL import Image

from zoo.catalog import provider_for
from zoo.cli import run
from zoo.data.preprocess import Preprocessing
from zoo.refs import parse_ref

PHOTOS = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))
CLASSES = ["cat", "dog", "fish"]
SIZE = (3, 64, 64)


def _images(folder: Path) -> list[Path]:
    """scikit-learn's two photos, and clip-art modes: RGBA with transparency, palette."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for photo in PHOTOS:
        files.append(Path(shutil.copy(photo, folder / photo.name)))
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (90, 130, 4), dtype=np.uint8)
    rgba[:40, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    pal = Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)).convert("P")
    pal.save(folder / "palette.png", transparency=0)
    return sorted([*files, folder / "rgba.png", folder / "palette.png"])


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A registered derivative, its ONNX export (models:/tiny.onnx/1) and real images."""
    from zoo.registry import register_derivative

    ref = parse_ref("timm:test_resnet")
    torch.manual_seed(0)
    model = provider_for(ref).build(ref, num_classes=3, pretrained=False).model.eval()
    prep = Preprocessing(input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    register_derivative(
        model,
        name="tiny",
        parent="timm:test_resnet",
        strategy="linear-probe",
        strategy_settings={},
        dataset={"digest": "sha256:0", "classes": CLASSES, "counts": dict.fromkeys(CLASSES, 2)},
        metrics={"val_accuracy": 0.5},
        input_example=torch.randn(2, *SIZE),
        preprocessing=prep.to_dict(),
        class_names=CLASSES,
    )
    assert run(["export", "models:/tiny/1", "--out", str(tmp_path / "out"), "--no-benchmark"]) == 0
    images = _images(tmp_path / "images")
    capsys.readouterr()
    assert (
        run(["predict", "models:/tiny.onnx/1", str(tmp_path / "images"), "--top-k", "3", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    expected = {
        Path(p["path"]).name: {t["class"]: t["probability"] for t in p["top"]}
        for p in doc["predictions"]
    }
    assert len(expected) == len(images) == 4
    return {"images": images, "expected": expected}


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


def test_registered_export_is_a_pyfunc_of_images_and_still_an_onnx_model(served) -> None:
    import mlflow
    import pandas as pd

    from zoo.store import configure

    configure()
    pyfunc = mlflow.pyfunc.load_model("models:/tiny.onnx/1")
    inputs = {c.name for c in pyfunc.metadata.get_input_schema().inputs}
    assert inputs == {"image", "path"}
    files = served["images"]
    frame = pd.DataFrame({"image": [f.read_bytes() for f in files]})
    rows = pyfunc.predict(frame).to_dict("records")
    _same_as_zoo_predict(rows, files, served["expected"])

    bad = pyfunc.predict(pd.DataFrame({"path": [str(files[0]), "/no/such/image.png"]}))
    records = bad.to_dict("records")
    assert records[0]["error"] is None and records[0]["class"] in CLASSES
    assert "cannot read image /no/such/image.png" in records[1]["error"]
    assert records[1]["class"] is None

    proto = mlflow.onnx.load_model("models:/tiny.onnx/1")  # the onnx flavour: the graph
    assert proto.graph.input[0].name == "input"


def test_the_served_version_still_verifies(served, capsys) -> None:
    """One copy of the graph, where the lineage records it: check --verify re-hashes it."""
    assert run(["registry", "check", "--verify", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["problems"] == [] and doc["altered"] == []
    assert doc["verified"] >= 4  # both versions' weights and lineage.json


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _wait_for_ping(proc: subprocess.Popen[bytes], url: str, log: Path, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow models serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(
        f"mlflow models serve did not answer /ping in {limit_s:.0f} s:\n{log.read_text()[-3000:]}"
    )


@pytest.mark.slow
def test_mlflow_models_serve_answers_images_over_http_as_zoo_predict_does(
    served, tmp_path: Path
) -> None:
    from zoo.store import configure, tracking_uri

    configure()
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(), "ZOO_PROVIDER": "cpu"}
    mlflow_cli = [sys.executable, "-m", "mlflow"]
    command = [*mlflow_cli, "models", "serve", "-m", "models:/tiny.onnx/1"]
    command += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1", "--workers", "1"]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_ping(proc, url, log, limit_s=180)
        files = served["images"]
        encoded = [base64.b64encode(f.read_bytes()).decode("ascii") for f in files]
        status, answer = _post(
            f"{url}/invocations",
            {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}},
        )
        assert status == 200, answer
        _same_as_zoo_predict(answer["predictions"], files, served["expected"])

        status, answer = _post(
            f"{url}/invocations", {"dataframe_records": [{"path": str(f)} for f in files]}
        )
        assert status == 200, answer
        _same_as_zoo_predict(answer["predictions"], files, served["expected"])
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    assert proc.poll() is not None
