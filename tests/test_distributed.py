"""`--nproc-per-node 2` on CPU: torchrun, gloo, DDP; each process sees half the data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.finetune_helpers import make_images


def _finetune(data: Path, home: Path, name: str, *extra: str) -> dict:
    env = dict(os.environ, CI="true", ZOO_HOME=str(home))
    cmd = [
        sys.executable,
        "-m",
        "zoo",
        "finetune",
        "timm:test_resnet",
        str(data),
        "--strategy",
        "full",
        "--random-init",
        "--epochs",
        "4",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--lr",
        "0.003",
        "--device",
        "cpu",
        "--name",
        name,
        "--json",
        *extra,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_two_processes_split_the_data_and_match_one(tmp_path: Path, zoo_home: Path) -> None:
    data = make_images(tmp_path / "data", classes=3, per_class=40)
    single = _finetune(data, zoo_home, "single")
    double = _finetune(data, zoo_home, "double", "--nproc-per-node", "2")

    assert single["world_size"] == 1
    assert double["world_size"] == 2
    n_train = single["metrics"]["num_train"]
    last_epoch = double["ranks"]  # gathered in the last epoch
    assert sorted(r["rank"] for r in last_epoch) == [0, 1]
    half = -(-int(n_train) // 2)
    for record in last_epoch:
        assert record["seen"] == half  # each process saw half of the training samples
    covered = set(last_epoch[0]["distinct"]) | set(last_epoch[1]["distinct"])
    assert len(covered) == n_train  # and together all of them
    assert abs(single["metrics"]["val_accuracy"] - double["metrics"]["val_accuracy"]) <= 0.02
    assert double["model_uri"] == "models:/double/1"
