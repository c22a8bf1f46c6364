"""zoo-onnx on its own: its exporter through zoo's contract, its conversion, its ONNX
Runtime providers and runtime. End-to-end runs through the CLI (export, predict, serve,
the gates on real models) are zoo's tests (tests/test_export*.py, test_predict.py,
test_serving.py).

Runs wherever the plugin is installed (CI: `pip install -e plugins/zoo-onnx`); the
fixtures come from zoo's pytest plugin (zoo.testing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import zoo
from zoo.testing import check_exporter
from zoo_onnx import OnnxExporter
from zoo_onnx.convert import to_onnx
from zoo_onnx.gates import chunks
from zoo_onnx.runtime import OnnxModel, choose_providers, gate_providers

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_zoo_registers_the_onnx_exporter_through_the_entry_point(zoo_tmp_home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "plugins", "--hook", "register_exporters", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rows = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    assert rows["onnx"]["status"] == "ok"
    assert rows["onnx"]["registered"]["exporter"] == ["onnx"]


def test_the_exporter_honours_zoos_contract(zoo_tmp_home: Path, tmp_path: Path) -> None:
    exporter = OnnxExporter()
    assert exporter.precisions == ("fp32", "fp16", "int8")
    result = check_exporter(exporter, tmp_path / "out")
    assert Path(result.path).name == "model.onnx" and result.precision == "fp32"
    assert result.report["fp32"]["passed"] and set(result.files) == {"parity.json"}
    assert any(line.startswith("  parity (fp32") for line in exporter.report_lines(result))


def test_parity_batches_cover_one_two_and_an_odd_size() -> None:
    sizes = [s.stop - s.start for s in chunks(16)]
    assert sizes[:3] == [1, 2, 7] and sum(sizes) == 16
    assert {s.stop - s.start for s in chunks(5, static=1)} == {1}


def test_to_onnx_writes_the_named_input_and_output(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    exporter, notes = to_onnx(model, torch.randn(2, 3, 16, 16), tmp_path / "m.onnx")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["logits"]
    assert "dynamo" in exporter and notes == []


def test_the_runtime_declares_the_graphs_fixed_dimensions(tmp_path: Path) -> None:
    """What zoo predict checks an export's sidecar against (input_shape, output_width)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    path = tmp_path / "static.onnx"
    to_onnx(model, torch.randn(1, 3, 16, 16), path, dynamic_batch=False)
    runtime = OnnxModel(path, provider="cpu")
    assert runtime.input_shape == (3, 16, 16) and runtime.output_width == 4
    assert runtime.provider == CPU and runtime.note is None
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runtime.run(x), want, atol=1e-5, rtol=1e-4)


def test_a_file_onnx_runtime_cannot_load_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(zoo.DataError, match="ONNX Runtime cannot load"):
        OnnxModel(tmp_path / "broken.onnx", provider="cpu")


@pytest.mark.parametrize(
    ("requested", "available", "chosen", "note"),
    [
        ("auto", [CPU], [CPU], "onnxruntime-gpu"),
        ("cuda", [CPU], [CPU], "running on CPU"),
        ("tensorrt", [CPU], [CPU], "running on CPU"),
        ("cpu", [CUDA, CPU], [CPU], None),
        ("auto", [TRT, CUDA, CPU], [TRT, CUDA, CPU], None),
        ("tensorrt", [CUDA, CPU], [CUDA, CPU], "TensorRT is not available"),
    ],
)
def test_provider_choice_prefers_tensorrt_then_cuda_then_cpu(
    requested: str, available: list[str], chosen: list[str], note: str | None
) -> None:
    got, said = choose_providers(requested, available)
    assert got == chosen
    if note is None:
        assert said is None
    else:
        assert said is not None and note in said and "\n" not in said


def test_an_unknown_provider_is_a_usage_error() -> None:
    with pytest.raises(zoo.UsageError, match="unknown provider 'npu'"):
        choose_providers("npu", [CPU])


def test_this_onnxruntime_degrades_every_gpu_request_to_cpu_with_one_line() -> None:
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has a GPU provider")
    for requested in ("auto", "cuda", "tensorrt"):
        chosen, note = choose_providers(requested)
        assert chosen == [CPU] and note and "CPU" in note


def test_the_gates_run_on_every_provider_predict_may_choose_cpu_first() -> None:
    assert gate_providers([CPU]) == [CPU]
    assert gate_providers([TRT, CUDA, CPU]) == [CPU, TRT, CUDA]
    assert gate_providers([CUDA, CPU]) == [CPU, CUDA]


def test_the_names_zoo_gave_up_are_the_plugins() -> None:
    import zoo_onnx
    from zoo_onnx.export import export_onnx

    assert zoo_onnx.OnnxModel is OnnxModel and zoo_onnx.export_onnx is export_onnx
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        zoo_onnx.nothing  # noqa: B018
