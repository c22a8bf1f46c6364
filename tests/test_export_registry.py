"""Exports of registered versions: a version of NAME.onnx with lineage, reports and card.

The key check reads the registered ONNX version back with plain MLflow and plain ONNX
Runtime, no zoo code in between.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from zoo import IntegrityError
from zoo.catalog.index import provider_for
from zoo.cli import run
from zoo.contract.refs import parse_ref
from zoo.data.preprocess import Preprocessing

SIZE = (3, 64, 64)
CLASSES = ["cat", "dog", "fish"]


def _register(name: str = "tiny") -> tuple[nn.Module, object]:
    from zoo.registry import register_derivative

    ref = parse_ref("timm:test_resnet")
    torch.manual_seed(0)
    model = provider_for(ref).build(ref, num_classes=3, pretrained=False).model.eval()
    prep = Preprocessing(input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    version = register_derivative(
        model,
        name=name,
        parent="timm:test_resnet",
        strategy="linear-probe",
        strategy_settings={},
        dataset={"digest": "sha256:0", "classes": CLASSES, "counts": dict.fromkeys(CLASSES, 2)},
        metrics={"val_accuracy": 0.5},
        input_example=torch.randn(2, *SIZE),
        preprocessing=prep.to_dict(),
        class_names=CLASSES,
    )
    return model, version


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One registered model and its export, shared by this module's tests."""
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("zoo-home")
    mp.setenv("ZOO_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    from zoo.contract.plugins import reset_plugin_manager

    reset_plugin_manager()
    model, version = _register()
    out = tmp_path_factory.mktemp("out") / "tiny-onnx"
    code = run(["export", "models:/tiny/1", "--out", str(out), "--json"])
    assert code == 0
    yield {"model": model, "version": version, "out": out, "home": home}
    mp.undo()


@pytest.fixture
def same_home(exported: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOO_HOME", str(exported["home"]))


def test_export_is_registered_as_a_version_of_name_onnx(exported, same_home) -> None:
    from zoo.registry import get_version

    v = get_version("models:/tiny.onnx/1")
    assert v.tags["zoo.derived_from"] == "models:/tiny/1"
    assert v.tags["zoo.relation"] == "export"
    assert v.tags["zoo.format"] == "onnx"
    assert v.license == exported["version"].license == "apache-2.0"  # inherited
    assert v.class_names == tuple(CLASSES)


def test_plain_mlflow_and_onnxruntime_give_the_pytorch_outputs(exported, same_home) -> None:
    import mlflow
    import onnxruntime

    from zoo.registry.store import configure

    configure()  # only points MLflow at the test's store
    proto = mlflow.onnx.load_model("models:/tiny.onnx/1")
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    for batch in (1, 7):
        x = torch.randn(batch, *SIZE, generator=torch.Generator().manual_seed(batch))
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.inference_mode():
            expected = exported["model"](x).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)


def test_parity_report_benchmark_and_card_travel_with_the_version(exported, same_home) -> None:
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri="models:/tiny.onnx/1"))
    names = {p.name for p in folder.iterdir()}
    assert {"parity.json", "benchmark.json", "zoo-export.json", "README.md"} <= names
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["fp32"]["passed"] and parity["fp32"]["max_abs_error"] < 1e-4
    bench = json.loads((folder / "benchmark.json").read_text())
    assert bench["baseline"].startswith("PyTorch eager, torch.inference_mode, channels_last")
    assert [r["batch"] for r in bench["results"]] == [1, 16]
    assert all(r["speedup"] > 0 for r in bench["results"])
    card = (folder / "README.md").read_text()
    assert "apache-2.0" in card
    sidecar = json.loads((folder / "zoo-export.json").read_text())
    assert sidecar["preprocessing"]["input_size"] == list(SIZE)


def test_the_out_folder_holds_the_same_file(exported) -> None:
    out = exported["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "benchmark.json",
        "model.onnx",
        "parity.json",
        "zoo-export.json",
    ]


def test_refused_export_registers_nothing(tmp_path: Path) -> None:
    from zoo.deploy.export import export_model
    from zoo.deploy.source import load_source
    from zoo.registry import has_model

    _register("diverging")
    source = load_source("models:/diverging/1")

    class Diverges(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.inner(x)
            return y + 0.01 if torch.compiler.is_exporting() else y

    source.module = Diverges(source.module).eval()
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="nothing was registered"):
        export_model(source.reference, source=source, out=out, benchmark=False)
    assert not has_model("diverging.onnx")
    assert not out.exists()


def test_cli_export_says_each_step_on_its_progress_line(tmp_path: Path, capsys) -> None:
    """No wait is silent: in a pipe every step of `zoo export` is a line of its own, in
    order, before the result (on a terminal the same steps are one spinner line:
    tests/test_quiet.py)."""
    from tests.finetune_helpers import make_images

    _register("steps")
    data = make_images(tmp_path / "data", classes=3, per_class=5, size=(64, 64))
    for c, name in enumerate(CLASSES):  # the model's class names
        (data / f"class{c}").rename(data / name)
    capsys.readouterr()
    code = run(["export", "steps", "--calibration", str(data), "--out", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert code == 0, err
    steps = [line for line in err.splitlines() if line.startswith("zoo: export: ")]
    assert steps[0] == "zoo: export: starting (PyTorch, the exporters)"
    expected = [
        "building the model and reading its weights",
        f"reading the images in {data}",
        "decoding 3 validation and 12 calibration images",
        "converting to ONNX (torch.onnx.export, dynamo)",
        "checking the graph (onnx.checker, shape inference)",
        "fp32 gate: ONNX Runtime CPU against PyTorch on 3 inputs",
        "benchmark: ONNX Runtime against PyTorch eager, batch 1 and 16",
        "registering it as a version of steps.onnx",
    ]
    assert [line.removeprefix("zoo: export: ") for line in steps[1:-1]] == expected, err
    assert steps[-1].startswith("zoo: export: done (")
    assert "registered: models:/steps.onnx/1" in out


def test_cli_export_into_a_full_folder_is_a_usage_error(tmp_path: Path, capsys) -> None:
    _register("twice")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_text("")
    assert run(["export", "twice", "--out", str(out)]) == 2
    assert "not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("ref", ["models:/tiny.onnx/1", "models:/tiny/1", "tiny"])
def test_predict_runs_the_registered_export(exported, same_home, ref: str, capsys) -> None:
    import sklearn

    photo = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))[0]
    assert run(["predict", ref, str(photo), "--json", "--provider", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (prediction,) = doc["predictions"]
    probabilities = [t["probability"] for t in prediction["top"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert {t["class"] for t in prediction["top"]} == set(CLASSES)


def test_a_bare_name_that_is_also_a_folder_here_is_the_model_and_says_so(
    exported, same_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`zoo predict tiny` where ./tiny is a folder too (the README's layout command made
    one named like the model): the registered model, said in one line naming ./tiny;
    `./tiny` is the folder, with nothing said."""
    import shutil

    import sklearn

    photo = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))[0]
    shutil.copytree(exported["out"], tmp_path / "tiny")  # an export folder of its own
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert run(["predict", "tiny", str(photo), "--json"]) == 0
    out, err = capsys.readouterr()
    said = (
        "zoo: 'tiny' is both a registered model and a folder here: took the registered "
        "model (write ./tiny for the folder)"
    )
    assert [line for line in err.splitlines() if "tiny" in line] == [said], err
    doc = json.loads(out)
    assert doc["model"].startswith("models:/tiny.onnx/")  # the registered export, by name
    assert said.removeprefix("zoo: ") in doc["notes"]

    for folder in ("./tiny", "tiny/", str(tmp_path / "tiny")):
        assert run(["predict", folder, str(photo), "--json"]) == 0
        out, err = capsys.readouterr()
        assert Path(json.loads(out)["model"]).resolve() == tmp_path / "tiny" / "model.onnx"
        assert "both" not in err, err


def test_which_of_a_model_and_a_path_a_reference_names(
    exported, same_home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo.deploy.exported import model_or_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "tiny.onnx").write_bytes(b"")
    assert model_or_path("tiny") == (None, None)  # registered, nothing here of that name
    assert model_or_path("models:/tiny/1") == (None, None)
    assert model_or_path("other") == (Path("other"), None)  # a folder, no model so named
    assert model_or_path("tiny.onnx")[0] == Path("tiny.onnx")  # a file wins...
    assert "took the file (write models:/tiny.onnx/latest" in str(model_or_path("tiny.onnx")[1])
    (tmp_path / "tiny.onnx").unlink()  # ...and without it, the registered export
    assert model_or_path("tiny.onnx") == (None, None)
    assert model_or_path("missing.onnx") == (Path("missing.onnx"), None)  # "no such file"
    assert model_or_path("./tiny") == (Path("tiny"), None)  # a path form, whatever exists


def test_predict_precision_picks_an_export_of_that_precision(exported, same_home, capsys) -> None:
    import sklearn

    photo = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))[0]
    assert run(["predict", "tiny", str(photo), "--precision", "fp32", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["precision"] == "fp32" and doc["predictions"][0]["error"] is None

    assert run(["predict", "tiny", str(photo), "--precision", "int8"]) == 3  # none exists
    err = capsys.readouterr().err
    assert "has no int8 export" in err and "zoo export models:/tiny/1 --precision int8" in err

    assert run(["predict", "models:/tiny.onnx/1", str(photo), "--precision", "fp16"]) == 2
    assert "is a fp32 export, not fp16" in capsys.readouterr().err
