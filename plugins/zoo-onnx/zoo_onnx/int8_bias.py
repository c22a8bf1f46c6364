"""Bias correction for int8 (Nagel et al., "Data-Free Quantization", 2019), step 4 of
int8.py: each quantized layer's bias absorbs the mean output error its int8 weights cause
on the calibration images, computed on the float model's own inputs to that layer (read
as extra outputs of the float graph), before the corrected model is quantized again.

Convolutions with explicit padding and plain Gemms (no transposed A, alpha 1) are
corrected; a bias shared with another node gets a corrected copy of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo_onnx import runtime

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["bias_correct"]


def bias_correct(src: Path, dst: Path, errors: dict[str, Any], images: np.ndarray) -> int:
    """Write ``src`` with each int8 layer's bias corrected for its mean output error."""
    import numpy as np
    import onnx
    import torch
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    targets = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if len(node.input) < 2 or node.input[1] not in errors:
            continue
        float_w, quant_w = errors[node.input[1]]
        if node.op_type == "Conv" and np.ndim(float_w) == 4:
            auto_pad = attrs.get("auto_pad", b"NOTSET")
            if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
                continue
        elif node.op_type == "Gemm" and np.ndim(float_w) == 2:
            if attrs.get("transA", 0) or float(attrs.get("alpha", 1.0)) != 1.0:
                continue
        else:
            continue
        delta = np.asarray(quant_w, dtype=np.float32).reshape(float_w.shape) - float_w
        targets.append((node, attrs, torch.from_numpy(np.ascontiguousarray(delta))))
    if not targets:
        onnx.save(model, str(dst))
        return 0

    # The float model's input to each corrected layer, as extra outputs.
    probe = onnx.load(str(src))
    present = {o.name for o in probe.graph.output}
    for node, _, _ in targets:
        if node.input[0] not in present:
            probe.graph.output.append(
                helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None)
            )
            present.add(node.input[0])
    session = runtime.session(probe.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    with torch.inference_mode():
        for start in range(0, len(images), 4):
            outputs = dict(
                zip(names, session.run(None, {input_name: images[start : start + 4]}), strict=True)
            )
            for node, attrs, delta in targets:
                x = torch.from_numpy(np.asarray(outputs[node.input[0]], dtype=np.float32))
                if node.op_type == "Conv":
                    pads = list(attrs.get("pads", [0, 0, 0, 0]))
                    x = torch.nn.functional.pad(x, (pads[1], pads[3], pads[0], pads[2]))
                    y = torch.nn.functional.conv2d(
                        x,
                        delta,
                        None,
                        tuple(attrs.get("strides", [1, 1])),
                        0,
                        tuple(attrs.get("dilations", [1, 1])),
                        int(attrs.get("group", 1)),
                    )
                    total, count = y.sum((0, 2, 3)), y.shape[0] * y.shape[2] * y.shape[3]
                else:
                    w = delta if attrs.get("transB", 0) else delta.T
                    y = x.reshape(x.shape[0], -1) @ w.T
                    total, count = y.sum(0), y.shape[0]
                sums[node.name] = total if node.name not in sums else sums[node.name] + total
                counts[node.name] = counts.get(node.name, 0) + int(count)
    for node, _, _ in targets:
        shift = (sums[node.name] / max(counts[node.name], 1)).numpy().astype(np.float32)
        bias_name = node.input[2] if len(node.input) > 2 else ""
        if bias_name and bias_name in inits and uses.get(bias_name, 0) == 1:
            bias = inits[bias_name]
            corrected = numpy_helper.to_array(bias).astype(np.float32) - shift
            bias.CopyFrom(numpy_helper.from_array(corrected, bias_name))
        else:
            name = f"{node.input[1]}_corrected_bias"
            base = numpy_helper.to_array(inits[bias_name]) if bias_name in inits else 0.0
            graph.initializer.append(numpy_helper.from_array(np.float32(base) - shift, name))
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = name
    onnx.save(model, str(dst))
    return len(targets)
