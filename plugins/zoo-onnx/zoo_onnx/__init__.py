"""zoo exporter plugin: ONNX export verified against PyTorch (the distribution zoo-onnx).

Registers the ``onnx`` format for ``zoo export`` and everything zoo does with that format
afterwards, each part in its own module:

    export.py     the pipeline: convert, the gates, the benchmark (export_onnx)
    convert.py    torch.onnx.export (dynamo, else legacy), onnx.checker, fp16
    gates.py      the gates' numbers: ONNX Runtime against eager PyTorch
    int8.py       static QDQ int8: layer sensitivity, float prefix (int8_bias.py: bias
                  correction)
    benchmark.py  ONNX Runtime against PyTorch eager
    runtime.py    ONNX Runtime: providers, sessions, OnnxModel (what ``zoo predict`` runs)
    pyfunc.py     the registered export's MLflow model (serving.py: its python_function)

how a registered export is logged (an MLflow model with the ``onnx`` flavour, so plain
MLflow loads the graph, and a ``python_function`` flavour that serves images), what
``zoo predict`` runs it with (ONNX Runtime: TensorRT, CUDA or CPU) and how its parity
report reads. Written against zoo's public API (``import zoo``) like any third-party
exporter.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zoo

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from torch import nn

    from zoo_onnx.runtime import OnnxModel

__all__ = ["OnnxExporter", "OnnxModel", "export_onnx", "register_exporters"]

zoo_plugin_api = 3  # the public face without ONNX names (zoo 0.1 kept OnnxModel there)


class OnnxExporter:
    """ONNX via torch.export, checked by onnx.checker and ONNX Runtime parity."""

    name = "onnx"
    summary = "ONNX (torch.export-based exporter), verified with ONNX Runtime; fp32/fp16/int8"
    precisions = ("fp32", "fp16", "int8")

    def export(
        self, module: nn.Module, example: torch.Tensor, options: zoo.ExportOptions
    ) -> zoo.ExportResult:
        from zoo_onnx.export import export_onnx

        return export_onnx(module, example, options)

    def log_model(
        self, path: Path, *, input_example: np.ndarray | None, run_id: str, model_id: str
    ) -> Sequence[str]:
        """The version's MLflow model: the ``onnx`` flavour (``mlflow.onnx.load_model``
        gives the graph) and, when the export's sidecar is beside the file, a
        ``python_function`` flavour that takes images and answers class names with
        probabilities (``mlflow models serve``; see serving.py)."""
        import mlflow
        import onnx
        import onnxruntime

        sidecar = path.parent / zoo.EXPORT_SIDECAR
        if not sidecar.is_file():  # no preprocessing known: the graph alone
            mlflow.onnx.log_model(
                onnx.load(str(path)),
                name="model",
                input_example=input_example,
                run_id=run_id,
                model_id=model_id,
                pip_requirements=["onnx", "onnxruntime"],
                save_as_external_data=False,
                onnx_execution_providers=[  # Azure's provider calls a remote endpoint
                    p
                    for p in onnxruntime.get_available_providers()
                    if p != "AzureExecutionProvider"
                ],
            )
            return ("MLmodel", "model.onnx")
        from zoo_onnx.pyfunc import save_serving_model

        with tempfile.TemporaryDirectory(prefix="zoo-onnx-pyfunc-") as tmp:
            local = Path(tmp) / "model"
            files = save_serving_model(path, sidecar, local, input_example=input_example)
            mlflow.MlflowClient().log_model_artifacts(model_id, str(local))
        return files

    def open(self, path: Path, *, provider: str = "auto") -> OnnxModel:
        """An ONNX Runtime session (TensorRT, then CUDA, then CPU for ``auto``)."""
        from zoo_onnx.runtime import OnnxModel

        return OnnxModel(path, provider=provider)

    def report_lines(self, result: zoo.ExportResult) -> list[str]:
        report, metrics = result.report, result.metrics
        fp32 = report["fp32"]
        checked = report["check_images"]
        lines = [
            f"  parity (fp32, batches {', '.join(map(str, fp32['batches']))}): max |error| "
            f"{fp32['max_abs_error']:.2e}, top-1 agreement {fp32['top1_agreement']:.1%} "
            f"on {checked['count']} {'real' if checked['real'] else 'random'} inputs",
        ]
        providers = [p.removesuffix("ExecutionProvider") for p in report.get("providers", [])]
        if providers:
            lines.append(f"  gates ran on: {', '.join(providers)}")
        for key in ("fp16", "int8"):
            if key in report:
                lines.append(_gate_line(key, report[key], checked))
        for name in ("speedup_batch1", "speedup_batch16"):
            if name in metrics:
                batch = name.removeprefix("speedup_batch")
                lines.append(f"  batch {batch}: ONNX Runtime {metrics[name]:.2f}x PyTorch eager")
        return lines


def _gate_line(key: str, gate: dict[str, Any], checked: dict[str, Any]) -> str:
    """One gate in one line, each figure with the precision and runtime that computed it:
    the reference is eager PyTorch in float32 (what the registry's val_accuracy is
    computed in, on the same validation images), the candidate the file on ONNX Runtime."""
    reference = gate.get("accuracy_fp32_computed_in", "PyTorch fp32")
    runs = gate.get("by_provider") or {"CPU": gate}
    agreement = f"top-1 agreement {gate['top1_agreement']:.1%} with {reference}"
    if key == "fp16":
        what = f"{checked['count']} {'real' if checked['real'] else 'random'} inputs"
        return f"  fp16 gate on {what}: {agreement} (fp16 on ONNX Runtime {', '.join(runs)})"
    images = f"{gate.get('validation_images', checked['count'])} validation images"
    if gate.get("accuracy_fp32") is None:
        return f"  int8 gate on {images}: {agreement} (int8 on ONNX Runtime {', '.join(runs)})"
    labelled = gate.get("labelled_images")

    def figure(accuracy: float, correct: Any, where: str) -> str:
        count = f"{correct}/{labelled}, " if correct is not None and labelled else ""
        return f"{accuracy:.4g} ({count}{where})"

    fp32 = figure(gate["accuracy_fp32"], gate.get("correct_fp32"), reference)
    int8 = ", ".join(
        figure(r["accuracy_int8"], r.get("correct_int8"), f"ONNX Runtime {name}")
        for name, r in runs.items()
    )
    return f"  int8 gate on {images}: fp32 accuracy {fp32} vs int8 {int8}; {agreement}"


@zoo.hookimpl
def register_exporters(register: Any) -> None:
    register(OnnxExporter())


def __getattr__(name: str) -> Any:
    """``zoo_onnx.OnnxModel`` and ``zoo_onnx.export_onnx``, imported on first use (the
    names ``zoo.OnnxModel`` and ``zoo.export_onnx`` had; loading the plugin stays light)."""
    if name == "OnnxModel":
        from zoo_onnx.runtime import OnnxModel

        return OnnxModel
    if name == "export_onnx":
        from zoo_onnx.export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'zoo_onnx' has no attribute '{name}'")
