"""The multi-stage probe (Head2Toe-style, Evci et al. 2022): one linear head on the pooled,
standardised outputs of every stage, not only the last one's.

The strategy only plans: one head-only phase on cached features with
``features="stages"``. The engine caches every stage's pooled output (the stage-feature
cache ``auto`` reads), standardises the concatenation on the training rows, trains the new
head with AdamW and the recipe's weight decay (an L2-regularised logistic regression, run
through the engine so that it keeps the engine's per-epoch validation, checkpoints and
MLflow records), and registers the backbone plus that head as one module
(``zoo.heads.StageProbe``): docs/strategies.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from zoo import Phase, StrategySettings, TrainingPlan, UsageError

__all__ = ["STAGE_PROBE_EPOCHS", "STAGE_PROBE_LR", "StageProbe"]

# The linear probe's defaults (passes over cached features, peak learning rate), not tuned
# for this strategy on any figure.
STAGE_PROBE_EPOCHS = 60
STAGE_PROBE_LR = 1e-3


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
        head = len(stages) - 1
        epochs = settings.epochs or STAGE_PROBE_EPOCHS
        lr = settings.lr or STAGE_PROBE_LR
        phase = Phase(
            "probe",
            epochs,
            lr,
            ((head,),),
            head_on_features=True,
            augment=False,
            features="stages",
        )
        return TrainingPlan(self.name, (phase,), {"epochs": epochs, "lr": lr})
