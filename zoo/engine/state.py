"""What a run knows: its recipe, data, split, model, plan, and the record of its epochs.

``RunState`` is the one object the loop (``run.py``) hands to its parts (features,
phases, evaluation, finish) and to its listeners (``events.py``: the best epoch,
checkpoints, tracking, the terminal, callbacks); none of them imports the loop.
``FinetuneResult`` is what the run returns (and writes as ``result.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.types import TrainingPlan
from zoo.data import BadFile, ImageDataset, Preprocessing, Split
from zoo.engine.context import Dist, Runtime
from zoo.engine.recipe import Recipe
from zoo.progress import say

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo.contract.strategy import DeclaredStrategy

__all__ = ["FinetuneResult", "Parent", "RunState", "plan_to_dict"]


@dataclass(frozen=True)
class Parent:
    """A registered version being fine-tuned again (``models:/NAME/N``)."""

    reference: str  # what the lineage records as parent
    sha256: str | None
    license: str | None
    preprocessing: Preprocessing


@dataclass
class RunState:
    recipe: Recipe
    dist: Dist
    rt: Runtime
    dir: Path  # the run's checkpoint folder
    data: ImageDataset
    split: Split
    pre: Preprocessing
    backbone: Any  # zoo.Backbone
    plan: TrainingPlan
    strategy: DeclaredStrategy  # its optional members declared (zoo.contract.strategy)
    strategy_plugin: dict[str, Any]
    parent: Parent | None
    criterion: Any
    workers: int
    progress: Callable[[], Any]
    register: bool = True
    callbacks: Sequence[Any] = ()  # events.Callback (finetune(callbacks=...)), for auto's search
    listeners: Sequence[Any] = ()  # events.Listener: the run's, in their order (job.py)
    # zoo/registry/leakage.py's findings
    leakage: list[dict[str, Any]] = field(default_factory=list)
    # what the run has done so far (restored on resume)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0})
    completed: int = 0  # epochs done
    run_id: str | None = None
    optimizer_groups: list[list[dict[str, Any]]] = field(default_factory=list)
    rank_records: list[dict[str, Any]] = field(default_factory=list)
    prepared: list[Any] | None = None  # parameters a strategy's prepare_model chose
    # what the loop is doing now, for the listeners: the phase, its runner (optimizer,
    # scheduler), the last epoch's validation evaluation
    phase_index: int = 0
    runner: Any = None
    evaluation: Any = None
    registered: Any = None  # the model registration takes: what finalize_model returned

    @property
    def model(self) -> nn.Module:
        model: nn.Module = self.backbone.model
        return model

    @property
    def stages(self) -> list[tuple[str, nn.Module]]:
        return list(self.backbone.stages())

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.backbone.stages()]

    def note(self, message: str) -> None:
        if self.dist.main:
            say(message)


@dataclass
class FinetuneResult:
    name: str
    version: int | None
    model_uri: str | None
    run_id: str | None
    metrics: dict[str, float]
    best_epoch: int
    epochs: int
    resumed_from: int | None  # completed epochs found on disk, None for a fresh run
    skipped: list[BadFile]
    seconds: float
    world_size: int
    run_dir: str
    recipe: dict[str, Any]
    plan: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    ranks: list[dict[str, Any]] = field(default_factory=list)
    # The optimizer's parameter groups as built for each phase: name, stage, lr, decay.
    optimizer_groups: list[list[dict[str, Any]]] = field(default_factory=list)
    dataset_digest: str = ""
    # what chose the registered epoch: validation | last-epoch | fixed (finish.chosen_by)
    chosen_by: str = "validation"
    already_registered: bool = False  # True: the same run had finished; nothing was trained
    # precision of the val_*/test_* figures and of the loop (finish.evaluation_record)
    evaluation: dict[str, str] = field(default_factory=dict)
    backbone: Any = None  # the trained backbone (best epoch's weights); not serialised

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_uri": self.model_uri,
            "run_id": self.run_id,
            "metrics": self.metrics,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "resumed_from": self.resumed_from,
            "skipped": [{"path": b.path, "reason": b.reason} for b in self.skipped],
            "seconds": round(self.seconds, 2),
            "world_size": self.world_size,
            "run_dir": self.run_dir,
            "recipe": self.recipe,
            "plan": self.plan,
            "history": self.history,
            "ranks": self.ranks,
            "optimizer_groups": self.optimizer_groups,
            "dataset_digest": self.dataset_digest,
            "chosen_by": self.chosen_by,
            "already_registered": self.already_registered,
            "evaluation": self.evaluation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneResult:
        kw = dict(data)
        kw["skipped"] = [BadFile(**b) for b in kw.get("skipped", [])]
        known = set(cls.__dataclass_fields__) - {"backbone"}
        return cls(**{k: v for k, v in kw.items() if k in known})


def plan_to_dict(plan: TrainingPlan, names: Sequence[str]) -> dict[str, Any]:
    return {
        "strategy": plan.strategy,
        "settings": dict(plan.settings),
        "phases": [
            {
                "name": p.name,
                "epochs": p.epochs,
                "lr": p.lr,
                "trainable": [[names[i] for i in ep] for ep in p.trainable],
                "lr_scale": {names[i]: s for i, s in p.lr_scale.items()},
                "reinit": [names[i] for i in p.reinit],
                "head_on_features": p.head_on_features,
                "augment": p.augment,
                **({"features": p.features} if p.features != "head" else {}),
            }
            for p in plan.phases
        ],
    }
