"""Serving test support, shared by tests/test_serving.py and tests/faults/test_serving_paths.py:
a registered tiny derivative with its ONNX export, real images, and a real
``mlflow models serve`` on loopback (started on a fresh port, again when another process
took the port first; stopped by SIGTERM to its process group)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sklearn
from PIL import Image

from tests.registry_backends import free_port

PHOTOS = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))
CLASSES = ["cat", "dog", "fish"]
SIZE = (3, 64, 64)
MODEL_URI = "models:/tiny.onnx/1"


def images(folder: Path) -> list[Path]:
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


def register_tiny(name: str = "tiny") -> None:
    """models:/NAME/1 (timm's test_resnet, 3 classes, random weights) in the store that
    ZOO_HOME / MLFLOW_TRACKING_URI name now."""
    import torch

    from zoo.catalog.index import provider_for
    from zoo.contract.refs import parse_ref
    from zoo.data.preprocess import Preprocessing
    from zoo.registry import register_derivative

    ref = parse_ref("timm:test_resnet")
    torch.manual_seed(0)
    model = provider_for(ref).build(ref, num_classes=3, pretrained=False).model.eval()
    prep = Preprocessing(input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    register_derivative(
        model,
        name=name,
        parent="timm:test_resnet",
        strategy="linear-probe",
        strategy_settings={},
        dataset={"digest": "sha256:0", "classes": CLASSES, "counts": dict.fromkeys(CLASSES, 2)},
        metrics={"val_accuracy": 0.5},
        input_example=torch.randn(2, *SIZE),
        preprocessing=prep.to_dict(),
        class_names=CLASSES,
    )


def register_tiny_export(out: Path) -> None:
    """models:/tiny/1 and its export models:/tiny.onnx/1 (written to ``out`` too)."""
    from zoo.cli import run

    register_tiny()
    assert run(["export", "models:/tiny/1", "--out", str(out), "--no-benchmark"]) == 0


def post(url: str, body: Any, timeout: float = 60) -> tuple[int, Any]:
    """(status, decoded JSON answer or the error body as text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def ping(url: str, timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM to the server's process group; SIGKILL after ``timeout``."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            return self.proc.wait(timeout=timeout)
        except ProcessLookupError:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
            raise


def serve(
    model_uri: str, env: Mapping[str, str], log: Path, *, limit_s: float = 180, tries: int = 3
) -> Server:
    """A running ``mlflow models serve`` answering /ping. The port is free when chosen but
    may be taken before uvicorn binds it: then another fresh port, ``tries`` times."""
    for attempt in range(tries):
        port = free_port()
        command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri]
        command += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
        command += ["--workers", "1"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and proc.poll() is None and not ping(server.url, 2):
            time.sleep(0.5)
        if proc.poll() is None and ping(server.url, 5):
            return server
        text = log.read_text(errors="replace")
        server.stop()
        if "address already in use" in text.lower() and attempt + 1 < tries:
            continue
        pytest.fail(
            f"mlflow models serve did not answer /ping (exit {proc.returncode}):\n{text[-3000:]}"
        )
    raise AssertionError("unreachable")


def _processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name) of every process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), stat[stat.rfind(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """The running processes of process group ``pgid`` (Linux /proc; zombies, already
    dead, do not count)."""
    return sorted(
        pid
        for pid, fields in _processes()
        if int(fields[2]) == pgid and fields[0] not in {"Z", "X"}
    )


def server_group(zoo_pid: int) -> int:
    """The process group of the server that `zoo serve`/`zoo ui` (``zoo_pid``) started: the
    group of its child, which leads a group of its own."""
    for pid, fields in _processes():
        if int(fields[1]) == zoo_pid:
            assert int(fields[2]) == pid, "the server leads no group of its own"
            return int(fields[2])
    raise AssertionError(f"process {zoo_pid} has no child")
