"""Paths that try to leave where they belong: CSV manifest rows pointing outside the
dataset, and ONNX external data that escapes the model's folder ('../', an absolute
path, a symlink). Names and references: test_references.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from faults.helpers import expect_error_in_process, registered


def test_csv_rows_pointing_outside_are_read_as_data_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest may name any file (that is what it is for); files that are not images,
    wherever they are, count as unusable, and nothing is written next to them."""
    from finetune_helpers import make_images

    root = make_images(tmp_path / "d", classes=2, per_class=2, size=(32, 32))
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("password")
    rows = ["path,label"]
    rows += [f"{p.relative_to(root)},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    rows += [f"../outside/secret.txt,class{i % 2}" for i in range(3)]
    rows += ["/etc/passwd,class0", "../../../../../../etc/hostname,class1"]
    csv = root / "manifest.csv"
    csv.write_text("\n".join(rows) + "\n")
    argv = ["finetune", "timm:test_resnet", str(csv), "--random-init", "--epochs", "1"]
    expect_error_in_process(argv, capsys, 2, "cannot be used", "secret.txt")
    assert sorted(p.name for p in secret.parent.iterdir()) == ["secret.txt"]
    assert registered() == []


def _onnx_with_external_weights(folder: Path, location: str) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "24")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["x"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("MatMul", ["f", "W"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    sidecar = {
        "format": "onnx",
        "file": "model.onnx",
        "preprocessing": {
            "input_size": [3, 8, 8], "mean": [0, 0, 0], "std": [1, 1, 1],
            "resize": 8, "interpolation": "bilinear", "crop_pct": 1.0,
        },
        "class_names": ["a", "b"],
    }  # fmt: skip
    (folder / "zoo-export.json").write_text(json.dumps(sidecar))
    return folder


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_onnx_external_data_outside_the_model_folder_is_refused(
    how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    folder = tmp_path / "export"
    if how == "dotdot":
        _onnx_with_external_weights(folder, "../secret.bin")
    elif how == "absolute":
        _onnx_with_external_weights(folder, str(secret))
    else:
        _onnx_with_external_weights(folder, "weights.bin")
        os.symlink(secret, folder / "weights.bin")
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    line = expect_error_in_process(["predict", str(folder), str(image)], capsys, (2, 4))
    assert "external data" in line.lower()
