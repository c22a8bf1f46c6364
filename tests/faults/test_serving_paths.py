"""What a client can make `mlflow models serve` read (issue 21): one real server, started
once with ``ZOO_SERVE_ROOT`` = a folder and a small ``ZOO_SERVE_MAX_BYTES``, is sent what
an attacker would send: devices, FIFOs, files outside the root, a symlink out of it,
oversized and bomb images. Each is refused (HTTP 400) within the request timeout, with the
same text for every path outside the root; the server's memory (summed over its process
tree, sampled all along) stays under 1 GB, it still answers /ping and predicts good
images, and it stops on SIGTERM leaving no process behind.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest

from tests.serving_setup import MODEL_URI, Server, images, ping, post, register_tiny_export, serve

MAX_BYTES = 256 * 1024
GB = 1 << 30
OUTSIDE = "the path is not a file under ZOO_SERVE_ROOT; nothing was read"


def _tree_rss(pid: int) -> int:
    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


class Sampler:
    """The server tree's RSS, every 0.2 s, from start to stop."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.last = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.last = _tree_rss(self.pid)
            self.peak = max(self.peak, self.last)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _bomb_png(side: int = 30000) -> bytes:
    """A 1-bit greyscale PNG of side x side pixels: ~100 KB on disk, 900 megapixels."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    rows = (b"\0" * (1 + (side + 7) // 8)) * 1000
    packer = zlib.compressobj(6)
    idat = b"".join([packer.compress(rows) for _ in range(side // 1000)] + [packer.flush()])
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serving")
    home = tmp / "home"
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.delenv(key, raising=False)
        mp.setenv("ZOO_HOME", str(home))
        mp.setenv("HF_HUB_CACHE", str(tmp / "hf-cache"))
        mp.setenv("HF_HOME", str(tmp / "hf-home"))
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        register_tiny_export(tmp / "out")
        from zoo.registry.store import tracking_uri

        uri = tracking_uri()
    root = tmp / "inbox"
    good = images(root)
    os.mkfifo(root / "pipe.png")
    (root / "folder.png").mkdir()
    (root / "escape.png").symlink_to("/etc/passwd")
    (root / "big.png").write_bytes(good[0].read_bytes() + b"\0" * (MAX_BYTES + 1))
    outside = tmp / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe.png")
    env = {
        **os.environ,
        "ZOO_HOME": str(home),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "ZOO_PROVIDER": "cpu",
        "ZOO_SERVE_ROOT": str(root),
        "ZOO_SERVE_MAX_BYTES": str(MAX_BYTES),
        "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": "60",
    }
    server = serve(MODEL_URI, env, tmp / "serve.log")
    sampler = Sampler(server.proc.pid)
    try:
        yield {
            "server": server,
            "sampler": sampler,
            "root": root,
            "good": good,
            "outside": outside,
            "uri": uri,
            "tmp": tmp,
        }
    finally:
        sampler.stop()
        if server.proc.poll() is None:
            server.stop()


def _invoke(server: Server, rows: list[dict[str, Any]]) -> tuple[int, Any]:
    return post(f"{server.url}/invocations", {"dataframe_records": rows}, timeout=90)


def _refusal(status: int, answer: Any) -> str:
    """The refusal's own line (MLflow puts the request's data before it)."""
    assert status == 400, answer
    doc = json.loads(answer)
    assert doc["error_code"] == "INVALID_PARAMETER_VALUE"
    return str(doc["message"]).split("\nError: ", 1)[1]


def _healthy(served: dict[str, Any]) -> None:
    assert ping(served["server"].url)
    assert served["sampler"].peak < GB, served["sampler"].peak


def test_every_path_outside_the_root_gets_the_same_refusal(served) -> None:
    server, root, outside = served["server"], served["root"], served["outside"]
    # /dev/zero last: before the fix it reads until the host runs out of memory
    paths = [
        "/etc/passwd",
        "/no/such/image.png",
        str(outside),
        str(outside / "pipe.png"),
        str(root / "escape.png"),  # inside the root, pointing out of it
        str(root / ".." / "outside" / "pipe.png"),
        "/dev/zero",
    ]
    texts = set()
    for path in paths:
        start = time.monotonic()
        status, answer = _invoke(server, [{"path": path}])
        texts.add(_refusal(status, answer))
        assert time.monotonic() - start < 90
        assert "root:" not in str(answer)  # nothing of /etc/passwd comes back
        _healthy(served)
    assert texts == {f"row 0: {OUTSIDE}"}


def test_inside_the_root_only_regular_files_within_the_bound(served) -> None:
    server = served["server"]
    status, answer = _invoke(server, [{"path": "pipe.png"}])
    assert _refusal(status, answer) == (
        "row 0: pipe.png under ZOO_SERVE_ROOT is not a regular file; nothing was read"
    )
    status, answer = _invoke(server, [{"path": "folder.png"}])
    assert "folder.png under ZOO_SERVE_ROOT is not a regular file" in _refusal(status, answer)
    status, answer = _invoke(server, [{"path": "big.png"}])
    assert f"is over ZOO_SERVE_MAX_BYTES={MAX_BYTES} bytes" in _refusal(status, answer)
    # one bad row refuses the request: nothing is predicted for the good one either
    good = str(served["good"][0])
    status, answer = _invoke(server, [{"path": good}, {"path": "/etc/passwd"}])
    assert _refusal(status, answer) == f"row 1: {OUTSIDE}"
    _healthy(served)


def test_image_bytes_are_bounded_before_decoding(served) -> None:
    server = served["server"]
    huge = base64.b64encode(os.urandom(4 * MAX_BYTES)).decode("ascii")
    status, answer = _invoke(server, [{"image": huge}])
    assert f"is over ZOO_SERVE_MAX_BYTES={MAX_BYTES} bytes" in _refusal(status, answer)
    bomb = _bomb_png()
    assert len(bomb) < MAX_BYTES
    status, answer = _invoke(server, [{"image": base64.b64encode(bomb).decode("ascii")}])
    assert "more pixels than Pillow's limit" in _refusal(status, answer)
    _healthy(served)


def test_a_request_without_a_known_column_is_a_400_naming_them(served) -> None:
    status, answer = _invoke(served["server"], [{"picture": "x.png"}])
    assert status == 400, answer
    assert "none of the columns image, path" in json.loads(answer)["message"]
    _healthy(served)


def test_good_images_inside_the_root_still_predict(served) -> None:
    server, good = served["server"], served["good"]
    by_path = [{"path": str(good[0])}, {"path": good[1].name}]  # absolute, or under the root
    by_bytes = [{"image": base64.b64encode(good[2].read_bytes()).decode("ascii")}]
    for rows in (by_path, by_bytes):
        status, answer = _invoke(server, rows)
        assert status == 200, answer
        assert [p["error"] for p in answer["predictions"]] == [None] * len(rows)
        assert all(p["class"] in {"cat", "dog", "fish"} for p in answer["predictions"])


def test_path_rows_are_refused_when_the_server_names_no_root(served, monkeypatch) -> None:
    import mlflow
    import pandas as pd

    monkeypatch.setenv("MLFLOW_TRACKING_URI", served["uri"])
    monkeypatch.setenv("ZOO_HOME", str(served["tmp"] / "home"))
    monkeypatch.delenv("ZOO_SERVE_ROOT", raising=False)
    pyfunc = mlflow.pyfunc.load_model(MODEL_URI)
    with pytest.raises(mlflow.exceptions.MlflowException) as caught:
        pyfunc.predict(pd.DataFrame({"path": [str(served["good"][0])]}))
    assert caught.value.get_http_status_code() == 400
    assert caught.value.message == (
        "row 0: 'path' rows are refused: this server names no ZOO_SERVE_ROOT; send the "
        "image's bytes in 'image', or start the server with ZOO_SERVE_ROOT=/srv/inbox"
    )


def test_mixed_load_leaves_memory_stable(served) -> None:
    server, good, sampler = served["server"], served["good"], served["sampler"]
    encoded = base64.b64encode(good[0].read_bytes()).decode("ascii")
    huge = base64.b64encode(os.urandom(2 * MAX_BYTES)).decode("ascii")
    cases: list[tuple[list[dict[str, Any]], int]] = [
        ([{"path": good[1].name}], 200),
        ([{"image": encoded}], 200),
        ([{"path": "/dev/zero"}], 400),
        ([{"path": "pipe.png"}], 400),
        ([{"image": huge}], 400),
        ([{"path": "big.png"}], 400),
        ([{"picture": "x"}], 400),
        ([{"path": good[2].name}, {"path": str(good[3])}], 200),
    ]

    def one(i: int) -> int:
        rows, want = cases[i % len(cases)]
        status, answer = _invoke(server, rows)
        assert status == want, answer
        return status

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(40)))  # warm: every path through the code once
        time.sleep(0.5)  # one more sample of the warm server
        warm = _tree_rss(server.proc.pid)
        statuses = list(pool.map(one, range(200)))
    after = _tree_rss(server.proc.pid)
    assert statuses.count(200) == 75 and statuses.count(400) == 125
    assert after - warm < 200 * 1024 * 1024, (warm, after)  # no growth per request
    _healthy(served)
    assert sampler.peak < GB


def test_the_server_stops_on_sigterm_leaving_no_process(served) -> None:
    server = served["server"]
    tree = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(True)]
    assert len(tree) >= 2  # mlflow's CLI and the uvicorn worker
    served["sampler"].stop()
    assert server.stop(timeout=30) is not None
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert alive == [], [p.pid for p in alive]
