"""A short trial for the search (``search.py``): train a plan on an inner split of the
training images and score it on the inner hold-out, then put the model back as it was.

The trial runs the engine's own phases on a copy of the run's state whose split is the
inner one, so it trains exactly as the run would (prefix cache, schedules, seeding);
the weights, RNG states and record of the run are restored afterwards.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from zoo.contract.types import TrainingPlan
from zoo.data import Split
from zoo.engine.model import init_head
from zoo.engine.phases import start_phase
from zoo.engine.seeding import rng_state, set_rng_state

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState

__all__ = ["hold_out", "in_held_order", "run_trial"]


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


def run_trial(state: RunState, plan: TrainingPlan, inner: list[int], held: list[int]) -> list[bool]:
    """Whether ``plan``, trained on ``inner`` from the run's start weights, gets each image
    of ``held`` right (in ``held``'s order: the paired test in ``search.py`` needs it)."""
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
        result = runner.evaluate(held)
        expected = [state.data.samples[i].label for i in held]
        return in_held_order(result.labels, result.preds, expected, state.dist.world)
    finally:
        state.model.load_state_dict(saved)
        set_rng_state(rng)


def in_held_order(
    labels: list[int], preds: list[int], expected: list[int], world: int
) -> list[bool]:
    """Right or wrong per image, in the order of the rows the evaluation was given. A
    feature-head evaluation keeps that order; with several processes an image evaluation
    gathers each process's share (every ``world``-th position, ``batches.order``) rank
    after rank. The labels say which: a mismatch either way is an error, never a guess."""
    right = [a == b for a, b in zip(labels, preds, strict=True)]
    if labels == expected:
        return right
    n = len(expected)
    positions = [p for rank in range(world) for p in range(n)[rank::world]]
    if len(labels) == n and all(labels[j] == expected[p] for j, p in enumerate(positions)):
        out = [False] * n
        for value, position in zip(right, positions, strict=True):
            out[position] = value
        return out
    raise RuntimeError("a trial's evaluation came back in an order zoo cannot pair")
