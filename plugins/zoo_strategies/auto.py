"""``--strategy auto``: offer the engine's search the plans worth comparing.

The choice itself is made in the core (``zoo/engine/search.py``), by evidence from the
training split alone: cheap candidates (a head on cached features) by k-fold
cross-validation, trials (stages that train on images) by a short inner validation on
the same hold-out as the cheap winner; the first candidate offered (the linear probe) is
kept unless another beats it with evidence (a one-sided test, ``zoo/engine/evidence.py``).
This module only says which plans to compare and in which order, simplest first
(docs/strategies.md "auto").

What is left of the old rule (images per class): the order in which the partial trials
are tried, so that under a tight ``--budget`` the one the rule of thumb prefers is tried
first. It no longer chooses: on data it was not tuned on it chose ``partial`` and scored
below the plain probe (issue 20).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from zoo import Candidate, StrategySettings, TrainingPlan, UsageError

__all__ = ["AUTO_MAX_UNFREEZE", "AUTO_UNFREEZE_FROM", "STAGE_PROBE", "Auto"]

# The partial candidates train 1..AUTO_MAX_UNFREEZE stages below the head unless
# --unfreeze K says otherwise (a trial costs a short fine-tune each).
AUTO_MAX_UNFREEZE = 3
# The old rule, now only the trials' order: one more stage for each of these median
# images-per-class counts reached (30-99: the last stage; 100-299: two; 300+: three).
AUTO_UNFREEZE_FROM = (30, 100, 300)
# The multi-stage probe's strategy (another plugin registers it): a candidate by name.
STAGE_PROBE = "stage-probe"


def _median_per_class(summary: Any) -> int:
    counts = sorted(summary.class_counts.values())
    return counts[len(counts) // 2] if counts else 0


@dataclass(frozen=True)
class Auto:
    """Choose for the user by evidence from the training split (docs/strategies.md)."""

    name: str = "auto"
    summary: str = (
        "compare the probe, the multi-stage probe and short partial trials on the training "
        "split (cross-validation, an inner hold-out) and train the best"
    )

    def candidates(
        self,
        stages: Sequence[str],
        settings: StrategySettings,
        summary: Any,
        parents: int = 1,
    ) -> list[Candidate]:
        """The plans to compare, cheap ones first, then trials in the rule's order.

        ``--unfreeze K`` caps the partial trials at K stages (0: frozen candidates only).
        ``parents`` is the number of backbones: with several, their branches stay frozen
        and the one candidate is the multi-backbone probe (the linear probe on their joined
        features); comparing it with each backbone's own probe is not offered yet."""
        body = len(stages) - 1
        if body < 1:
            raise UsageError(
                f"the backbone exposes {len(stages)} stage(s); auto needs at least a body "
                "and a head"
            )
        if settings.unfreeze is None:
            cap = min(body, AUTO_MAX_UNFREEZE)
        elif 0 <= settings.unfreeze <= body:
            cap = settings.unfreeze
        else:
            raise UsageError(
                f"--unfreeze {settings.unfreeze} is out of range: with auto it caps the "
                f"partial candidates, and this backbone has {body} stages below its head; "
                f"choose 0..{body}"
            )
        options = {k: v for k, v in settings.options.items() if k != "budget"}
        frozen = StrategySettings(None, settings.epochs, settings.lr, options)
        if parents > 1:  # the branches stay frozen: the probe on their joined features
            return [
                Candidate(
                    "linear-probe",
                    frozen,
                    "cheap",
                    (None,),
                    label="multi-backbone probe",
                    prior=f"{parents} frozen backbones, features side by side",
                )
            ]
        found: list[Candidate] = [
            Candidate("linear-probe", frozen, "cheap", (None,), prior="the baseline"),
            Candidate(
                STAGE_PROBE,  # fitted to convergence: no epochs or learning rate
                StrategySettings(None, None, None, options),
                "cheap",
                (*stages[:-1], None),  # as it registers: every stage's, then the head's input
                prior="every stage's pooled features (Head2Toe)",
            ),
        ]
        per_class = _median_per_class(summary)
        ruled = max(1, sum(per_class >= n for n in AUTO_UNFREEZE_FROM))
        for k in sorted(range(1, cap + 1), key=lambda k: (abs(k - ruled), k)):
            found.append(
                Candidate(
                    "partial",
                    StrategySettings(k, settings.epochs, settings.lr, options),
                    "trial",
                    label=f"partial K={k}",
                    prior=f"{per_class} images per class: the rule of thumb's K is {ruled}",
                )
            )
        return found

    def plan(
        self, stages: Sequence[str], settings: StrategySettings, summary: Any = None
    ) -> TrainingPlan:
        raise UsageError(
            "auto is planned by the engine's search over its candidates: run it through "
            "`zoo finetune --strategy auto`"
        )
