"""Evaluation: loss, accuracy and predictions on the validation (or test) samples.

Three ways to run the same model: the classifier on cached features (a head-only phase),
the trainable suffix on the cached frozen prefix, or the whole model on images. Under DDP
each process evaluates its share and the sums and predictions are gathered. Sums and
predictions stay on the device until the end of the pass (one read, not one per batch).

Precision: the training loop evaluates in the run's precision (bf16 autocast where the
device computes bf16 natively, docs/finetune.md), and that is what chooses the registered
epoch. The figures registered with the weights are computed again in float32
(:func:`registered`), since the registered weights are float32 and everything that runs
them afterwards (``zoo export``'s gates, ``zoo predict`` on an fp32 export) computes in
float32: one accuracy per (weights, images). bf16 keeps 8 bits of mantissa; measured on
an AVX512-BF16 CPU, autocast moves the logits of an EfficientNet-Lite0 linear probe on
clip art by 2% (relative L2; no top-1 flip on its 120 images, median top-2 gap 0.78 in
probability) and those of timm's random test_efficientnet by 1.2% (1 flip in 200): a
prediction whose top two logits are closer than that flips (issue 22: one image in 23).
tests/test_eval_precision.py reproduces it with two logits bf16 cannot tell apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.contract.precision import BF16_AUTOCAST, FP32, TF32, exact_fp32
from zoo.engine.batches import image_batches, tensor_batches
from zoo.engine.caches import PrefixPlan, substituted

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo.engine.context import Runtime
    from zoo.engine.rows import Rows
    from zoo.engine.state import RunState

__all__ = [
    "BF16_AUTOCAST",
    "FP32",
    "TF32",
    "Evaluation",
    "Registered",
    "exact_fp32",
    "loop_precision",
    "on_features",
    "on_images",
    "on_prefix",
    "registered",
]


FEATURE_CHUNK = 8192  # cached feature rows scored at once (a chunk, not the cache, in memory)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    labels: list[int]  # in sample order (every process's share gathered)
    preds: list[int]

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_loss": self.loss, f"{prefix}_accuracy": self.accuracy}


def _reduce(state: RunState, sums: Any, labels: list[int], preds: Any) -> Evaluation:
    """``sums`` (loss x n, correct, n) and ``preds`` (on the device) read once, the sums
    added over the processes and the predictions gathered."""
    import torch

    pred_list: list[int] = torch.cat(preds).cpu().tolist() if preds else []
    loss_total, correct_total, count = state.dist.all_sum(sums).tolist()
    gathered = state.dist.gather((labels, pred_list))
    return Evaluation(
        loss_total / max(1.0, count),
        correct_total / max(1.0, count),
        [v for part in gathered for v in part[0]],
        [v for part in gathered for v in part[1]],
    )


def _add(sums: Any, state: RunState, logits: Any, y: Any) -> Any:
    """sums += (loss x n, correct, n) on the device; the batch's predictions."""
    pred = logits.argmax(1)
    sums[0] += state.criterion(logits, y).double() * len(y)
    sums[1] += (pred == y).sum()
    sums[2] += len(y)
    return pred


def on_features(
    state: RunState,
    head: nn.Module,
    features: torch.Tensor | Rows,
    labels: torch.Tensor,
    indices: Sequence[int],
) -> Evaluation:
    """The classifier alone on cached features (every process computes all of it), read
    ``FEATURE_CHUNK`` rows at a time."""
    import torch

    idx = torch.tensor(list(indices), dtype=torch.long)
    was_training = head.training
    head.eval()
    loss_sum, preds = 0.0, []
    with torch.no_grad():
        for start in range(0, len(idx), FEATURE_CHUNK):
            rows = idx[start : start + FEATURE_CHUNK]
            logits = head(features[rows].to(state.rt.device)).float()
            y = labels[rows].to(state.rt.device)
            loss_sum += float(state.criterion(logits, y)) * len(rows)
            preds += logits.argmax(1).cpu().tolist()
    head.train(was_training)
    truth = labels[idx].tolist()
    correct = sum(int(a == b) for a, b in zip(truth, preds, strict=True))
    n = max(1, len(truth))
    return Evaluation(loss_sum / n if len(truth) else float("nan"), correct / n, truth, preds)


def on_prefix(
    state: RunState, prefix: tuple[PrefixPlan, torch.Tensor | Rows], indices: Sequence[int]
) -> Evaluation:
    """The trainable suffix on the cached output of the frozen prefix."""
    import torch

    plan, acts = prefix
    dev = state.rt.device
    all_labels = torch.tensor(state.data.labels, dtype=torch.long)
    rows = torch.tensor(list(indices), dtype=torch.long)
    c, h, w = state.pre.input_size
    labels: list[int] = []
    preds: list[Any] = []
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    state.model.eval()
    with torch.no_grad(), state.rt.autocast()(), substituted(plan) as sub:
        for b in tensor_batches(len(rows), state.recipe.batch_size, 0, state.dist, False):
            idx = rows[b]
            plan.inject.value = state.rt.prepare(acts[idx].float())
            logits = sub(torch.zeros(len(idx), c, h, w, device=dev)).float()
            y = all_labels[idx]
            preds.append(_add(sums, state, logits, y.to(dev, non_blocking=True)))
            labels.extend(y.tolist())
    return _reduce(state, sums, labels, preds)


def on_images(
    state: RunState, indices: Sequence[int], model: Any = None, *, precision: str | None = None
) -> Evaluation:
    """The whole model on unaugmented images: in the run's precision, or (``precision``
    :data:`FP32`) in float32 whatever the run's."""
    import torch

    model = state.model if model is None else model
    model.eval()
    dev = state.rt.device
    labels: list[int] = []
    preds: list[Any] = []
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    loader = image_batches(state, indices, train=False, batch_size=state.recipe.batch_size, seed=0)
    numerics = exact_fp32 if precision == FP32 else state.rt.autocast()
    with torch.no_grad(), numerics():
        for x_u8, y, _idx in loader:
            logits = model(state.rt.prepare(state.pre.normalize(x_u8))).float()
            preds.append(_add(sums, state, logits, y.to(dev, non_blocking=True)))
            labels.extend(y.tolist())
    return _reduce(state, sums, labels, preds)


# ------------------------------------------------------------------------- precision


def loop_precision(rt: Runtime) -> str:
    """The precision the training loop computes (and evaluates) in on this runtime."""
    import torch

    if rt.bf16:
        return BF16_AUTOCAST
    if (
        rt.device.type == "cuda"
        and torch.backends.cudnn.allow_tf32
        and torch.cuda.get_device_capability(rt.device)[0] >= 8
    ):
        return TF32
    return FP32


@dataclass(frozen=True)
class Registered:
    """The figures registered with a run's weights and the precisions behind them.

    ``val`` and ``last_val`` are None when the loop's own figures are already float32
    (they stand as they are); ``test`` is always computed here, in float32."""

    precision: str  # of the registered val_* and test_* figures: FP32
    loop: str  # the training loop's: train_* figures and the choice of the epoch
    val: Evaluation | None
    last_val: Evaluation | None
    test: Evaluation | None


def registered_images(state: RunState) -> int:
    """How many images :func:`registered` evaluates (for its progress line)."""
    split = state.split
    if loop_precision(state.rt) == FP32 or not split.val:
        return len(split.test)
    again = int(state.history[-1]["epoch"]) != int(state.best["epoch"])
    return len(split.test) + len(split.val) * (2 if again else 1)


def registered(state: RunState, last_weights: Mapping[str, Any]) -> Registered:
    """The registered (best) epoch's validation and test figures, and the last epoch's
    validation figures, in float32 (every process takes part). ``state.model`` holds the
    registered weights; ``last_weights`` are the last epoch's."""
    loop = loop_precision(state.rt)
    split = state.split
    test = on_images(state, split.test, precision=FP32) if split.test else None
    if loop == FP32 or not split.val:
        return Registered(FP32, loop, None, None, test)
    val = on_images(state, split.val, precision=FP32)
    last_val = val
    if int(state.history[-1]["epoch"]) != int(state.best["epoch"]):
        model = state.model
        best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(last_weights)
        try:
            last_val = on_images(state, split.val, precision=FP32)
        finally:
            model.load_state_dict(best)
    return Registered(FP32, loop, val, last_val, test)
