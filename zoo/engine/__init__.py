"""The training engine: one loop for every backbone and strategy.

``finetune(Recipe(...))`` runs a recipe end to end (data, model, strategy plan, epochs
with checkpoints, MLflow metrics, registration); ``launch`` runs it under torchrun for
``--nproc-per-node K`` and ``--nnodes N``. Nothing here imports torch at module level.

    job.py         finetune(): set up, wire the listeners, run the loop (under the lock)
    run.py         the loop: phases -> epochs -> finish, emitting the events; no logger
    events.py      the loop's events; Listener, Callback (watchers), their order
    listeners.py   the best epoch (chosen_by), checkpoints after each epoch, the terminal
    setup.py       recipe -> RunState (strategy, licence, data, split, model, plan)
    state.py       RunState, FinetuneResult, the plan as a record
    model.py       describe, build, the strategy and its plan (validated)
    phases.py      FeaturePhase (head on cached features), ImagePhase (images / prefix)
    optimize.py    trainable stages, optimizer groups, LR schedule, loss/weight checks
    batches.py     sample order per epoch and process, DataLoaders
    features.py    feature, stage-feature and frozen-prefix caches of a run
    caches.py      tensor cache files; the frozen-prefix substitution
    evaluate.py    validation and test evaluation
    checkpoint.py  save, resume, refuse a resume onto other data; finished runs
    resume.py      what a job continues from, agreed by every node
    tracking.py    the MLflow listener (the only part that talks to the store)
    register.py    registration and lineage (the MLflow listener's, at run end)
    finish.py      the registered epoch's metrics, the test score, the result
    report.py      confusion matrix, per-class accuracy, figures
    context.py     device, precision, processes (Dist, Runtime)
    distributed.py torchrun launch (one node or several), the worker's entry point
    seeding.py     per-epoch seeds and RNG state
    reproduce.py   `zoo registry reproduce`: a version trained again from its lineage
    reproduce_plan.py  its recipe rebuilt from the lineage, the causes for other bytes
"""

from __future__ import annotations

from typing import Any

from zoo.engine.events import Callback, Listener
from zoo.engine.job import FinetuneResult, finetune, run_dir
from zoo.engine.recipe import Recipe, load_recipe_file

__all__ = [
    "Callback",
    "FinetuneResult",
    "Listener",
    "Recipe",
    "finetune",
    "launch",
    "load_recipe_file",
    "plan_only",
    "run_dir",
]


def plan_only(recipe: Recipe) -> dict[str, Any]:
    """The plan the recipe would train (``--dry-run``): data checked, model built, the
    strategy's decision made on the training split; nothing trained or registered."""
    from zoo.engine.setup import prepare
    from zoo.engine.state import plan_to_dict

    state = prepare(recipe, register=False, trials=False)
    return plan_to_dict(state.plan, state.names)


def launch(
    recipe: Recipe,
    *,
    resume: bool = False,
    restart: bool = False,
    again: bool = False,
    nodes: Any = None,
) -> FinetuneResult:
    """Run the recipe: in this process, or under torchrun when ``nproc_per_node > 1`` or
    ``nodes`` (a :class:`zoo.engine.distributed.Nodes`) spans several nodes."""
    import os

    multi = nodes is not None and nodes.multi
    if (recipe.nproc_per_node > 1 or multi) and "LOCAL_RANK" not in os.environ:
        from zoo.engine.distributed import launch_torchrun

        return launch_torchrun(recipe, resume=resume, restart=restart, again=again, nodes=nodes)
    return finetune(recipe, resume=resume, restart=restart, again=again)
