"""Malicious pickles in four disguises: `zoo import` refuses each (exit 4, one line naming
--trust-pickle) and the payload never runs."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from test_import import _evil_checkpoint, _Payload

from faults.helpers import expect_error_in_process


def _nested(path: Path, marker: Path) -> None:
    """The payload three containers deep, under a common wrapper key."""
    inner = {"layer": [torch.zeros(2), {"deep": _Payload(str(marker))}]}
    torch.save({"state_dict": inner}, path)


def _zip_renamed_member(path: Path, marker: Path) -> None:
    """A torch zip whose data.pkl is a plain pickle payload (hand-made archive)."""
    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    members[pkl] = pickle.dumps({"w": _Payload(str(marker))}, protocol=2)
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)


DISGUISES = {
    "legacy-pickle.pth": lambda p, m: _evil_checkpoint(p, m, zip_format=False),
    "zip.pt": lambda p, m: _evil_checkpoint(p, m, zip_format=True),
    "nested.pth": _nested,
    "renamed.safetensors": lambda p, m: _evil_checkpoint(p, m, zip_format=True),
    "renamed-legacy.safetensors": lambda p, m: _evil_checkpoint(p, m, zip_format=False),
    "swapped-data-pkl.pt": _zip_renamed_member,
    "no-extension": lambda p, m: _evil_checkpoint(p, m, zip_format=False),
}


@pytest.mark.parametrize("filename", sorted(DISGUISES))
def test_malicious_pickle_is_refused_and_never_runs(
    filename: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / filename
    DISGUISES[filename](ckpt, marker)
    argv = ["import", str(ckpt), "--arch", "timm:test_resnet", "--license", "mit", "--name", "x"]
    expect_error_in_process(argv, capsys, 4, "--trust-pickle")
    assert not marker.exists()
    local = Path(os.environ["ZOO_HOME"]) / "local"
    assert not local.exists() or [p.name for p in local.iterdir()] == []
