"""zoo predict: training preprocessing, provider choice, ONNX Runtime predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sklearn
import timm
import torch
from PIL import Image

from zoo.cli import run
from zoo.contract.errors import DataError, NotFoundError
from zoo.data import ImageSamples, load_dataset
from zoo.data.preprocess import Preprocessing
from zoo.deploy.export import export_model
from zoo.deploy.exported import open_model
from zoo.deploy.images import load_image
from zoo.deploy.predict import predict
from zoo.deploy.source import Source

PHOTOS = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))
CLASSES = ("cat", "dog", "fish")


def _images(folder: Path) -> Path:
    """Real photos plus the modes clip art comes in: RGBA, palette with transparency, L."""
    for cls in ("photos", "drawn"):
        (folder / cls).mkdir(parents=True, exist_ok=True)
    for photo in PHOTOS:
        shutil.copy(photo, folder / "photos" / photo.name)
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (90, 130, 4), dtype=np.uint8)
    rgba[:40, :, 3] = 0  # a transparent band: composited on white
    Image.fromarray(rgba, "RGBA").save(folder / "drawn" / "rgba.png")
    pal = Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)).convert("P")
    pal.info["transparency"] = 0
    pal.save(folder / "drawn" / "palette.png", transparency=0)
    Image.fromarray(rng.integers(0, 256, (40, 300), dtype=np.uint8), "L").save(
        folder / "drawn" / "gray.png"
    )
    return folder


@pytest.mark.parametrize(
    "prep",
    [
        Preprocessing((3, 224, 224), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875),
        Preprocessing((3, 96, 96), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear", 1.0),
        Preprocessing((3, 64, 80), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear", 0.9),
    ],
)
def test_predict_preprocessing_is_exactly_the_training_eval_path(
    tmp_path: Path, prep: Preprocessing
) -> None:
    data = _images(tmp_path / "data")
    dataset = load_dataset(data, resize=prep.resize, interpolation=prep.interpolation, cache=False)
    samples = ImageSamples(dataset, range(len(dataset.samples)), prep, train=False)
    assert len(samples) == 5
    for i in range(len(samples)):
        crop, _, index = samples[i]
        expected = prep.normalize(crop[None])[0].numpy()  # what training evaluates
        got = load_image(dataset.samples[index].path, prep)
        assert got.shape == expected.shape == prep.input_size
        np.testing.assert_array_equal(got, expected)


def test_unreadable_image_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    prep = Preprocessing((3, 32, 32))
    with pytest.raises(DataError, match=r"broken\.png"):
        load_image(bad, prep)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3).eval()
    prep = Preprocessing((3, 64, 64), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.9)
    source = Source("test:resnet", model, prep, class_names=CLASSES, license="mit")
    out = tmp_path_factory.mktemp("export") / "resnet"
    export_model(source.reference, source=source, out=out, benchmark=False)
    return model, out


def test_predict_matches_pytorch_on_the_same_preprocessing(exported, tmp_path: Path) -> None:
    model, out = exported
    data = _images(tmp_path / "data")
    onnx_model = open_model(str(out), provider="cpu")
    result = predict(onnx_model, data, top_k=2, batch_size=2)
    assert result.provider == "CPUExecutionProvider" and not result.notes
    assert len(result.predictions) == 5
    for p in result.predictions:
        x = torch.from_numpy(load_image(p.path, onnx_model.preprocessing))[None]
        with torch.inference_mode():
            probs = model(x).softmax(1)[0]
        assert p.indices[0] == int(probs.argmax())
        assert p.top[0][0] == CLASSES[p.indices[0]]
        assert p.top[0][1] == pytest.approx(float(probs.max()), abs=1e-4)
        assert len(p.top) == 2 and p.top[0][1] >= p.top[1][1]


def test_predict_cli_json_reports_bad_files_and_keeps_going(exported, tmp_path: Path, capsys):
    _, out = exported
    data = _images(tmp_path / "data")
    (data / "drawn" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    code = run(["predict", str(out), str(data), "--json", "--top-k", "1", "--batch-size", "3"])
    captured = capsys.readouterr()
    assert code == 0
    doc = json.loads(captured.out)
    assert doc["kind"] == "predictions" and doc["schema_version"] == 1
    rows = {Path(p["path"]).name: p for p in doc["predictions"]}
    assert len(rows) == 6
    assert rows["corrupt.png"]["error"] and "corrupt.png" in rows["corrupt.png"]["error"]
    assert all(len(r["top"]) == 1 for n, r in rows.items() if n != "corrupt.png")
    assert "skipped" in captured.err and "corrupt.png" in captured.err


def test_predict_with_cuda_on_a_cpu_build_says_so_in_one_line(exported, capsys) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a GPU provider")
    _, out = exported
    assert run(["predict", str(out), str(PHOTOS[0]), "--provider", "cuda"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "CPU" in line]
    assert len(err) == 1 and "onnxruntime-gpu" in err[0]


def test_predict_needs_the_export_sidecar(exported, tmp_path: Path) -> None:
    _, out = exported
    shutil.copy(out / "model.onnx", tmp_path / "bare.onnx")
    with pytest.raises(DataError, match=r"zoo-export\.json"):
        open_model(str(tmp_path / "bare.onnx"))
    with pytest.raises(NotFoundError):
        open_model(str(tmp_path / "missing.onnx"))
