"""Options that cannot work, or contradict each other: one line, exit 2, before any
data is read or anything is registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faults.helpers import expect_error, expect_error_in_process, registered, zoo_env


@pytest.fixture
def data(tmp_path: Path) -> Path:
    from finetune_helpers import make_images

    return make_images(tmp_path / "data", classes=2, per_class=4, size=(32, 32))


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--lr", "inf"], ["--lr", "finite"]),
        (["--lr", "nan"], ["--lr", "finite"]),
        (["--lr", "-inf"], ["--lr"]),
        (["--lr", "0"], ["--lr"]),
        (["--image-size", "100000"], ["--image-size", "4096"]),
        (["--image-size", "0"], ["--image-size"]),
        (["--name", ""], ["--name", "empty"]),
        (["--name", "   "], ["--name", "empty"]),
        (["--epochs", "0"], ["--epochs"]),
        (["--batch-size", "0"], ["--batch-size"]),
        (["--val-split", "1.5"], ["--val-split"]),
        (["--strategy", "no-such-strategy"], ["no-such-strategy"]),
    ],
    ids=lambda v: "_".join(v) if isinstance(v, list) else None,
)
def test_bad_finetune_option_is_one_line_and_registers_nothing(
    data: Path, extra: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["finetune", "timm:test_resnet", str(data), "--random-init", "--epochs", "1", *extra]
    if "--epochs" in extra:
        argv = ["finetune", "timm:test_resnet", str(data), "--random-init", *extra]
    expect_error_in_process(argv, capsys, (2, 3), *words)
    assert registered() == []


def test_resume_and_restart_together_is_a_usage_error(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["finetune", "timm:test_resnet", str(data), "--random-init", "--epochs", "1"]
    line = expect_error_in_process([*argv, "--resume", "--restart"], capsys, 2, "--resume")
    assert "--restart" in line
    assert registered() == []


def test_a_learning_rate_that_makes_the_loss_nan_registers_nothing(
    tmp_path: Path, zoo_home: Path
) -> None:
    """The issue's command: the weights stay finite but the validation loss is NaN; the
    engine stops (TrainingError, exit 1) and names what happened."""
    from finetune_helpers import make_images

    data = make_images(tmp_path / "nan-data", classes=2, per_class=6, size=(48, 48))
    cmd = [
        sys.executable, "-m", "zoo", "finetune", "timm:test_resnet", str(data),
        "--strategy", "partial", "--epochs", "1", "--image-size", "64", "--lr", "1e30",
        "--random-init", "--name", "diverged",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=zoo_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stderr[-2000:]
    expect_error(proc, 1, "nothing was registered")
    assert registered() == []
