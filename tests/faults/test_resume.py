"""Resume trusts nothing it reads back: a truncated state.pt, random bytes, or a valid
torch file that is not a zoo checkpoint make the re-run stop in one line naming the file
and --restart (exit 2), never "unexpected"; and --restart then starts over cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_engine_resume import RECIPE, _env, _run_until

from faults.helpers import expect_error, registered

NAME = "resumed"


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Path]:
    """A 2-epoch run SIGKILLed once epoch 2 started: (home, command, state.pt)."""
    from finetune_helpers import make_images

    root = tmp_path_factory.mktemp("resume")
    home = root / "zoo-home"
    data = make_images(root / "data", classes=2, per_class=8, size=(40, 40))
    config = root / "recipe.yaml"
    config.write_text(RECIPE, encoding="utf-8")
    cmd = [
        sys.executable, "-m", "zoo", "finetune", "timm:test_resnet", str(data),
        "--strategy", "full", "--epochs", "2", "--random-init", "--name", NAME,
        "--config", str(config),
    ]  # fmt: skip
    code, err = _run_until(cmd, _env(home), "epoch 2/2", signal.SIGKILL)
    assert code == -signal.SIGKILL, err[-3000:]
    (state,) = [p for p in home.glob("runs/*/state.pt") if not (p.parent / "result.json").exists()]
    return home, cmd, state


def _truncate(state: Path) -> None:
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def _random(state: Path) -> None:
    state.write_bytes(os.urandom(4096))


def _foreign(state: Path) -> None:
    torch.save({"epoch": 1, "weights": torch.zeros(3)}, state)  # loads, but not ours


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(_truncate, id="truncated"),
        pytest.param(_random, id="random-bytes"),
        pytest.param(_foreign, id="foreign-torch-file"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_it_and_restart(
    corrupt: object,
    killed_run: tuple[Path, list[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, cmd, state = killed_run
    monkeypatch.setenv("ZOO_HOME", str(home))
    original = state.read_bytes()
    corrupt(state)  # type: ignore[operator]
    try:
        proc = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=600)
        expect_error(proc, 2, str(state), "--restart")
        assert registered(NAME) == []
    finally:
        state.write_bytes(original)


@pytest.mark.slow
def test_restart_after_a_damaged_checkpoint_trains_and_registers(
    killed_run: tuple[Path, list[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, cmd, state = killed_run
    monkeypatch.setenv("ZOO_HOME", str(home))
    _truncate(state)
    proc = subprocess.run(
        [*cmd, "--restart"], env=_env(home), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert registered(NAME) == [f"models:/{NAME}/1"]
