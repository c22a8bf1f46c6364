"""Names of the precisions a figure is computed in, and float32 that is float32.

The registry records the precision of a version's metrics under the tag
``zoo.eval_precision`` (docs/registry.md); the training loop, ``zoo export``'s gates and
``zoo predict`` name theirs with the same words. :func:`exact_fp32` is what the registered
figures and the export gates' PyTorch reference are computed under: no TF32 in cuDNN or
cuBLAS (PyTorch's default for cuDNN convolutions on Ampere and later) and no bf16 inside
oneDNN's float32 kernels, whatever the process set.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

__all__ = ["BF16_AUTOCAST", "FP32", "TF32", "exact_fp32"]

FP32 = "fp32"  # float32 throughout
BF16_AUTOCAST = "bf16-autocast"  # torch.autocast(dtype=bfloat16): matmuls and convs in bf16
TF32 = "tf32"  # float32 tensors, cuDNN convolutions in TF32

# torch >= 2.9: per-backend float32 precision ("ieee" is plain float32)
_SETTINGS = ("cuda.matmul", "cudnn.conv", "cudnn.rnn", "mkldnn.matmul", "mkldnn.conv", "mkldnn.rnn")


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Plain float32 math inside; the process's settings are restored after."""
    import torch

    if not hasattr(torch.backends, "fp32_precision"):  # torch < 2.9: the legacy switches
        saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(saved[0])
            torch.backends.cudnn.allow_tf32 = saved[1]
        return
    backends = [functools.reduce(getattr, name.split("."), torch.backends) for name in _SETTINGS]
    previous = [b.fp32_precision for b in backends]
    for b in backends:
        b.fp32_precision = "ieee"
    try:
        yield
    finally:
        for b, value in zip(backends, previous, strict=True):
            b.fp32_precision = value
