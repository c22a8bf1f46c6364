"""The numbers the gates decide on: ONNX Runtime against eager PyTorch, on the same inputs.

The reference is eager PyTorch in plain float32 (:func:`torch_logits`, what the registry's
figures are computed in); the candidate the file on ONNX Runtime (:func:`ort_logits`), in
batches of 1, 2 and 7, then 16 (:func:`chunks`). The fp32 gate is
``numpy.allclose(ort, torch, atol=1e-4, rtol=1e-3)`` with top-1 identical on every image
when the check images are real; fp16 keeps top-1 agreement >= 99 %; int8 keeps it >= 95 %
and its accuracy at most 2 points below fp32 on the validation split. Each gate runs on
every execution provider ``zoo predict`` may choose (runtime.gate_providers); the
provider's own figures are kept under ``by_provider``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import zoo

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from torch import nn

__all__ = [
    "ATOL",
    "FP16_MIN_AGREEMENT",
    "INT8_MAX_ACCURACY_DROP",
    "INT8_MIN_AGREEMENT",
    "REFERENCE",
    "RTOL",
    "accuracy",
    "agreement",
    "chunks",
    "combine",
    "correct",
    "fp32_parity",
    "int8_summary",
    "ort_logits",
    "short",
    "torch_logits",
]

ATOL, RTOL = 1e-4, 1e-3  # the fp32 gate: numpy.allclose(ort, torch, atol, rtol)
FP16_MIN_AGREEMENT = 0.99
INT8_MIN_AGREEMENT = 0.95
INT8_MAX_ACCURACY_DROP = 0.02
PARITY_BATCHES = (1, 2, 7)  # then 16 at a time: batch 1, an even and an odd size always run
REFERENCE = "PyTorch fp32"  # what every gate compares with (torch_logits)


def chunks(n: int, *, static: int | None = None) -> list[slice]:
    """Slices of ``range(n)`` sized 1, 2, 7, then 16 (``static``: all of that size)."""
    out: list[slice] = []
    start, i = 0, 0
    while start < n:
        size = static or (PARITY_BATCHES[i] if i < len(PARITY_BATCHES) else 16)
        if static and start + size > n:
            break
        out.append(slice(start, min(n, start + size)))
        start += size
        i += 1
    return out


def torch_logits(module: nn.Module, x: np.ndarray, parts: Sequence[slice]) -> np.ndarray:
    """The reference every gate compares with: eager PyTorch in plain float32."""
    import numpy as np
    import torch

    with torch.inference_mode(), zoo.exact_fp32():
        return np.concatenate(
            [module(torch.from_numpy(x[s])).float().numpy() for s in parts], axis=0
        )


def short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


def ort_logits(session: Any, x: np.ndarray, parts: Sequence[slice]) -> np.ndarray:
    import numpy as np

    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[s]})[0] for s in parts], axis=0)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0


def accuracy(logits: np.ndarray, labels: Sequence[int]) -> float | None:
    right = correct(logits, labels)
    return None if right is None else right[0] / right[1]


def correct(logits: np.ndarray, labels: Sequence[int]) -> tuple[int, int] | None:
    """(images predicted right, images labelled with one of the model's classes)."""
    import numpy as np

    y = np.asarray(labels)
    known = y >= 0
    if not known.any():
        return None
    return int((logits[known].argmax(1) == y[known]).sum()), int(known.sum())


def combine(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One gate's numbers over every provider: at the top level the worst of each across
    providers (CPU's where they agree), each provider's own under ``by_provider``."""
    out = dict(next(iter(runs.values())))  # gate_providers lists CPU first
    worse = {
        "max_abs_error": max,
        "mean_abs_error": max,
        "max_rel_error": max,
        "top1_disagreements": max,
        "accuracy_drop": max,
        "top1_agreement": min,
        "accuracy_int8": min,
    }
    for r in runs.values():
        for key, pick in worse.items():
            if out.get(key) is not None and r.get(key) is not None:
                out[key] = pick(out[key], r[key])
        if "allclose" in r:
            out["allclose"] = bool(out["allclose"] and r["allclose"])
    out["passed"] = all(r["passed"] for r in runs.values())
    out["by_provider"] = {short(p): r for p, r in runs.items()}
    return out


def int8_summary(tried: dict[str, Any]) -> str:
    """What int8 tried, in one line: the steps and their logits SNR on training images."""
    steps = "; ".join(f"{s['step']} -> {s['logits_snr_db']:.1f} dB" for s in tried["tried"])
    return f"tried {steps} (logits SNR vs fp32 on {tried['probe_images']} training images)"


def fp32_parity(reference: np.ndarray, got: np.ndarray, *, real: bool) -> dict[str, Any]:
    """The fp32 gate's numbers, and whether they pass."""
    import numpy as np

    diff = np.abs(got - reference)
    allclose = bool(np.allclose(got, reference, atol=ATOL, rtol=RTOL))
    top1 = reference.argmax(1) == got.argmax(1)
    return {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "max_rel_error": float((diff / (np.abs(reference) + 1e-12)).max()),
        "allclose": allclose,
        "atol": ATOL,
        "rtol": RTOL,
        "top1_agreement": float(top1.mean()),
        "top1_disagreements": int((~top1).sum()),
        "top1_gate": "every image" if real else "not applied (random inputs)",
        "passed": allclose and (not real or bool(top1.all())),
    }
