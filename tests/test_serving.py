"""Serving a registered export with MLflow's own server: images in over HTTP, classes out.

The real ``mlflow models serve`` runs as a subprocess on loopback against the test's
store, started as documented and by `zoo serve`; real image files are posted (base64
bytes and paths) and the answer must be ``zoo predict``'s classes and probabilities. The
pyfunc is also loaded in-process with plain ``mlflow.pyfunc.load_model`` (fast), and
``mlflow.onnx.load_model`` still gives the graph of the same version. `zoo serve` stops
with every process of its server on SIGTERM, and says in one line why a server that
dies did (tests/test_quiet.py holds it to zoo's own lines on a terminal, with Ctrl-C).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.registry_backends import free_port, port_taken
from tests.serving_setup import (
    CLASSES,
    MODEL_URI,
    group_members,
    images,
    post,
    register_tiny,
    register_tiny_export,
    serve,
    server_group,
)
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

    from zoo.registry.store import configure

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
    from zoo.registry.store import configure, tracking_uri

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


# ------------------------------------------------------------------------ zoo serve


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_zoo_serve_names_what_to_run_when_there_is_nothing_to_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the PyTorch version is registered: every way of naming it says to export it
    first (exit 3); an unknown name is exit 3, a folder exit 2, a busy port exit 2."""
    register_tiny()
    port = str(free_port())
    assert run(["serve", "tiny", "--port", port]) == 3
    assert _error_line(capsys).endswith(
        "models:/tiny/1 has no ONNX export to serve: run `zoo export tiny` first"
    )
    assert run(["serve", "models:/tiny/1", "--port", port]) == 3
    assert "run `zoo export models:/tiny/1` first" in _error_line(capsys)
    assert run(["serve", "tiny.onnx", "--port", port]) == 3
    assert _error_line(capsys).endswith(
        "tiny has no ONNX export registered as tiny.onnx: run `zoo export tiny` first"
    )
    assert run(["serve", "no-such-model", "--port", port]) == 3
    assert "no registered model named 'no-such-model'" in _error_line(capsys)
    assert run(["serve", str(tmp_path), "--port", port]) == 2
    assert "is a file or folder: zoo serve serves a registered export" in _error_line(capsys)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = str(busy.getsockname()[1])
        assert run(["serve", "tiny", "--port", taken]) == 2
        assert f"port {taken} on 127.0.0.1 is in use" in _error_line(capsys)


def test_zoo_serve_and_zoo_registry_serve_say_which_is_which(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "This is not `zoo registry serve`, the team's tracking server." in text
    assert run(["registry", "serve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "not `zoo serve`, which serves one model's predictions over HTTP" in text


def test_a_dead_server_is_reported_by_its_first_error_not_its_wrappers(tmp_path: Path) -> None:
    """The line `zoo serve` and `zoo ui` quote from the server's log: the cause (an
    exception ending the first traceback, with its chained causes; a line logged at
    ERROR), not the traceback of MLflow's CLI that ran the server."""
    from zoo.registry.supervise import first_error

    log = tmp_path / "server.log"
    log.write_text(
        "/x/data_validation.py:187: UserWarning: \x1b[33mAdd type hints\x1b[0m\n"
        "  color_warning(\n"
        "Traceback (most recent call last):\n"
        '  File "/x/onnxruntime.py", line 1, in load\n'
        "onnxruntime.InvalidProtobuf: Protobuf parsing failed.\n"
        "\n"
        "The above exception was the direct cause of the following exception:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "/x/zoo_onnx/serving.py", line 2, in load_context\n'
        "zoo.contract.errors.DataError: ONNX Runtime cannot load model.onnx: "
        "Protobuf parsing failed.\n"
        "Traceback (most recent call last):\n"
        '  File "/x/mlflow/pyfunc/backend.py", line 326, in serve\n'
        "Exception: Command 'uvicorn ...' returned non zero return code. Return code = 1\n"
    )
    assert first_error(log) == (
        "zoo.contract.errors.DataError: ONNX Runtime cannot load model.onnx: "
        "Protobuf parsing failed."
    )
    log.write_text(
        "2026/12/05 18:02:00 \x1b[31mERROR\x1b[0m: [Errno 98] address already in use\n"
        "Traceback (most recent call last):\n"
        '  File "/x/mlflow/pyfunc/backend.py", line 326, in serve\n'
        "Exception: Command 'uvicorn ...' returned non zero return code. Return code = 1\n"
    )
    assert first_error(log) == "2026/12/05 18:02:00 ERROR: [Errno 98] address already in use"
    log.write_text("starting\nstopped by the operator\n")
    assert first_error(log) == "stopped by the operator"


def _serve_on_a_free_port(
    args: list[str], env: dict[str, str], log: Path, tries: int = 3
) -> tuple[subprocess.Popen[bytes], int]:
    """`zoo serve ARGS --port P`, once it says it serves. A port free when chosen may be
    taken before zoo binds it (zoo then refuses it in one line): a fresh port, ``tries``
    times in all."""
    for attempt in range(tries):
        port = free_port()
        command = [sys.executable, "-m", "zoo", "serve", *args, "--port", str(port)]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        ready, deadline = f"on http://127.0.0.1:{port}/invocations", time.monotonic() + 600
        while ready not in (said := log.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                if port_taken(said) and attempt + 1 < tries:
                    break
                pytest.fail(f"no {ready!r} from zoo serve:\n{said}")
            time.sleep(0.5)
        else:
            return proc, port
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_zoo_serve_answers_as_zoo_predict_and_stops_with_its_workers_on_sigterm(
    served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`zoo serve tiny` as a user runs it, no MLFLOW_TRACKING_URI set: it serves the
    newest export from the store `zoo registry where` names, with 2 workers and a root
    for path rows; its answers are zoo predict's. SIGTERM to zoo stops every process of
    the server's group. Then the export's file is damaged: the next `zoo serve` exits 1
    with one line quoting the server's cause."""
    files = served["images"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = tmp_path / "zoo-serve.log"
    args = ["tiny", "--workers", "2", "--provider", "cpu", "--root", str(files[0].parent)]
    proc, port = _serve_on_a_free_port(args, env, log)
    try:
        group = server_group(proc.pid)
        assert len(group_members(group)) >= 4  # mlflow's CLI, uvicorn, its 2 workers
        url = f"http://127.0.0.1:{port}/invocations"
        encoded = [base64.b64encode(f.read_bytes()).decode("ascii") for f in files]
        status, answer = post(
            url, {"dataframe_split": {"columns": ["image"], "data": [[e] for e in encoded]}}
        )
        assert status == 200, answer
        _same_as_zoo_predict(answer["predictions"], files, served["expected"])
        status, answer = post(url, {"dataframe_records": [{"path": f.name} for f in files]})
        assert status == 200, answer
        _same_as_zoo_predict(answer["predictions"], files, served["expected"])
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert group_members(group) == [], "processes of the model server outlived SIGTERM"
    said = log.read_text().splitlines()
    assert said[-1] == "zoo: stopped the model server", said
    assert said[1] == (
        f"zoo: serving tiny.onnx v1 (the newest ONNX export of models:/tiny/1) on "
        f"http://127.0.0.1:{port}/invocations"
    )

    from zoo.disk.paths import home

    (graph,) = (home() / "mlflow" / "artifacts").rglob("model.onnx")
    graph.write_bytes(b"not an onnx graph")
    capsys.readouterr()
    assert run(["serve", "tiny.onnx", "--port", str(free_port())]) == 1
    error = _error_line(capsys)
    assert error.startswith(
        "zoo: error: the model server stopped before it answered (exit 1): "
        "zoo.contract.errors.DataError: ONNX Runtime cannot load"
    ), error
