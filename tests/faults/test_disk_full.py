"""Disk full (a file-size limit, RLIMIT_FSIZE, set in the child): one line, nothing kept
-- no local:NAME, no half-made store, no --out folder, no staging folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from finetune_helpers import make_images
from registry_backends import run_worker

from faults.helpers import expect_error, registered, with_limits, zoo_env

LIMIT = 200_000  # bytes: below test_resnet's weights (1.9 MB) and MLflow's schema (~1 MB)
# Above a fresh MLflow store (~0.95 MB, made before training), below a 2-class
# test_resnet checkpoint (~1.5 MB): the disk fills while training writes its checkpoint.
FINETUNE_LIMIT = 1_200_000
TRAIN = ["--random-init", "--epochs", "1", "--image-size", "32", "--batch-size", "4"]


def _zoo_limited(*args: str, limit: int = LIMIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=with_limits(limit),
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import timm
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("ckpt") / "test_resnet.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), path)
    return path


def test_import_on_a_full_disk(checkpoint: Path, zoo_home: Path) -> None:
    args = ["--arch", "timm:test_resnet", "--license", "mit", "--name", "full"]
    proc = _zoo_limited("import", str(checkpoint), *args)
    expect_error(proc, 2, "disk is full", "local:full")
    assert list((zoo_home / "local").iterdir()) == []


def test_store_creation_on_a_full_disk_leaves_no_half_made_store(zoo_home: Path) -> None:
    proc = _zoo_limited("registry", "list")
    expect_error(proc, 2, "disk is full", "mlflow.db")
    assert not (zoo_home / "mlflow" / "mlflow.db").exists()
    assert not (zoo_home / "mlflow" / ".zoo-store-ready").exists()
    again = subprocess.run(
        [sys.executable, "-m", "zoo", "registry", "list", "--json"],
        env=zoo_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_export_on_a_full_disk_leaves_no_out_folder(
    checkpoint: Path, tmp_path: Path, zoo_home: Path
) -> None:
    args = ["--arch", "timm:test_resnet", "--license", "mit", "--name", "base"]
    imported = subprocess.run(
        [sys.executable, "-m", "zoo", "import", str(checkpoint), *args],
        env=zoo_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    out = tmp_path / "exports" / "full"
    proc = _zoo_limited("export", "local:base", "--out", str(out), "--no-benchmark")
    # the ONNX plugin reports the failed write as a refused conversion (exit 4)
    line = expect_error(proc, (2, 4))
    assert "too large" in line.lower() or "disk is full" in line.lower()
    assert list(out.parent.iterdir()) == []  # no --out, no .zoo-export-* staging
    assert registered() == []


def test_finetune_on_a_full_disk_is_one_line_and_registers_nothing(
    zoo_home: Path, tmp_path: Path
) -> None:
    data = make_images(tmp_path / "data", per_class=4)
    args = ["timm:test_resnet", str(data), *TRAIN, "--name", "full"]
    proc = _zoo_limited("finetune", *args, limit=FINETUNE_LIMIT)
    expect_error(proc, 2, "disk is full")  # torch's writer lost the errno (or aborted)
    assert registered() == []


def test_a_store_write_on_a_full_disk_prints_no_mlflow_traceback(zoo_home: Path) -> None:
    made = run_worker("register", "full", env={"ZOO_HOME": str(zoo_home)})
    assert made.returncode == 0, made.stdout.read() if made.stdout else ""
    proc = _zoo_limited("registry", "alias", "full", "1", "prod", limit=4096)
    expect_error(proc, 2, "disk is full", "alias 'prod'")
    assert "ERROR mlflow" not in proc.stderr and "sqlalchemy" not in proc.stderr.lower()
    from zoo.registry import get_version

    assert get_version("models:/full/1").aliases == ()
