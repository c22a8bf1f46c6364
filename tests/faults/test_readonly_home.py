"""A read-only zoo home (mounted read-only: permissions do not stop root): every read
works -- listings, a version, its lineage, the catalogue, `info`, `predict` of a
registered export -- and every write refuses in one line naming the folder, before any
work. `predict` never writes into the store (MLflow's download would, into the folder of
a local store's artifacts). Files deleted behind zoo's back (an export's .onnx, a
version's weights) are named by `predict` and `finetune` before any training (exit 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from finetune_helpers import make_images

from faults.helpers import expect_error, expect_error_in_process, read_only, registered

CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def exported_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home with models:/ro/1 (timm:test_resnet, random weights) and its ONNX export."""
    import torch

    from zoo.catalog.index import provider_for
    from zoo.cli import run
    from zoo.contract.plugins import reset_plugin_manager
    from zoo.contract.refs import parse_ref
    from zoo.data.preprocess import Preprocessing
    from zoo.registry import register_derivative

    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("ro-home")
    mp.setenv("ZOO_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    reset_plugin_manager()
    ref = parse_ref("timm:test_resnet")
    torch.manual_seed(0)
    model = provider_for(ref).build(ref, num_classes=2, pretrained=False).model.eval()
    register_derivative(
        model,
        name="ro",
        parent="timm:test_resnet",
        strategy="linear-probe",
        strategy_settings={},
        dataset={"digest": "sha256:0", "classes": CLASSES, "counts": dict.fromkeys(CLASSES, 2)},
        metrics={"val_accuracy": 0.5},
        input_example=torch.randn(2, 3, 32, 32),
        preprocessing=Preprocessing(input_size=(3, 32, 32)).to_dict(),
        class_names=CLASSES,
    )
    out = tmp_path_factory.mktemp("out") / "ro-onnx"
    assert run(["export", "models:/ro/1", "--out", str(out), "--no-benchmark"]) == 0
    yield home
    mp.undo()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("data"), per_class=2)


@pytest.fixture
def same_home(exported_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_HOME", str(exported_home))
    return exported_home


def _files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_every_read_works_on_a_read_only_home(exported_home: Path, images: Path) -> None:
    before = _files(exported_home)
    image = next(images.rglob("*.png"))
    listed = read_only(exported_home, "registry", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert {v["model_uri"] for v in json.loads(listed.stdout)["versions"]} == {
        "models:/ro/1",
        "models:/ro.onnx/1",
    }
    for args in (
        ["registry", "show", "ro", "--json"],
        ["registry", "lineage", "ro"],
        ["list", "test_res*"],
        ["info", "timm:test_resnet"],
    ):
        proc = read_only(exported_home, *args)
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
    predicted = read_only(exported_home, "predict", "models:/ro/1", str(image), "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    (one,) = json.loads(predicted.stdout)["predictions"]
    assert one["top"] and not one["error"], one
    assert _files(exported_home) == before


def test_every_write_refuses_in_one_line_before_any_work(
    exported_home: Path, images: Path, tmp_path: Path
) -> None:
    home, store = str(exported_home), str(exported_home / "mlflow")
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"not read: the refusal comes first")
    for args, folder in (
        (["finetune", "timm:test_resnet", str(images), "--random-init", "--name", "w"], home),
        (
            ["import", str(ckpt), "--arch", "timm:test_resnet", "--license", "mit", "--name", "w"],
            home,
        ),
        (["export", "models:/ro/1", "--out", str(tmp_path / "out")], home),
        (["registry", "alias", "ro", "1", "prod"], store),
        (["registry", "delete", "models:/ro.onnx/1", "--yes"], store),
    ):
        proc = read_only(exported_home, *args)
        expect_error(proc, 2, "read-only", folder)
        assert "checking images" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_predict_writes_nothing_into_the_store(
    same_home: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.cli import run

    artifacts = same_home / "mlflow" / "artifacts"
    before = _files(artifacts)
    assert run(["predict", "models:/ro.onnx/1", str(images), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 4
    assert _files(artifacts) == before  # no registered_model_meta beside the export


def test_a_deleted_export_file_is_named_by_predict(
    same_home: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (onnx,) = (same_home / "mlflow" / "artifacts").rglob("model.onnx")
    moved = onnx.with_suffix(".away")
    onnx.rename(moved)
    try:
        argv = ["predict", "models:/ro/1", str(images)]
        expect_error_in_process(argv, capsys, 4, "models:/ro.onnx/1", "missing", "--verify")
    finally:
        moved.rename(onnx)


def test_deleted_weights_stop_a_finetune_from_the_version_before_training(
    same_home: Path, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (weights,) = (same_home / "mlflow" / "artifacts").rglob("model.safetensors")
    moved = weights.with_suffix(".away")
    weights.rename(moved)
    try:
        argv = ["finetune", "models:/ro/1", str(images), "--epochs", "1", "--name", "from-ro"]
        expect_error_in_process(argv, capsys, 4, str(weights), "zoo registry check --verify")
        assert registered("from-ro") == []
    finally:
        moved.rename(weights)
