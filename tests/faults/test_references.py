"""Bad references and names: each is one line and exit 2 (or 3 when well-formed but
unknown), never "unexpected" -- including a reference too long to be a file name and a
version number past what MLflow's databases store."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.helpers import expect_error_in_process, registered

LONG = "a" * 300
HUGE_VERSION = "99999999999999999999"  # past SQLite's (and PostgreSQL's) integers


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["info", LONG], ["at most 200 characters"]),
        (["info", f"timm:{LONG}"], ["at most 200 characters"]),
        (["pull", f"local:{LONG}"], ["at most 200 characters"]),
        (["registry", "show", f"models:/{LONG}/1"], ["at most 200 characters"]),
        (["registry", "show", f"models:/pets/{HUGE_VERSION}"], ["past the largest"]),
        (["registry", "show", "models:/pets/2147483648"], ["past the largest"]),
        (["export", f"models:/pets/{HUGE_VERSION}"], ["past the largest"]),
        (["registry", "delete", "--yes", f"models:/pets/{HUGE_VERSION}"], ["past the largest"]),
    ],
    ids=[
        "bare-300",
        "timm-300",
        "local-300",
        "models-name-300",
        "version-past-int64",
        "version-past-int32",
        "export-version-past-int64",
        "delete-version-past-int64",
    ],
)
def test_oversized_reference_is_one_line_exit_2(
    argv: list[str], words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    expect_error_in_process(argv, capsys, 2, *words)
    assert registered() == []


@pytest.mark.parametrize(
    "ref",
    [
        "local:../../etc/passwd",
        "local:/etc/passwd",
        "models:/../secrets/1",
        "hf:../../etc",
        "timm:../resnet50",
        "models:/pets/../../1",
        "models:/pets/0",
        "models:/pets/-1",
        "models:pets/1",
        "resnet50@",
        "",
    ],
)
def test_traversal_and_malformed_references_are_refused(
    ref: str, capsys: pytest.CaptureFixture[str]
) -> None:
    expect_error_in_process(["info", ref], capsys, 2, "reference")


def test_finetune_with_an_oversized_reference_registers_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune_helpers import make_images

    data = make_images(tmp_path / "data", classes=2, per_class=2, size=(32, 32))
    expect_error_in_process(
        ["finetune", f"timm:{LONG}", str(data)], capsys, 2, "at most 200 characters"
    )
    expect_error_in_process(
        ["finetune", f"models:/pets/{HUGE_VERSION}", str(data)], capsys, 2, "past the largest"
    )
    assert registered() == []


@pytest.mark.parametrize(
    "name", ["../escape", "/abs/path", "a/b", "name:with:colons", "a" * 300, ".hidden"]
)
def test_import_names_that_leave_local_are_refused(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import save_file

    ckpt = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(2)}, ckpt)
    argv = ["import", str(ckpt), "--arch", "timm:test_resnet", "--license", "mit", "--name", name]
    expect_error_in_process(argv, capsys, 2, "not a local model name")
    home = tmp_path / "zoo-home"
    assert not (home / "local").exists() or list((home / "local").iterdir()) == []
    assert not (tmp_path / "escape").exists() and not Path("/abs/path").exists()
