"""What a run knows: its recipe, data, split, model, plan, and the record of its epochs.

``RunState`` is the one object the loop (``run.py``) hands to its parts (checkpoint,
features, phases, evaluation, tracking, finish); none of them imports the loop.
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

__all__ = ["Callback", "FinetuneResult", "Parent", "RunState"]


@dataclass(frozen=True)
class Parent:
    """A registered version being fine-tuned again (``models:/NAME/N``)."""

    reference: str  # what the lineage records as parent
    sha256: str | None
    license: str | None
    preprocessing: Preprocessing


class Callback:
    """Watches a run (tests, tools): each method is called at the moment its name says.

    ``finetune(recipe, callbacks=[...])`` adds them; the engine's own parts are not
    callbacks, so a callback sees the run exactly as the loop runs it.
    """

    def on_phase_start(self, state: RunState, phase_index: int, optimizer: Any) -> None: ...

    def on_epoch_end(self, state: RunState, record: dict[str, Any]) -> None: ...

    def on_candidate(self, state: RunState, label: str, rows: list[int], labels: list[int]) -> None:
        """auto's search is about to score a candidate on these samples (search.py)."""


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
    callbacks: Sequence[Callback] = ()
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

    def fire(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)


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
