"""The fp16 and int8 gates refuse a model that genuinely disagrees, and register nothing.

The model is real and ordinary: timm's test_resnet whose two classes are nearly the same
(the second row of its classifier is the first plus a perturbation 1e-4 of its size). Its
logits then differ by about 1e-4 of their magnitude: float32 keeps their order (ONNX
Runtime agrees with PyTorch on every image: the fp32 gate, which runs first, passes),
while float16's 11-bit mantissa and int8's per-channel rounding of the two rows cannot,
so top-1 flips on many images. Nothing in the product knows about this model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import zoo_onnx.export
from zoo.catalog.index import provider_for
from zoo.cli import run
from zoo.contract.refs import parse_ref
from zoo.data.preprocess import Preprocessing
from zoo_onnx.gates import torch_logits
from zoo_onnx.int8 import MAX_FLOAT_PREFIX
from zoo_onnx.runtime import gate_providers

CLASSES = ["bright", "dark"]
SIZE = (3, 32, 32)


def _data(folder: Path, per_class: int = 30) -> Path:
    rng = np.random.default_rng(0)
    for name, low in (("bright", 128), ("dark", 0)):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(low, low + 128, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def _near_tie(name: str, tie: float = 1e-4, scale: float = 1.0) -> None:
    """Register (as models:/NAME/1) a classifier whose two classes are nearly tied
    (``tie`` 1 and a large ``scale``: two distinct, confident classes)."""
    from zoo.registry import register_derivative

    ref = parse_ref("timm:test_resnet")
    torch.manual_seed(0)
    model = provider_for(ref).build(ref, num_classes=2, pretrained=False).model.eval()
    head = model.get_classifier()
    with torch.no_grad():
        w = torch.randn(head.in_features)
        r = torch.randn(head.in_features)
        head.weight.copy_(scale * torch.stack([w, w + tie * r]))
        head.bias.zero_()
    prep = Preprocessing(input_size=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    register_derivative(
        model,
        name=name,
        parent="timm:test_resnet",
        strategy="linear-probe",
        strategy_settings={},
        dataset={"digest": "sha256:0", "classes": CLASSES, "counts": dict.fromkeys(CLASSES, 30)},
        metrics={"val_accuracy": 0.5},
        input_example=torch.randn(2, *SIZE),
        preprocessing=prep.to_dict(),
        class_names=CLASSES,
    )


@pytest.mark.parametrize(
    ("precision", "gate"),
    [("fp16", "fp16 top-1 agrees"), ("int8", "int8 top-1 agrees")],
)
def test_a_nearly_tied_model_is_refused_in_fp16_and_int8_and_nothing_registered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], precision: str, gate: str
) -> None:
    from zoo.registry import has_model

    _near_tie("tied")
    data = _data(tmp_path / "data")
    out = tmp_path / "out"
    args = ["export", "tied", "--precision", precision, "--calibration", str(data)]
    code = run([*args, "--out", str(out), "--no-benchmark"])
    err = capsys.readouterr().err
    assert code == 4, err
    line = next(x for x in err.splitlines() if x.startswith("zoo: error:"))
    # The fp32 gate ran first and passed: this is the precision's refusal, not a broken export.
    assert "export refused:" in line and gate in line and "nothing was registered" in line
    print(line)
    assert "Traceback" not in err
    assert not has_model("tied.onnx")
    assert not out.exists()
    assert not list(tmp_path.glob(".zoo-export-*"))


def test_without_the_tie_int8_ships_and_reports_what_it_tried(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A confident head (no near-tie) passes the unchanged int8 gate; the report names
    each step it tried with its logits SNR on training images, and the CLI says so."""
    import json

    from zoo.registry import has_model

    _near_tie("confident", tie=1.0, scale=50.0)
    data = _data(tmp_path / "data")
    args = ["export", "models:/confident/1", "--precision", "int8", "--calibration", str(data)]
    references: list[int] = []  # images each PyTorch reference pass ran on

    def reference(module: Any, x: Any, parts: Any) -> Any:
        references.append(len(x))
        return torch_logits(module, x, parts)

    monkeypatch.setattr(zoo_onnx.export, "torch_logits", reference)
    code = run([*args, "--out", str(tmp_path / "out"), "--no-benchmark", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    int8 = json.loads(captured.out)["report"]["int8"]
    assert int8["passed"] and int8["top1_agreement"] >= 0.95
    providers = {p.removesuffix("ExecutionProvider") for p in gate_providers()}
    assert set(int8["by_provider"]) == providers and "CPU" in providers
    tried = int8["quantization"]["tried"]
    assert tried[0]["step"].startswith("baseline") and tried[-1]["step"].startswith(
        "bias correction"
    )
    assert all(isinstance(s["logits_snr_db"], float) for s in tried)
    # the rule reads the first layers' sensitivity only, so only they are measured
    sensitivity = int8["quantization"]["layer_sensitivity_db"]
    assert 1 <= len(sensitivity) <= MAX_FLOAT_PREFIX
    assert all(isinstance(v, float) for v in sensitivity.values())
    assert "int8: tried baseline" in captured.err
    assert has_model("confident.onnx")
    # both gates compare with one PyTorch pass: the check set is the validation images
    assert references == [int8["validation_images"]]
