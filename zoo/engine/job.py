"""``finetune(recipe)``: one fine-tuning job, start to registration.

Sets the recipe up (``setup.py``: refusals write nothing), checks every process read the
same data, wires the run's listeners in their order (``events.py``) and runs the loop
(``run.py``) under the recipe's lock. The loop emits events; the listeners own the
concerns: the best epoch, checkpoints and the terminal (``listeners.py``), MLflow and
registration (``tracking.py``, only when the run registers), then the caller's callbacks.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from zoo.contract.errors import DataError, UsageError
from zoo.engine import checkpoint
from zoo.engine.events import Callback, Listener
from zoo.engine.listeners import BestEpoch, Checkpoints, Terminal
from zoo.engine.recipe import Recipe
from zoo.engine.run import run
from zoo.engine.setup import prepare, run_dir
from zoo.engine.state import FinetuneResult, RunState
from zoo.engine.tracking import Tracking

__all__ = ["FinetuneResult", "clean_run", "finetune", "run_dir", "wire"]


def finetune(
    recipe: Recipe,
    *,
    resume: bool = False,
    restart: bool = False,
    again: bool = False,
    register: bool = True,
    callbacks: Sequence[Callback] = (),
    folder: Path | None = None,
) -> FinetuneResult:
    """Run (or resume) one fine-tuning recipe and register its best epoch.

    A recipe that already finished on the same data returns its registered result
    (``already_registered``) unless ``again``. ``register=False`` trains and evaluates
    without MLflow or the registry (library use, experiments); the result then carries
    the trained backbone. ``callbacks`` watch the run (``zoo.engine.Callback``: the loop's
    events, after the engine's own listeners, and auto's candidates).

    One process at a time runs a recipe (``checkpoint.recipe_lock``): an identical
    command waits, then finds the result. Under torchrun the launching process holds the
    lock (``distributed.launch_torchrun``), so the ranks never wait for each other on
    it. The lock is taken once the recipe is set up: a refusal writes nothing.

    ``folder``: train in this (empty) folder instead of the recipe's checkpoint folder
    (``run_dir``): nothing of an earlier run of the same recipe is found, resumed or
    overwritten, and the recipe's lock is not taken (``zoo registry reproduce``).
    """
    if resume and restart:
        raise UsageError(
            "--resume and --restart contradict each other: --resume continues this "
            "recipe's checkpoint, --restart discards it; pass one of them"
        )
    start = time.monotonic()
    # refusals write nothing
    state = prepare(recipe, register=register, callbacks=callbacks, folder=folder)
    _same_data_everywhere(state)
    state.listeners = wire(state, callbacks, again=again)
    if "LOCAL_RANK" in os.environ or folder is not None:
        return run(state, start, resume=resume, restart=restart, again=again)
    with checkpoint.recipe_lock(recipe):
        return run(state, start, resume=resume, restart=restart, again=again)


def wire(state: RunState, callbacks: Sequence[Listener] = (), *, again: bool) -> list[Listener]:
    """The run's listeners, in the order every event reaches them (events.py): the best
    epoch before the checkpoint that records it, the checkpoint before MLflow logs the
    epoch, the terminal line after both, the caller's callbacks last."""
    tracking: list[Listener] = [Tracking(state, again=again)] if state.register else []
    return [BestEpoch(), Checkpoints(), *tracking, Terminal(), *callbacks]


def _same_data_everywhere(state: RunState) -> None:
    """Every node read its own copy of the data: the job goes on only if they agree."""
    digests = state.dist.gather(state.data.digest)
    if len(set(digests)) > 1:
        other = next(r for r, d in enumerate(digests) if d != digests[0])
        raise DataError(
            f"the data differs between the processes of the job: rank 0 read "
            f"{digests[0]}, rank {other} read {digests[other]} from {state.recipe.data}; "
            "give every node the same files at the same path"
        )


def clean_run(recipe: Recipe) -> None:
    """Remove a run's checkpoints (``--restart`` does this before starting)."""
    shutil.rmtree(run_dir(recipe), ignore_errors=True)
