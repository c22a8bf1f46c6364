"""CUDA DDP: one process per GPU under NCCL (a single-GPU host runs one process), no
per-step host synchronisation, the result of the CPU run within tolerance.

Marked `gpu`; skipped where torch sees no CUDA device. Run on a GPU host with
`python -m pytest -m gpu tests/test_distributed_gpu.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.finetune_helpers import make_images

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PROBE = Path(__file__).parent / "fixtures" / "engine" / "ddp" / "sync_probe.py"


def _recipe(data: Path, device: str, gpus: int, val_split: float) -> dict:
    # global, the same on CPU and GPUs; at least 2 images per process and step (test_resnet's
    # last BatchNorm sees 1x1 maps at 32 px, and cannot train on one image)
    batch = 16 if 16 % gpus == 0 else 2 * gpus
    return {
        "ref": "timm:test_resnet",
        "data": str(data),
        "strategy": "full",
        "random_init": True,
        "epochs": 3,
        "lr": 0.003,
        "image_size": 32,
        "batch_size": batch,
        "val_split": val_split,
        "precision": "fp32",
        "workers": 0,
        "device": device,
        "nproc_per_node": gpus if device == "cuda" else 1,
        "name": f"sync-{device}",
    }


def _probe(tmp: Path, recipe: dict, processes: int) -> list[dict]:
    out = tmp / f"out-{recipe['device']}-{Path(recipe['data']).name}"
    out.mkdir()
    spec = out / "recipe.json"
    spec.write_text(json.dumps(recipe))
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        if processes > 1
        else []
    )
    proc = subprocess.run(
        [sys.executable, *launcher, str(PROBE), str(spec), str(out)],
        env=dict(os.environ, CI="true"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def test_one_process_per_gpu_no_per_step_sync_and_the_cpu_result(tmp_path: Path) -> None:
    gpus = torch.cuda.device_count()
    # 24 validation and 96 training images: 6 steps per epoch (batch 16), 3 epochs
    data = make_images(tmp_path / "data", classes=3, per_class=40)
    on_gpus = _probe(tmp_path, _recipe(data, "cuda", gpus, 0.2), gpus)
    on_cpu = _probe(tmp_path, _recipe(data, "cpu", gpus, 0.2), 1)

    # one process per GPU, each on its own device, one job
    assert sorted(r["device"] for r in on_gpus) == [f"cuda:{i}" for i in range(gpus)]
    assert {r["world_size"] for r in on_gpus} == {gpus}
    for rank in on_gpus:
        # no step waits for the host: nothing synchronises between two steps of an epoch
        assert len(rank["between_steps"]) >= 10
        assert rank["between_steps"] == [0] * len(rank["between_steps"]), rank
        assert all(n > 0 for n in rank["per_epoch"])  # the probe does see the epoch's reads
    # the CPU run's result. Tolerance: same samples, seeds and global batch; cuDNN's and
    # oneDNN's kernels (TF32 convolutions by default) and, over several GPUs, BatchNorm
    # statistics per process differ in rounding: 2 of the 24 validation images.
    gpu_acc = on_gpus[0]["metrics"]["val_accuracy"]
    cpu_acc = on_cpu[0]["metrics"]["val_accuracy"]
    assert on_gpus[0]["metrics"]["num_val"] == 24
    assert abs(gpu_acc - cpu_acc) <= 2 / 24 + 1e-9, (gpu_acc, cpu_acc)
    assert cpu_acc >= 0.9  # the task is learnt: the comparison means something
