"""Parity where it runs: the export gates run on every provider `zoo predict` may choose.

On this onnxruntime (the CPU wheel) that is the CPU provider alone; with onnxruntime-gpu
installed the CUDA and TensorRT providers join it. The `gpu`-marked test proves parity on
CUDA itself and skips where the installed onnxruntime has no CUDA provider.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from zoo.data.preprocess import Preprocessing
from zoo.deploy.export import export_model
from zoo.deploy.source import Source
from zoo_onnx.runtime import gate_providers

SIZE = (3, 64, 64)
CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_gate_providers_are_the_ones_predict_may_choose_cpu_first() -> None:
    assert gate_providers([CPU]) == [CPU]
    assert gate_providers([CUDA, CPU]) == [CPU, CUDA]
    assert gate_providers([TRT, CUDA, CPU]) == [CPU, TRT, CUDA]
    assert gate_providers(["OpenVINOExecutionProvider", CPU]) == [CPU]  # predict never picks it


def test_this_onnxruntime_gates_on_each_provider_it_offers(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=5).eval()
    prep = Preprocessing(input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    source = Source(reference="test:m", module=model, preprocessing=prep, license="mit")
    outcome = export_model(
        "test:m", source=source, out=tmp_path / "out", precision="fp16", benchmark=False
    )
    report = outcome.result.report
    offered = [p for p in (CPU, CUDA, TRT) if p in ort.get_available_providers()]
    assert sorted(report["providers"]) == sorted(offered)
    names = {p.removesuffix("ExecutionProvider") for p in offered}
    assert set(report["fp32"]["by_provider"]) == names
    assert set(report["fp16"]["by_provider"]) == names
    assert all(r["passed"] for r in report["fp32"]["by_provider"].values())


@pytest.mark.gpu
def test_parity_holds_on_cuda(tmp_path: Path) -> None:
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=5).eval()
    prep = Preprocessing(input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    source = Source(reference="test:m", module=model, preprocessing=prep, license="mit")
    outcome = export_model("test:m", source=source, out=tmp_path / "out", benchmark=False)
    cuda = outcome.result.report["fp32"]["by_provider"]["CUDA"]
    assert cuda["passed"] and cuda["allclose"] and cuda["max_abs_error"] < 1e-4

    from zoo_onnx.runtime import OnnxModel

    x = np.random.default_rng(0).standard_normal((7, *SIZE)).astype(np.float32)
    on_gpu = OnnxModel(outcome.path, provider="cuda")
    assert on_gpu.provider == CUDA
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(on_gpu.run(x), expected, atol=1e-4, rtol=1e-3)
