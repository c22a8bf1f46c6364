"""Corrupt safetensors and non-finite weights: `zoo import` refuses each in one line,
nothing lands in local/ (exit 2 for a file that does not parse, 4 for NaN/Inf)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from faults.helpers import expect_error_in_process


def _raw(header: dict | bytes, body: bytes = b"") -> bytes:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + body


def _valid() -> bytes:
    from safetensors.torch import save

    return save({"a": torch.ones(4), "b": torch.ones(4)})


CORRUPT: dict[str, Callable[[], bytes]] = {
    # a length field of 2**62: must not allocate it
    "huge-header-length": lambda: struct.pack("<Q", 2**62) + b'{"a":1}',
    "garbage-header": lambda: _raw(b"{not json at all" + b"\xff" * 40),
    "header-not-an-object": lambda: _raw(b'["a", "b"]  '),
    "overlapping-offsets": lambda: _raw(
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
        },
        b"\0" * 24,
    ),
    "offsets-past-the-end": lambda: _raw(
        {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4096]}}, b"\0" * 16
    ),
    "shape-disagrees-with-offsets": lambda: _raw(
        {"a": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 16]}}, b"\0" * 16
    ),
    "truncated": lambda: _valid()[:-7],
    "empty": lambda: b"",
}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_corrupt_safetensors_is_one_line_exit_2(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(CORRUPT[kind]())
    argv = ["import", str(ckpt), "--arch", "timm:test_resnet", "--license", "mit", "--name", "c"]
    expect_error_in_process(argv, capsys, 2, str(ckpt))
    local = Path(os.environ["ZOO_HOME"]) / "local"
    assert not local.exists() or [p.name for p in local.iterdir()] == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("fmt", ["safetensors", "zip"])
def test_checkpoint_with_non_finite_weights_is_refused(
    value: float, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import timm

    model = timm.create_model("test_resnet", pretrained=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["layer1.0.conv1.weight"].view(-1)[3] = value
    ckpt = tmp_path / f"model.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, ckpt)
    else:
        torch.save(state, ckpt)
    argv = ["import", str(ckpt), "--arch", "timm:test_resnet", "--license", "mit", "--name", "n"]
    expect_error_in_process(argv, capsys, 4, "NaN or infinite", "layer1.0.conv1.weight")
    assert not (Path(os.environ["ZOO_HOME"]) / "local" / "n").exists()
