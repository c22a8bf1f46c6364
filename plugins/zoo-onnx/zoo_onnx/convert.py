"""Converting a PyTorch classifier to ONNX, and the graph's own checks.

:func:`to_onnx` uses the exporter PyTorch recommends (``torch.onnx.export(dynamo=True)``,
i.e. torch.export) and falls back to the legacy TorchScript exporter only when that fails
(and says so); :func:`check_onnx` runs ``onnx.checker`` with ``full_check=True`` and strict
shape inference; :func:`to_fp16` and :func:`to_int8` (int8.py) derive the reduced
precisions from the float32 file.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zoo

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import numpy as np
    import torch
    from torch import nn

    Step = Callable[[str], None]  # told what the export does now (ExportOptions.step)

__all__ = ["INPUT_NAME", "MAX_BATCH", "OUTPUT_NAME", "check_onnx", "to_fp16", "to_int8", "to_onnx"]

INPUT_NAME, OUTPUT_NAME = "input", "logits"
MAX_BATCH = 4096


def to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    opset: int | None = None,
    dynamic_batch: bool = True,
    step: Step | None = None,
) -> tuple[str, list[str]]:
    """Write ``module`` as ONNX; returns (which exporter, notes for the user). ``step``
    is told which exporter converts."""
    import torch

    step = step or (lambda _detail: None)
    step("converting to ONNX (torch.onnx.export, dynamo)")

    notes: list[str] = []
    log = io.StringIO()
    try:
        dynamic_shapes = None
        if dynamic_batch:
            dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
        with (
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                verbose=False,
            )
            assert program is not None
            program.save(str(path))
        return "torch.onnx.export (dynamo, torch.export)", notes
    except Exception as exc:  # the recommended exporter failed: say so, then fall back
        notes.append(
            f"the torch.export-based ONNX exporter failed ({_reason(exc)}); fell back to the "
            "legacy TorchScript exporter"
        )
    path.unlink(missing_ok=True)
    step("converting to ONNX (torch.onnx.export, legacy TorchScript: dynamo failed)")
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset or 17,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
            )
    except Exception as exc:
        raise zoo.IntegrityError(
            f"neither ONNX exporter could convert this model ({_reason(exc)}); run with "
            "--debug for the traceback"
        ) from exc
    return "torch.onnx.export (legacy TorchScript)", notes


def _reason(exc: BaseException) -> str:
    """The root cause of an exporter error, on one line, without terminal colours."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else "")
    return f"{type(exc).__name__}: {text[:200]}".rstrip(": ")


def check_onnx(path: Path) -> dict[str, Any]:
    """onnx.checker (full) and strict shape inference; returns what they established."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(
            onnx.load(str(path)), check_type=True, strict_mode=True, data_prop=True
        )
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise zoo.IntegrityError(f"the exported ONNX file fails onnx.checker: {exc}") from exc

    def dims(value: Any) -> list[int | str]:
        return [
            d.dim_param if d.HasField("dim_param") else int(d.dim_value)
            for d in value.type.tensor_type.shape.dim
        ]

    opsets = {o.domain or "ai.onnx": int(o.version) for o in inferred.opset_import}
    return {
        "checker": "passed (full_check)",
        "shape_inference": "passed (strict)",
        "inputs": {v.name: dims(v) for v in inferred.graph.input},
        "outputs": {v.name: dims(v) for v in inferred.graph.output},
        "opset": opsets.get("ai.onnx"),
        "nodes": len(inferred.graph.node),
    }


def to_fp16(src: Path, dst: Path) -> None:
    """Weights and activations in float16, inputs and outputs kept float32."""
    import onnx
    import onnx_ir as ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    model = ir.from_proto(half)
    model.graph.sort()  # the converter appends its input casts after their users
    ir.save(model, str(dst))


def to_int8(
    src: Path, dst: Path, calibration: np.ndarray, work: Path, *, step: Step | None = None
) -> dict[str, Any]:
    """Static QDQ int8 (int8.py: per-channel int8 weights, uint8 activations, a
    float prefix where the first layers are too sensitive, bias correction); returns
    what it tried, with the per-layer evidence."""
    import numpy as np

    from zoo_onnx.int8 import quantize_int8

    images = np.ascontiguousarray(calibration, dtype=np.float32)
    return quantize_int8(src, dst, images, work, say=step)

