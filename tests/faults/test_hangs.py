"""Inputs that would block forever or never end: FIFOs, devices, sockets. Refused before
they are opened (a FIFO with no writer blocks open() itself)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from faults.helpers import expect_error, run_zoo


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "weights.safetensors"
    os.mkfifo(path)
    return path


def _socket(tmp_path: Path) -> Path:
    path = tmp_path / "weights.pt"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()
    return path


@pytest.mark.parametrize(
    ("make", "word"),
    [(_fifo, "FIFO"), (lambda _p: Path("/dev/zero"), "device"), (_socket, "socket")],
    ids=["fifo", "dev-zero", "unix-socket"],
)
def test_import_of_a_non_regular_file_is_refused_without_hanging(
    make: object, word: str, tmp_path: Path
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    proc = run_zoo(
        "import", str(path), "--arch", "timm:test_resnet", "--license", "mit", "--name", "f",
        timeout=120,
    )  # fmt: skip
    expect_error(proc, 2, word, "regular file")
    local = tmp_path / "zoo-home" / "local"
    assert not local.exists() or list(local.iterdir()) == []
