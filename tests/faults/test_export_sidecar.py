"""An export folder whose zoo-export.json does not describe its model (copied from
another export, edited by hand): `zoo predict` says so in one line (exit 2) instead of
failing inside ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faults.helpers import expect_error_in_process
from faults.test_traversal import _onnx_with_external_weights


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    folder = _onnx_with_external_weights(tmp_path / "export", "weights.bin")
    (folder / "weights.bin").write_bytes(np.ones(6, np.float32).tobytes())
    return folder


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(path)
    return path


def _edit(folder: Path, **prep: object) -> None:
    path = folder / "zoo-export.json"
    doc = json.loads(path.read_text())
    for key, value in prep.items():
        if key == "class_names":
            doc["class_names"] = value
        else:
            doc["preprocessing"][key] = value
    path.write_text(json.dumps(doc))


def test_a_fitting_sidecar_predicts(
    export_dir: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.cli import run

    assert run(["predict", str(export_dir), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["top"]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ({"input_size": [3, 16, 16]}, ["input_size", "export it again"]),
        ({"input_size": [1, 8, 8]}, ["input_size"]),
        ({"input_size": [3, 8]}, ["input_size"]),
        ({"class_names": ["a", "b", "c"]}, ["classes", "export it again"]),
    ],
    ids=["larger-image", "one-channel", "two-dims", "three-classes-for-two"],
)
def test_a_sidecar_that_does_not_fit_the_model_is_one_line(
    export_dir: Path,
    image: Path,
    edit: dict[str, object],
    words: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _edit(export_dir, **edit)
    expect_error_in_process(["predict", str(export_dir), str(image)], capsys, 2, *words)
