"""What trains and how: requires_grad per stage, the optimizer's groups, the schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import TrainingError, UsageError
from zoo.contract.types import Phase

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState

__all__ = ["build_optimizer", "check_weights", "set_trainable", "warmup_cosine"]


def set_trainable(state: RunState, trainable: Sequence[int]) -> None:
    """Stages in ``trainable`` train; the others are frozen, with BatchNorm in eval mode
    so that their running statistics keep the pretrained values."""
    chosen = set(trainable)
    state.model.train()
    for i, (_, container) in enumerate(state.stages):
        container.requires_grad_(i in chosen)
        if i not in chosen:
            container.eval()
            for p in container.parameters():
                p.grad = None
    if state.prepared is not None:  # a strategy chose its parameters itself
        chosen_params = {id(p) for p in state.prepared}
        for p in state.model.parameters():
            p.requires_grad_(id(p) in chosen_params)


def _groups(state: RunState, phase: Phase) -> list[dict[str, Any]]:
    """One group per stage (at ``lr * lr_scale``), split into decayed and not decayed."""
    named: list[tuple[str, int, float, list[Any]]] = []
    if state.prepared is not None:
        named.append(("prepared", -1, phase.lr, list(state.prepared)))
    else:
        for i in phase.stages_in_optimizer():
            name, container = state.stages[i]
            named.append(
                (name, i, phase.lr * phase.lr_scale.get(i, 1.0), list(container.parameters()))
            )
    groups: list[dict[str, Any]] = []
    for name, stage, lr, params in named:
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        for plist, wd, suffix in (
            (decay, state.recipe.weight_decay, ""),
            (no_decay, 0.0, ".no_decay"),
        ):
            if plist:
                groups.append(
                    {
                        "params": plist,
                        "lr": lr,
                        "weight_decay": wd,
                        "stage": stage,
                        "name": name + suffix,
                    }
                )
    return groups


def build_optimizer(state: RunState, phase: Phase) -> Any:
    import torch

    groups = _groups(state, phase)
    if not groups:
        raise UsageError(f"the {phase.name} phase trains no parameters")
    if state.recipe.optimizer == "sgd":
        momentum = state.recipe.momentum
        return torch.optim.SGD(groups, lr=phase.lr, momentum=momentum, nesterov=momentum > 0)
    return torch.optim.AdamW(groups, lr=phase.lr)


def warmup_cosine(optimizer: Any, total_steps: int, warmup_steps: int) -> Any:
    """torch's LambdaLR: linear warm-up to each group's rate, then cosine decay to 0."""
    from torch.optim.lr_scheduler import LambdaLR

    total = max(1, total_steps)
    warmup = max(0, min(warmup_steps, total - 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def check_weights(state: RunState, epoch: int) -> None:
    """Non-finite weights after an epoch stop the run: nothing of them is registered."""
    import torch

    for name, p in state.model.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p.detach()).all()):
            raise TrainingError(
                f"the weights became non-finite in epoch {epoch} ({name}); the run stopped "
                "and nothing was registered. Lower the learning rate or check the data"
            )
