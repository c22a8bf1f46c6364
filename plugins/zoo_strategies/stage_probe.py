"""The multi-stage probe (Head2Toe-style, Evci et al. 2022): one linear head on the pooled,
standardised outputs of every stage, not only the last one's.

The strategy only plans: one head-only phase on cached features with
``features="stages"``. The engine caches every stage's pooled output (the stage-feature
cache ``auto`` reads), standardises the concatenation on the training rows, fits the new
head to convergence as the L2 logistic regression auto's cross-validation scores
(``fit="lbfgs"``: scikit-learn's L-BFGS, C = 1, through the engine so that it keeps the
engine's validation record, checkpoint and MLflow records), and registers the backbone
plus that head as one module (``zoo.catalog.heads.StageProbe``): docs/strategies.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zoo import Phase, StrategySettings, TrainingPlan, UsageError

__all__ = ["StageProbe"]


@dataclass(frozen=True)
class StageProbe:
    """A new head on every stage's pooled features, concatenated and standardised."""

    name: str = "stage-probe"
    summary: str = (
        "train only a new head on the pooled features of every stage, extracted once and "
        "cached (Head2Toe-style multi-stage probe)"
    )

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        if len(stages) < 2:
            raise UsageError(
                f"the backbone exposes {len(stages)} stage(s); the multi-stage probe needs at "
                "least a body and a head"
            )
        if settings.epochs is not None or settings.lr is not None:
            raise UsageError(
                "stage-probe fits its head to convergence (L-BFGS), with no epochs or "
                "learning rate: leave out --epochs and --lr"
            )
        head = len(stages) - 1
        phase = Phase(
            "probe",
            1,
            1.0,  # unused by an L-BFGS fit
            ((head,),),
            head_on_features=True,
            augment=False,
            features="stages",
            fit="lbfgs",
        )
        return TrainingPlan(self.name, (phase,), {"fit": "lbfgs", "C": 1.0})
