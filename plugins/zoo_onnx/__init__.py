"""zoo exporter plugin: ONNX export verified against PyTorch.

Registers the ``onnx`` format for ``zoo export``. The conversion and the parity gates are
zoo's own (``zoo.export_onnx``): this plugin is the format's entry in the exporter
registry, written against zoo's public API like a third-party exporter would be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zoo

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


class OnnxExporter:
    """ONNX via torch.export, checked by onnx.checker and ONNX Runtime parity."""

    name = "onnx"
    summary = "ONNX (torch.export-based exporter), verified with ONNX Runtime; fp32/fp16/int8"
    precisions = ("fp32", "fp16", "int8")

    def export(
        self, module: nn.Module, example: torch.Tensor, options: zoo.ExportOptions
    ) -> zoo.ExportResult:
        return zoo.export_onnx(module, example, options)


@zoo.hookimpl
def register_exporters(register: Any) -> None:
    register(OnnxExporter())
