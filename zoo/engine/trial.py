"""A short trial for the search (``search.py``): train a plan on an inner split of the
training images and score it on the inner hold-out, then put the model back as it was.

The trial runs the engine's own phases on a copy of the run's state whose split is the
inner one, so it trains exactly as the run would (prefix cache, schedules, seeding);
the weights, RNG states and record of the run are restored afterwards.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from zoo.data import Split
from zoo.engine.model import init_head
from zoo.engine.phases import start_phase
from zoo.engine.seeding import rng_state, set_rng_state
from zoo.types import TrainingPlan

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState

__all__ = ["hold_out", "run_trial"]


def hold_out(
    state: RunState, rows: list[int], seed: int, share: float
) -> tuple[list[int], list[int]] | None:
    """A stratified, seeded (inner train, hold-out) split of the training rows; None when
    a class has fewer than two images or the hold-out could not hold one per class."""
    from sklearn.model_selection import train_test_split

    labels = [state.data.samples[i].label for i in rows]
    try:
        inner, held = train_test_split(
            rows, test_size=share, stratify=labels, random_state=seed, shuffle=True
        )
    except ValueError:
        return None
    return sorted(inner), sorted(held)


def run_trial(state: RunState, plan: TrainingPlan, inner: list[int], held: list[int]) -> float:
    """Accuracy on ``held`` of ``plan`` trained on ``inner`` from the run's start weights."""
    saved = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
    rng = rng_state()
    trial = replace(
        state,
        split=Split(tuple(inner), tuple(held)),
        plan=plan,
        history=[],
        best={"epoch": 0},
        completed=0,
        run_id=None,
        optimizer_groups=[],
        rank_records=[],
        callbacks=(),
        prepared=None,
    )
    try:
        init_head(state.backbone)
        runner = None
        for phase in plan.phases:
            runner = start_phase(trial, phase, 0)
            for unit in runner.units(0):
                runner.train(unit)
                trial.completed += 1
        assert runner is not None
        return float(runner.evaluate(held).accuracy)
    finally:
        state.model.load_state_dict(saved)
        set_rng_state(rng)
