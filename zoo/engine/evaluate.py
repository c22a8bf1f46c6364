"""Evaluation: loss, accuracy and predictions on the validation (or test) samples.

Three ways to run the same model: the classifier on cached features (a head-only phase),
the trainable suffix on the cached frozen prefix, or the whole model on images. Under DDP
each process evaluates its share and the sums and predictions are gathered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.engine.batches import image_batches, tensor_batches
from zoo.engine.caches import PrefixPlan, substituted

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo.engine.state import RunState

__all__ = ["Evaluation", "on_features", "on_images", "on_prefix"]


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    labels: list[int]  # in sample order (every process's share gathered)
    preds: list[int]

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_loss": self.loss, f"{prefix}_accuracy": self.accuracy}


def _reduce(state: RunState, loss_sum: float, labels: list[int], preds: list[int]) -> Evaluation:
    correct = sum(int(a == b) for a, b in zip(labels, preds, strict=True))
    loss_total, correct_total, count = state.dist.all_sum(
        [loss_sum, float(correct), float(len(labels))]
    )
    gathered = state.dist.gather((labels, preds))
    return Evaluation(
        loss_total / max(1.0, count),
        correct_total / max(1.0, count),
        [v for part in gathered for v in part[0]],
        [v for part in gathered for v in part[1]],
    )


def on_features(
    state: RunState,
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    indices: Sequence[int],
) -> Evaluation:
    """The classifier alone on cached features (every process computes all of it)."""
    import torch

    idx = torch.tensor(list(indices), dtype=torch.long)
    was_training = head.training
    head.eval()
    with torch.no_grad():
        logits = head(features[idx].to(state.rt.device)).float()
        y = labels[idx].to(state.rt.device)
        loss = float(state.criterion(logits, y))
        preds = logits.argmax(1).cpu().tolist()
    head.train(was_training)
    truth = labels[idx].tolist()
    correct = sum(int(a == b) for a, b in zip(truth, preds, strict=True))
    return Evaluation(loss, correct / max(1, len(truth)), truth, preds)


def on_prefix(
    state: RunState, prefix: tuple[PrefixPlan, torch.Tensor], indices: Sequence[int]
) -> Evaluation:
    """The trainable suffix on the cached output of the frozen prefix."""
    import torch

    plan, acts = prefix
    all_labels = torch.tensor(state.data.labels, dtype=torch.long)
    rows = torch.tensor(list(indices), dtype=torch.long)
    c, h, w = state.pre.input_size
    labels: list[int] = []
    preds: list[int] = []
    loss_sum = 0.0
    state.model.eval()
    with torch.no_grad(), state.rt.autocast()(), substituted(plan) as sub:
        for b in tensor_batches(len(rows), state.recipe.batch_size, 0, state.dist, False):
            idx = rows[b]
            plan.inject.value = state.rt.prepare(acts[idx].float())
            logits = sub(torch.zeros(len(idx), c, h, w, device=state.rt.device)).float().cpu()
            y = all_labels[idx]
            loss_sum += float(state.criterion(logits, y)) * len(idx)
            preds.extend(logits.argmax(1).tolist())
            labels.extend(y.tolist())
    return _reduce(state, loss_sum, labels, preds)


def on_images(state: RunState, indices: Sequence[int], model: Any = None) -> Evaluation:
    """The whole model on unaugmented images."""
    import torch

    model = state.model if model is None else model
    model.eval()
    labels: list[int] = []
    preds: list[int] = []
    loss_sum = 0.0
    loader = image_batches(state, indices, train=False, batch_size=state.recipe.batch_size, seed=0)
    with torch.no_grad(), state.rt.autocast()():
        for x_u8, y, _idx in loader:
            logits = model(state.rt.prepare(state.pre.normalize(x_u8))).float().cpu()
            loss_sum += float(state.criterion(logits, y)) * len(y)
            preds.extend(logits.argmax(1).tolist())
            labels.extend(y.tolist())
    return _reduce(state, loss_sum, labels, preds)
