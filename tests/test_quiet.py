"""What reaches the terminal is zoo's own: no MLflow migration lines, no tqdm bars, no
ONNX Runtime provider warnings, on a fresh zoo home and a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.finetune_helpers import make_images

REPO = Path(__file__).resolve().parents[1]

# Lines other libraries print when left alone (MLflow's alembic migration, its artifact
# progress bars, mlflow.onnx's provider warning on hosts without CUDA).
FOREIGN = (
    "Creating initial MLflow database tables",
    "Updating database tables",
    "Downloading artifacts",
    "Uploading artifacts",
    "CUDAExecutionProvider",
    "INFO mlflow",
    "WARNING mlflow",
    "alembic",
    "it/s]",  # any tqdm bar
)


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    """Run ``python -m zoo ARGS`` with stdout and stderr on one pseudo-terminal, as a
    user's shell would, and return everything written there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=cwd,
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"zoo {' '.join(args)} ran past {timeout:.0f} s")
    finally:
        os.close(master)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


@pytest.mark.slow
def test_finetune_then_export_on_a_fresh_home_print_no_foreign_lines(tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", classes=2, per_class=6, size=(32, 32))
    home = tmp_path / "fresh-home"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_TRACKING_URI"}
    }
    env.update(
        ZOO_HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH", "")]),
        TERM="xterm",
        COLUMNS="120",
    )
    trained = _on_a_terminal(
        ["finetune", "timm:test_resnet", str(data), "--epochs", "1", "--name", "quiet",
         "--random-init", "--image-size", "32"],
        env, tmp_path, timeout=300,
    )  # fmt: skip
    assert "models:/quiet/1" in trained
    exported = _on_a_terminal(
        ["export", "models:/quiet/1", "--out", str(tmp_path / "onnx")], env, tmp_path, 300
    )
    assert "models:/quiet.onnx/1" in exported
    for text, what in ((trained, "zoo finetune"), (exported, "zoo export")):
        found = [line for line in text.splitlines() if any(f in line for f in FOREIGN)]
        assert not found, f"{what} printed foreign lines: {found}"
    assert not (tmp_path / "mlruns").exists()  # nothing in the working folder either
