"""The store itself as the fault: an emptied, lost or damaged SQLite database beside its
artifacts, a server that refuses or never answers, a ``file:`` store, weights deleted
behind zoo's back. Each fails in seconds, before any work (no image is read, nothing
trains), in one line naming the store (or the file) and the fix; nothing is re-created
over registered artifacts.

The damaged-store cases run the CLI in a subprocess: zoo checks a store once per process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from finetune_helpers import make_images
from registry_backends import free_port, run_worker

from faults.helpers import expect_error, run_zoo

TRAIN = ["--random-init", "--epochs", "1", "--image-size", "32", "--batch-size", "4"]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One registered version for the module; each test restores what it damages."""
    home = tmp_path_factory.mktemp("health-home")
    proc = run_worker("register", "kept", env={"ZOO_HOME": str(home)})
    assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""
    return home


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("data"), per_class=4)


@pytest.fixture
def home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ZOO_HOME", str(shared_home))
    db = shared_home / "mlflow" / "mlflow.db"
    saved = db.read_bytes()
    try:
        yield shared_home
    finally:
        db.write_bytes(saved)


def _finetune(data: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    """`zoo finetune` expected to fail before reading any image; returns its stderr."""
    proc = run_zoo("finetune", "timm:test_resnet", str(data), *TRAIN, *extra, env=env)
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "checking images" not in proc.stderr, proc.stderr[-2000:]  # refused up front
    return proc.stderr


def test_an_emptied_or_lost_database_beside_artifacts_is_refused_never_recreated(
    home: Path,
) -> None:
    db = home / "mlflow" / "mlflow.db"
    artifacts = home / "mlflow" / "artifacts"
    db.write_bytes(b"")
    for args in (["registry", "list"], ["registry", "show", "kept"]):
        proc = run_zoo(*args)
        expect_error(proc, 4, str(db), "empty", str(artifacts), "backup")
    new = run_worker("register", "into-the-void", env={"ZOO_HOME": str(home)})
    assert new.returncode != 0  # no registration goes into a store made over the old one
    assert db.stat().st_size == 0  # no fresh schema built over it
    db.unlink()
    expect_error(run_zoo("registry", "list", "--json"), 4, str(db), "missing", str(artifacts))
    assert not db.exists()


def test_a_damaged_database_fails_in_seconds_naming_it_and_the_fix(
    home: Path, images: Path
) -> None:
    db = home / "mlflow" / "mlflow.db"
    with open(db, "r+b") as fh:  # pages 3 onwards overwritten: the schema's tables
        fh.seek(8192)
        fh.write(b"\xff" * 20000)
    expect_error(run_zoo("registry", "list"), 4, str(db), "damaged", "backup")
    expect_error(run_zoo("registry", "lineage", "kept"), 4, str(db), "damaged")
    err = _finetune(images, "--name", "on-damaged")
    assert str(db) in err and "damaged" in err, err[-2000:]


def test_a_refusing_server_fails_at_once_naming_it(images: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = run_zoo("registry", "list", env={"MLFLOW_TRACKING_URI": uri}, timeout=90)
    expect_error(proc, 3, uri, "connection refused", "ZOO_STORE_TIMEOUT")
    err = _finetune(images, "--name", "on-refused", env={"MLFLOW_TRACKING_URI": uri})
    assert uri in err and "cannot be reached" in err, err[-2000:]


def test_a_server_that_never_answers_fails_after_zoo_store_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel's backlog), says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        env = {"MLFLOW_TRACKING_URI": uri, "ZOO_STORE_TIMEOUT": "2"}
        proc = run_zoo("registry", "list", env=env, timeout=90)
    expect_error(proc, 3, uri, "timed out", "2 s")


def test_a_server_that_stops_answering_mid_command_fails_in_one_line() -> None:
    """The server answers zoo's first contact (the health check) and then nothing: the
    listing's request times out, reported as the server lost (exit 3), not "unexpected"."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class FirstContactOnly(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            if self.path.startswith("/api/2.0/mlflow/experiments/search"):
                body = json.dumps({"experiments": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:  # every other call: no answer until the test ends
                release.wait(120)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), FirstContactOnly)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        env = {"MLFLOW_TRACKING_URI": uri, "ZOO_STORE_TIMEOUT": "2"}
        proc = run_zoo("registry", "list", env=env, timeout=120)
    finally:
        release.set()
        server.shutdown()
    expect_error(proc, 3, uri, "stopped answering", "timed out", "ZOO_STORE_TIMEOUT")


def test_a_file_store_is_refused_before_the_data_is_read(images: Path, tmp_path: Path) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    err = _finetune(images, "--name", "on-file", env={"MLFLOW_TRACKING_URI": uri})
    proc = run_zoo("registry", "list", env={"MLFLOW_TRACKING_URI": uri})
    line = expect_error(proc, 2, uri, "file store", "sqlite:///")
    assert line in err
    assert not (tmp_path / "mlruns").exists()


def test_weights_deleted_behind_zoos_back_fail_export_fast_naming_the_file(
    home: Path, tmp_path: Path
) -> None:
    from zoo import registry
    from zoo.registry.read import WEIGHTS_FILE, artifact_uri

    v = registry.get_version("models:/kept/1")
    weights = Path(unquote(urlparse(artifact_uri(v, WEIGHTS_FILE)).path))
    saved = weights.read_bytes()
    weights.unlink()
    try:
        proc = run_zoo("export", "models:/kept/1", "--out", str(tmp_path / "out"))
        expect_error(proc, 4, "models:/kept/1", str(weights), "zoo registry check --verify")
        assert not (tmp_path / "out").exists()
    finally:
        weights.write_bytes(saved)


def test_zoo_store_timeout_maps_onto_mlflows_own_variables_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zoo.registry.store_health import apply_http_timeouts

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "")  # undo restores "unset"
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")  # the user's own: kept
    monkeypatch.setenv("ZOO_STORE_TIMEOUT", "4")
    apply_http_timeouts()
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "4"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    env = {"ZOO_STORE_TIMEOUT": "soon", "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    expect_error(run_zoo("registry", "list", env=env), 2, "ZOO_STORE_TIMEOUT", "soon")
