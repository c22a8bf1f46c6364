"""Batch normalisation folded into the convolution before it, for a pass that only reads
a model: the fills of the feature and prefix caches (zoo/engine/features.py).

In eval mode a ``BatchNorm2d`` is an affine map per channel, ``y * s + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``; after a convolution it is the
same convolution with its weights scaled by ``s`` and a bias of ``t`` (plus the old bias
times ``s``). Folded, the pass no longer reads and writes every activation once more for
the normalisation, which on a CPU costs about as much as the convolutions of a depthwise
network (EfficientNet-Lite0, 224 px, float32, 2 cores: 41 -> 25 ms an image; bench/
probe_process.py). Inference engines do the same (ONNX Runtime, TensorRT).

Which pairs fold is found, not assumed: on one pass over the example, a normalisation
folds with the convolution whose output tensor it receives, when each of the two ran once.
A normalisation module takes no more part in the pass once folded: a plain
``BatchNorm2d`` becomes the identity, timm's ``BatchNormAct2d`` its dropout and
activation; other kinds are left alone. The folded model must then give what the original
gave on the example (the caller's ``run``, computed in float32 without autocast), else
nothing stays folded: a convolution whose output something else reads too, or one whose
forward changes its weights, fails that check. At the block's end the original parameter
objects are put back, so the model (its state dict, its optimiser's parameters) is as it
was, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["folded", "pairs"]

RTOL = 1e-4  # float32 rounding of a folded network, measured on Lite0: 2e-6 of the output
ATOL = 1e-4  # times the largest value of what ``run`` returns


@dataclass
class _Fold:
    conv: nn.Module
    norm: nn.Module
    weight: Any  # the convolution's own parameters, put back at the end
    bias: Any


def _tensors(value: Any) -> list[torch.Tensor]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _after_normalising(norm: nn.Module) -> Callable[[Any], Any] | None:
    """What ``norm`` still does once its normalisation is in the convolution, or None
    when zoo does not know its kind."""
    from torch import nn

    if type(norm) is nn.BatchNorm2d:
        return lambda x: x
    act, drop = getattr(norm, "act", None), getattr(norm, "drop", None)
    if type(norm).__name__ == "BatchNormAct2d" and isinstance(act, nn.Module) and drop is not None:
        return lambda x: act(drop(x))
    return None


def pairs(model: nn.Module, run: Callable[[], Any]) -> list[tuple[nn.Module, nn.Module]]:
    """(convolution, normalisation) pairs that can fold, found on one ``run()``."""
    from torch import nn
    from torch.nn.utils import parametrize

    outputs: dict[int, tuple[Any, nn.Module]] = {}  # id(output) -> (output, conv)
    calls: dict[int, int] = {}
    found: list[tuple[nn.Module, nn.Module]] = []

    def conv_hook(module: nn.Module, _args: Any, out: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        outputs[id(out)] = (out, module)

    def norm_hook(module: nn.Module, args: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1
        seen = outputs.get(id(args[0])) if args else None
        if seen is not None and seen[0] is args[0]:
            found.append((seen[1], module))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and not parametrize.is_parametrized(module):
            handles.append(module.register_forward_hook(conv_hook))
        elif (
            isinstance(module, nn.BatchNorm2d)
            and _after_normalising(module) is not None
            and module.running_mean is not None
            and module.running_var is not None
        ):
            handles.append(module.register_forward_pre_hook(norm_hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return [(c, n) for c, n in found if calls[id(c)] == 1 and calls[id(n)] == 1]


def _fold(conv: Any, norm: Any) -> _Fold:
    import torch
    from torch import nn

    done = _Fold(conv, norm, conv.weight, conv.bias)
    with torch.no_grad():
        var = norm.running_var.double()
        gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(var)
        beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(var)
        scale = gamma / torch.sqrt(var + norm.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
        shape = (-1,) + (1,) * (conv.weight.dim() - 1)
        dtype = conv.weight.dtype
        conv.weight = nn.Parameter(
            (conv.weight.double() * scale.view(shape)).to(dtype), requires_grad=False
        )
        conv.bias = nn.Parameter(
            ((bias - norm.running_mean.double()) * scale + beta).to(dtype), requires_grad=False
        )
    norm.forward = _after_normalising(norm)  # an instance attribute: hooks still run
    return done


def _unfold(folds: Sequence[_Fold]) -> None:
    for f in reversed(folds):
        f.conv.weight = f.weight
        if f.bias is None:
            f.conv.register_parameter("bias", None)
        else:
            f.conv.bias = f.bias
        del f.norm.forward


def _close(got: Any, want: Any) -> bool:
    import torch

    a, b = _tensors(got), _tensors(want)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            if x is not y:
                return False
            continue
        x, y = x.float(), y.float()
        scale = float(y.abs().max()) if y.numel() else 1.0
        if x.shape != y.shape or not torch.allclose(x, y, rtol=RTOL, atol=ATOL * (scale or 1.0)):
            return False
    return True


@contextmanager
def folded(model: nn.Module, run: Callable[[], Any]) -> Iterator[int]:
    """Inside, the model in eval mode with every foldable normalisation folded into its
    convolution; yields how many were (0: none could, or the check failed). ``run()``
    runs the pass on an example and returns what the caller keeps of it (a tensor or a
    list of them); it is called twice, without gradients, in float32."""
    import torch

    from zoo.contract.precision import exact_fp32

    was_training = model.training
    model.eval()
    device = next((p.device.type for p in model.parameters()), "cpu")

    def plain() -> Any:
        with torch.no_grad(), torch.autocast(device, enabled=False), exact_fp32():
            return [t if t is None else t.detach().clone() for t in _tensors(run())]

    folds: list[_Fold] = []
    try:
        want: list[Any] = []  # the unfolded pass's output, kept from the pass that finds pairs
        found = pairs(model, lambda: want.extend(plain()))
        for conv, norm in found:
            folds.append(_fold(conv, norm))
        if folds and not _close(plain(), want):
            _unfold(folds)
            folds = []
        yield len(folds)
    finally:
        _unfold(folds)
        model.train(was_training)
