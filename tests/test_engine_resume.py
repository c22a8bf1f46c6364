"""Checkpoints: SIGKILL then the same command resumes bit-exactly; Ctrl-C saves and exits
130; a NaN loss stops the run without registering anything.

The signals are sent while the run waits at a known point (tests/fixtures/engine/
zoo_waiting.py: a strategy whose second phase blocks until a signal comes), so the tests
do not depend on how fast the machine is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prefork
from tests.finetune_helpers import make_images

RECIPE = """\
deterministic: true
precision: fp32
workers: 0
image_size: 64
batch_size: 4
"""


WAITING = Path(__file__).parent / "fixtures" / "engine" / "zoo_waiting.py"


def _cmd(data: Path, config: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(WAITING),
        "finetune",
        "timm:test_resnet",
        str(data),
        "--strategy",
        "waiting",
        "--epochs",
        "5",
        "--random-init",
        "--name",
        name,
        "--config",
        str(config),
        *extra,
    ]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CI="true", ZOO_HOME=str(home), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if prefork.enabled():
        return prefork.run(cmd[1:], env=env, timeout=600)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _run_until(cmd: list[str], env: dict[str, str], needle: str, sig: int) -> tuple[int, str]:
    """Start cmd, send ``sig`` when ``needle`` appears on stderr; (exit code, stderr)."""
    proc = prefork.start(cmd[1:], env=env)  # forked from the preloaded interpreter
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            proc.send_signal(sig)
            break
    _out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(seen) + err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_images(tmp_path / "data", classes=2, per_class=40, size=(72, 80))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE, encoding="utf-8")
    return path


def _final(home: Path, name: str) -> dict[str, torch.Tensor]:
    import json

    for result in (home / "runs").glob("*/result.json"):
        if json.loads(result.read_text())["name"] == name:
            return torch.load(result.parent / "final.pt", weights_only=True)["model"]
    raise AssertionError(f"no finished run named {name}")


def test_sigkill_after_epoch_2_then_same_command_resumes_bit_exactly(
    data: Path, config: Path, zoo_home: Path
) -> None:
    env = _env(zoo_home)
    clean = _run(_cmd(data, config, "straight"), env)
    assert clean.returncode == 0, clean.stderr

    code, err = _run_until(
        _cmd(data, config, "killed", "--wait"), env, "waiting for a signal", signal.SIGKILL
    )
    assert code == -signal.SIGKILL, err
    states = [
        p for p in (zoo_home / "runs").glob("*/state.pt") if not (p.parent / "result.json").exists()
    ]
    assert len(states) == 1
    assert torch.load(states[0], weights_only=True)["completed"] == 2

    again = _run(_cmd(data, config, "killed"), env)
    assert again.returncode == 0, again.stderr
    assert "resuming from the checkpoint of epoch 2" in again.stderr
    assert "epoch 1/5" not in again.stderr and "epoch 3/5 (second): started" in again.stderr

    straight, resumed = _final(zoo_home, "straight"), _final(zoo_home, "killed")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_ctrl_c_saves_the_last_epoch_and_exits_130(
    data: Path, config: Path, zoo_home: Path
) -> None:
    env = _env(zoo_home)
    code, err = _run_until(
        _cmd(data, config, "interrupted", "--wait"), env, "waiting for a signal", signal.SIGINT
    )
    assert code == 130, err
    assert "the checkpoint of epoch 2 is saved in" in err
    assert "Re-run the same command (or add --resume)" in err
    again = _run(_cmd(data, config, "interrupted", "--resume"), env)
    assert again.returncode == 0, again.stderr
    assert "resuming from the checkpoint of epoch 2" in again.stderr


def test_nan_loss_stops_without_registering(data: Path, config: Path, zoo_home: Path) -> None:
    env = _env(zoo_home)
    proc = _run(_cmd(data, config, "diverged", "--lr", "1e30"), env)
    assert proc.returncode == 1, proc.stderr
    assert "the loss became" in proc.stderr and "nothing was registered" in proc.stderr
    from zoo.registry import has_model

    assert not has_model("diverged")


def test_resume_without_a_checkpoint_is_a_usage_error(
    data: Path, config: Path, zoo_home: Path
) -> None:
    proc = _run(_cmd(data, config, "fresh", "--resume"), _env(zoo_home))
    assert proc.returncode == 2
    assert "no checkpoint of this recipe" in proc.stderr
