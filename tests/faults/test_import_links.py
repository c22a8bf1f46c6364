"""`zoo import` of a path whose symbolic links never reach a file: one line naming the
path (exit 2), nothing imported, instead of "unexpected RuntimeError"."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults.helpers import expect_error_in_process


@pytest.mark.parametrize("link", ["loop.pth", "via/loop.pth"])
def test_a_symlink_loop_given_to_import_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], link: str
) -> None:
    (tmp_path / "loop.pth").symlink_to(tmp_path / "back.pth")
    (tmp_path / "back.pth").symlink_to(tmp_path / "loop.pth")
    (tmp_path / "via").symlink_to(tmp_path)
    path = tmp_path / link
    argv = ["import", str(path), "--arch", "timm:test_resnet", "--license", "mit", "--name", "x"]
    expect_error_in_process(argv, capsys, 2, str(path), "symbolic link loop", "checkpoint file")
    from zoo.weights.local import local_models

    assert local_models() == []
