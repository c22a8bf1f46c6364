"""zoo export: conversion, the parity gates, refusals that leave nothing behind.

Fast tests use timm's tiny test models with random weights at small input sizes; the real
backbones (EfficientNet-Lite0, ResNet-18, ViT-Tiny) are in test_export_slow.py. The ONNX
exporter's own unit tests (conversion, providers, its contract) are the plugin's:
plugins/zoo-onnx/tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch
from torch import nn

from zoo import IntegrityError, UsageError
from zoo.data.preprocess import Preprocessing
from zoo.deploy.export import ExportOutcome, export_model
from zoo.deploy.source import Source

SIZE = (3, 64, 64)


def _source(module: nn.Module, classes: tuple[str, ...] = (), size: tuple = SIZE) -> Source:
    prep = Preprocessing(input_size=size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return Source(
        reference="test:module",
        module=module.eval(),
        preprocessing=prep,
        class_names=classes,
        license="apache-2.0",
    )


def _export(module: nn.Module, out: Path, **kw: Any) -> ExportOutcome:
    kw.setdefault("benchmark", False)
    return export_model("test:module", source=_source(module), out=out, **kw)


class DivergesWhenExported(nn.Module):
    """A real model whose exported graph computes something else than eager mode."""

    def __init__(self) -> None:
        super().__init__()
        self.net = timm.create_model("test_resnet", pretrained=False, num_classes=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if torch.compiler.is_exporting():
            y = y + 0.01  # 100x the gate's atol
        return y


class DataDependentBranch(nn.Module):
    """torch.export cannot trace a branch on a tensor's value; TorchScript tracing can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.conv(x).mean((2, 3)))
        if x.abs().sum() >= 0:
            return y
        return -y


@pytest.fixture(scope="module")
def efficientnet_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=5).eval()
    out = tmp_path_factory.mktemp("export") / "effnet"
    outcome = _export(model, out)
    return model, Path(outcome.path)


def test_export_writes_a_checked_file_with_dynamic_batch(efficientnet_export) -> None:
    _, path = efficientnet_export
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "model.onnx",
        "parity.json",
        "zoo-export.json",
    ]
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert not list(path.parent.parent.glob(".zoo-export-*"))  # no temp folder left


@pytest.mark.parametrize("batch", [1, 7, 3])
def test_exported_file_matches_pytorch_at_any_batch(efficientnet_export, batch: int) -> None:
    model, path = efficientnet_export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(batch, *SIZE, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        expected = model(x).numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == (batch, 5)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)


def test_parity_report_records_the_gate(efficientnet_export) -> None:
    import json

    _, path = efficientnet_export
    report = json.loads((path.parent / "parity.json").read_text())
    assert report["fp32"]["passed"] and report["fp32"]["allclose"]
    assert report["fp32"]["max_abs_error"] < 1e-4
    assert {1, 2, 7} <= set(report["fp32"]["batches"])
    assert report["fp32_graph"]["checker"].startswith("passed")
    assert report["exporter"].startswith("torch.onnx.export (dynamo")
    assert report["check_images"] == {"count": 16, "real": False}


def test_export_is_refused_when_the_exported_graph_differs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="export refused: ONNX Runtime disagrees"):
        _export(DivergesWhenExported(), out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp folder, nothing half-written


def test_refused_export_leaves_a_given_empty_folder_empty(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(IntegrityError):
        _export(DivergesWhenExported(), out)
    assert list(out.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_legacy_exporter_is_used_only_as_a_fallback_and_said(tmp_path: Path) -> None:
    torch.manual_seed(0)
    outcome = _export(DataDependentBranch(), tmp_path / "out")
    assert "legacy TorchScript" in outcome.result.exporter
    assert any("fell back to the legacy" in n for n in outcome.notes)
    assert any("GuardOnDataDependent" in n for n in outcome.notes)


def test_static_batch_export_has_a_fixed_batch_of_one(tmp_path: Path) -> None:
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    outcome = _export(model, tmp_path / "out", dynamic_batch=False)
    graph = onnx.load(outcome.path).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    assert outcome.result.report["fp32"]["batches"] == [1]


def test_fp16_export_is_half_inside_and_float_at_the_edges(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    outcome = _export(model, tmp_path / "out", precision="fp16")
    report = outcome.result.report
    assert report["fp16"]["passed"] and report["fp16"]["top1_agreement"] >= 0.99
    m = onnx.load(outcome.path)
    elem = onnx.TensorProto
    assert m.graph.input[0].type.tensor_type.elem_type == elem.FLOAT
    assert any(t.data_type == elem.FLOAT16 for t in m.graph.initializer)


def test_int8_without_calibration_images_is_a_usage_error(tmp_path: Path) -> None:
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    with pytest.raises(UsageError, match="--calibration"):
        _export(model, tmp_path / "out", precision="int8")
    assert list(tmp_path.iterdir()) == []


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an empty folder"):
        _export(nn.Linear(2, 2), tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_unknown_format_names_the_installed_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--format coreml: .*\(installed: onnx\); install"):
        _export(nn.Linear(2, 2), tmp_path / "out", fmt="coreml")


def test_int8_export_calibrates_on_training_images_and_passes_both_gates(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, low in (("bright", 128), ("dark", 0)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(low, low + 128, (80, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=2).eval()
    with torch.no_grad():
        model.get_classifier().weight.mul_(50.0)  # confident logits: no near-ties
    source = _source(model, classes=("bright", "dark"))
    steps: list[str] = []  # what the progress line shows, step by step
    outcome = export_model(
        source.reference,
        source=source,
        out=tmp_path / "out",
        precision="int8",
        calibration=tmp_path / "data",
        benchmark=False,
        step=steps.append,
    )
    # each stage of zoo_onnx.int8 (a float prefix only when the first layers need one)
    int8_steps = [
        s.split(" ")[1]
        for s in steps
        if s.startswith("int8: ") and not s.startswith("int8: quantizing with")
    ]
    assert int8_steps == ["preparing", "quantizing,", "the", "bias", "activation"], steps
    assert steps[-1] == "int8 gate: ONNX Runtime CPU against PyTorch on 4 validation images"
    int8 = outcome.result.report["int8"]
    assert int8["calibration_images"] == 16 and int8["validation_images"] == 4  # 80/20 split
    assert int8["passed"] and int8["top1_agreement"] >= 0.95
    assert int8["accuracy_fp32"] is not None and int8["accuracy_drop"] <= 0.02
    assert outcome.result.report["check_images"] == {"count": 4, "real": True}
    graph = onnx.load(outcome.path).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
