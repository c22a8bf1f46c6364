"""Writes the zoo home that tests/test_compat_home.py keeps as a fixture: what an earlier
release of zoo leaves on disk (the store, the weights cache, a local import, a registered
fine-tune and its ONNX export), so that a later layout is shown to still read it.

    git worktree add /tmp/zoo-prev <commit of the earlier release>
    PYTHONPATH=/tmp/zoo-prev:/tmp/zoo-prev/plugins python tests/compat/make_home.py

Only the CLI is run (``python -m zoo``), in a fresh home at a fixed path (``HOME_AT``),
which the test then copies elsewhere and moves with ``zoo home move``; the home is
written as tests/fixtures/compat-home.tar.gz with the commit it was written by.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the shared image and weight makers
ARCHIVE = HERE.parent / "fixtures" / "compat-home.tar.gz"
HOME_AT = Path("/tmp/zoo-compat-fixture")  # where the home was written (the test moves it)

COMMANDS = [
    ["import", "{tmp}/tiny.safetensors", "--arch", "timm:test_resnet", "--license", "mit",
     "--name", "tiny"],
    ["finetune", "local:tiny", "{tmp}/data", "--strategy", "linear-probe", "--epochs", "1",
     "--image-size", "32", "--name", "compat"],
    ["export", "models:/compat/1", "--out", "{tmp}/export", "--no-benchmark"],
]  # fmt: skip


# left out: what zoo rebuilds on its own (the run's checkpoints, decoded-image cache)
LEFT_OUT = ("home/runs", "home/data")


def _kept(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if info.name.startswith(LEFT_OUT) else info


def main() -> None:
    from finetune_helpers import make_images
    from golden.record import _weights

    shutil.rmtree(HOME_AT, ignore_errors=True)
    tmp = HOME_AT
    make_images(tmp / "data", classes=3, per_class=8, size=(32, 32))
    _weights(tmp / "tiny.safetensors")
    env = {**os.environ, "ZOO_HOME": f"{tmp}/home", "CI": "true", "NO_COLOR": "1"}
    env |= {"OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("ZOO_TRACKING_URI", None)
    for args in COMMANDS:
        argv = [a.replace("{tmp}", str(tmp)) for a in args]
        subprocess.run([sys.executable, "-m", "zoo", *argv], env=env, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=Path(__import__("zoo").__file__).parent,
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (tmp / "home" / "WRITTEN_BY.json").write_text(
        json.dumps({"commit": commit, "home": f"{tmp}/home"}, indent=1) + "\n"
    )
    with tarfile.open(ARCHIVE, "w:gz") as tar:
        tar.add(tmp / "home", arcname="home", filter=_kept)
        tar.add(tmp / "data", arcname="data")
    print(f"wrote {ARCHIVE} ({ARCHIVE.stat().st_size / 1e6:.1f} MB) from {commit}")


if __name__ == "__main__":
    main()
