"""zoo strategy plugins: the core fine-tuning strategies (linear-probe, partial, full, ...).

Each strategy is a small object whose ``plan`` maps the backbone's stage names (input ->
head) and the user's settings to a :class:`zoo.TrainingPlan`; the engine does the rest. The
rules behind them are the classic transfer-learning ones (Yosinski et al. 2014; Kumar et al.
2022 for LP-FT; Howard & Ruder 2018 for gradual unfreezing); docs/strategies.md says when
to use which, and records the defaults' measured effect.

Written only against zoo's public API and registered through the ``zoo`` entry-point group,
exactly as a third-party strategy would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zoo
from zoo import Phase, StrategySettings, TrainingPlan, UsageError
from zoo_strategies.auto import Auto
from zoo_strategies.stage_probe import StageProbe

__all__ = [
    "STRATEGIES",
    "Auto",
    "EarlyLayers",
    "Full",
    "Gradual",
    "LayerDecay",
    "LinearProbe",
    "LpFt",
    "Partial",
    "StageProbe",
    "register_strategies",
]

# Defaults, measured on docs/finetune.md's protocol (8 openclipart categories,
# EfficientNet-Lite0): see docs/strategies.md for the figures behind each.
PROBE_EPOCHS = 60  # passes over the cached features: cheap, and converged by then
PROBE_LR = 1e-3
FINETUNE_EPOCHS = 5
FINETUNE_LR = 1e-4  # lp-ft's fine-tuning phase: the head is already good
PARTIAL_LR = 5e-4  # partial starts from a new head: a higher rate pays off
PARTIAL_STAGES = 1  # stages below the head that train in partial / lp-ft
FULL_LR = 1e-4
LAYER_DECAY = 0.75


def _body(stages: Sequence[str]) -> int:
    """Number of stages below the head."""
    if len(stages) < 2:
        raise UsageError(
            f"the backbone exposes {len(stages)} stage(s); fine-tuning strategies need at "
            "least a body and a head"
        )
    return len(stages) - 1


def _unfreeze(settings: StrategySettings, stages: Sequence[str], default: int) -> int:
    body = _body(stages)
    k = default if settings.unfreeze is None else settings.unfreeze
    if not 0 <= k <= body:
        raise UsageError(
            f"--unfreeze {k} is out of range: this backbone has {body} stages below its head "
            f"({', '.join(stages[:-1])}); choose 0..{body}"
        )
    return k


def _option(settings: StrategySettings, key: str, default: Any) -> Any:
    return settings.options.get(key, default)


def _top(stages: Sequence[str], k: int) -> tuple[int, ...]:
    """The last k body stages plus the head."""
    head = len(stages) - 1
    return (*range(head - k, head), head)


@dataclass(frozen=True)
class LinearProbe:
    """Fixed feature extractor: only a new head trains, on features computed once."""

    name: str = "linear-probe"
    summary: str = (
        "train only a new head on frozen features, extracted once and cached "
        "(small data close to ImageNet)"
    )

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        head = len(stages) - 1
        _body(stages)
        epochs = settings.epochs or PROBE_EPOCHS
        lr = settings.lr or PROBE_LR
        phase = Phase("probe", epochs, lr, ((head,),), head_on_features=True, augment=False)
        return TrainingPlan(self.name, (phase,), {"epochs": epochs, "lr": lr})


@dataclass(frozen=True)
class Partial:
    """The last K stages and the head train; everything below stays frozen."""

    name: str = "partial"
    summary: str = "train the last K stages (--unfreeze K) and the head; the rest stays frozen"

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        k = _unfreeze(settings, stages, PARTIAL_STAGES)
        epochs = settings.epochs or FINETUNE_EPOCHS
        lr = settings.lr or PARTIAL_LR
        augment = bool(_option(settings, "augment", False))
        phase = Phase("finetune", epochs, lr, (_top(stages, k),), augment=augment)
        return TrainingPlan(
            self.name,
            (phase,),
            {"unfreeze": k, "epochs": epochs, "lr": lr, "augment": augment},
        )


@dataclass(frozen=True)
class Full:
    """Every stage trains (large data, or a domain far from the pretraining one)."""

    name: str = "full"
    summary: str = "train every stage at one learning rate (large data)"

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        _body(stages)
        epochs = settings.epochs or FINETUNE_EPOCHS
        lr = settings.lr or FULL_LR
        augment = bool(_option(settings, "augment", True))
        everything = tuple(range(len(stages)))
        phase = Phase("finetune", epochs, lr, (everything,), augment=augment)
        return TrainingPlan(self.name, (phase,), {"epochs": epochs, "lr": lr, "augment": augment})


@dataclass(frozen=True)
class LpFt:
    """Linear probe first, then fine-tune the last K stages starting from that head.

    Fine-tuning with a random head distorts the pretrained features while the head is
    still wrong; starting from the probe's head avoids that (Kumar et al. 2022).
    """

    name: str = "lp-ft"
    summary: str = "linear probe, then fine-tune the last K stages (--unfreeze K) from that head"

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        head = len(stages) - 1
        k = _unfreeze(settings, stages, PARTIAL_STAGES)
        probe_epochs = int(_option(settings, "probe_epochs", PROBE_EPOCHS))
        probe_lr = float(_option(settings, "probe_lr", PROBE_LR))
        epochs = settings.epochs or FINETUNE_EPOCHS
        lr = settings.lr or FINETUNE_LR
        augment = bool(_option(settings, "augment", False))
        phases = (
            Phase(
                "probe", probe_epochs, probe_lr, ((head,),), head_on_features=True, augment=False
            ),
            Phase("finetune", epochs, lr, (_top(stages, k),), augment=augment),
        )
        return TrainingPlan(
            self.name,
            phases,
            {
                "unfreeze": k,
                "probe_epochs": probe_epochs,
                "probe_lr": probe_lr,
                "epochs": epochs,
                "lr": lr,
                "augment": augment,
            },
        )


@dataclass(frozen=True)
class LayerDecay:
    """Every stage trains; each stage's learning rate is ``decay`` times the one above.

    The scales are put on the optimizer's parameter groups themselves, so they hold with
    any scheduler (timm's ``layer_decay`` only acts through timm's own schedulers).
    """

    name: str = "layer-decay"
    summary: str = "train every stage, learning rate decaying by stage from the head down"

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        _body(stages)
        decay = float(_option(settings, "decay", LAYER_DECAY))
        if not 0.0 < decay <= 1.0:
            raise UsageError(f"layer-decay's decay must be in (0, 1], got {decay}")
        epochs = settings.epochs or FINETUNE_EPOCHS
        lr = settings.lr or 5 * FULL_LR
        augment = bool(_option(settings, "augment", True))
        head = len(stages) - 1
        scales = {i: decay ** (head - i) for i in range(len(stages))}
        phase = Phase(
            "finetune",
            epochs,
            lr,
            (tuple(range(len(stages))),),
            lr_scale=scales,
            augment=augment,
        )
        return TrainingPlan(
            self.name,
            (phase,),
            {"decay": decay, "epochs": epochs, "lr": lr, "augment": augment},
        )


@dataclass(frozen=True)
class Gradual:
    """Unfreeze one stage per epoch from the top (fastai's gradual unfreezing).

    Epoch 1 trains the head, epoch 2 the head and the last stage, and so on, up to
    ``--unfreeze K`` stages below the head (default: all of them).
    """

    name: str = "gradual"
    summary: str = "unfreeze one stage per epoch from the top (up to --unfreeze K)"

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        body = _body(stages)
        k = _unfreeze(settings, stages, body)
        epochs = settings.epochs or max(FINETUNE_EPOCHS, k + 1)
        lr = settings.lr or FINETUNE_LR
        augment = bool(_option(settings, "augment", True))
        schedule = tuple(_top(stages, min(e, k)) for e in range(min(epochs, k + 1)))
        phase = Phase("gradual", epochs, lr, schedule, augment=augment)
        return TrainingPlan(
            self.name,
            (phase,),
            {"unfreeze": k, "epochs": epochs, "lr": lr, "augment": augment},
        )


@dataclass(frozen=True)
class EarlyLayers:
    """Keep the first stages as a fixed extractor; re-initialise and train the rest.

    For a domain far from the pretraining data, the early, generic layers transfer and
    the late, specific ones do not (Yosinski et al. 2014): the last ``--unfreeze K``
    stages below the head (default: the upper half) are re-initialised and trained from
    scratch with a new head, on top of the frozen early stages. ``keep`` in the recipe's
    strategy_settings says the same from below (keep the first N stages).
    """

    name: str = "early-layers"
    summary: str = (
        "keep the first stages frozen, re-initialise and train the later ones "
        "(a domain far from ImageNet)"
    )

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        body = _body(stages)
        keep_opt = settings.options.get("keep")
        if keep_opt is not None:
            if settings.unfreeze is not None:
                raise UsageError("early-layers takes --unfreeze K or keep: N, not both")
            keep = int(keep_opt)
            if not 1 <= keep <= body:
                raise UsageError(f"early-layers keep must be in 1..{body}, got {keep}")
            k = body - keep
        else:
            k = _unfreeze(settings, stages, body // 2)
            keep = body - k
        if keep < 1:
            raise UsageError("early-layers must keep at least the first stage frozen")
        epochs = settings.epochs or 2 * FINETUNE_EPOCHS
        lr = settings.lr or 1e-3
        augment = bool(_option(settings, "augment", True))
        top = _top(stages, k)
        phase = Phase("finetune", epochs, lr, (top,), reinit=top[:-1], augment=augment)
        return TrainingPlan(
            self.name,
            (phase,),
            {"keep": keep, "unfreeze": k, "epochs": epochs, "lr": lr, "augment": augment},
        )


STRATEGIES = (
    LinearProbe(),
    Partial(),
    Full(),
    LpFt(),
    LayerDecay(),
    Gradual(),
    EarlyLayers(),
    StageProbe(),
)


@zoo.hookimpl
def register_strategies(register: Any) -> None:
    for strategy in (*STRATEGIES, Auto()):
        register(strategy)
