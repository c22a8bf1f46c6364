"""How much faster the export runs: ONNX Runtime against PyTorch eager on the same inputs.

``zoo export`` runs it unless ``--no-benchmark``: batch 1 and 16 (a static batch: its
size), each timed for about a second after a warm-up, the median kept; the speed-ups
become the registered export's metrics and the whole table its ``benchmark.json``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["benchmark"]


def _time(fn: Any, budget_s: float, min_runs: int = 3) -> list[float]:
    fn()  # warm-up (allocations, kernel selection)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def benchmark(
    module: nn.Module,
    session: Any,
    input_shape: Sequence[int],
    *,
    batches: Sequence[int] = (1, 16),
    budget_s: float = 1.0,
) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch eager (inference_mode, channels_last), same inputs."""
    import statistics

    import torch

    eager = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)
    name = session.get_inputs()[0].name
    rows = []
    for batch in batches:
        gen = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, *input_shape, generator=gen)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        x_np = x.numpy()

        def run_torch(x_cl: torch.Tensor = x_cl) -> None:
            with torch.inference_mode():
                eager(x_cl)

        def run_ort(x_np: Any = x_np) -> None:
            session.run(None, {name: x_np})

        t_torch = statistics.median(_time(run_torch, budget_s))
        t_ort = statistics.median(_time(run_ort, budget_s))
        rows.append(
            {
                "batch": batch,
                "torch_ms": round(t_torch * 1e3, 3),
                "onnxruntime_ms": round(t_ort * 1e3, 3),
                "torch_images_per_s": round(batch / t_torch, 1),
                "onnxruntime_images_per_s": round(batch / t_ort, 1),
                "speedup": round(t_torch / t_ort, 2),
            }
        )
    import onnxruntime as ort

    return {
        "baseline": "PyTorch eager, torch.inference_mode, channels_last",
        "candidate": f"ONNX Runtime {ort.__version__} {session.get_providers()[0]}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": rows,
    }

