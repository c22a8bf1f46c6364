"""From a recipe to a :class:`RunState`: strategy, licence, data, split, model, plan.

The order is chosen so that every refusal comes before any expensive work: an unknown
strategy or an incompatible licence before the data is read, bad data before the model
is built, an invalid plan before the first epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo.contract.types import TrainingPlan, TrainingSummary
from zoo.data import load_dataset, split_dataset
from zoo.disk.paths import subdir
from zoo.engine import model as build
from zoo.engine.context import Dist, resolve_runtime
from zoo.engine.events import Callback
from zoo.engine.features import head_features, stage_features
from zoo.engine.recipe import Recipe
from zoo.engine.seeding import seed_everything
from zoo.engine.state import RunState
from zoo.engine.warmup import Warmup
from zoo.licenses.compat import decide_licenses
from zoo.progress import say
from zoo.registry.leakage import check_lineage

__all__ = ["prepare", "run_dir"]


def run_dir(recipe: Recipe) -> Path:
    return subdir("runs", recipe.key())


def _default_workers(dist: Dist) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cores or 1) // max(1, dist.world)))


def _progress() -> Any:
    from zoo.progress import make_progress

    return make_progress()


def _summary(state: RunState) -> TrainingSummary:
    """The training split, as a strategy may see it when it plans (never val or test)."""
    rows = list(state.split.train)

    def features(stage: str | None = None) -> tuple[Any, Any]:
        x, y = head_features(state) if stage is None else stage_features(state, stage)
        return x[rows], y[rows]

    counts = {name: 0 for name in state.data.classes}
    for i in rows:
        counts[state.data.classes[state.data.samples[i].label]] += 1
    return TrainingSummary(
        classes=tuple(state.data.classes),
        class_counts=counts,
        num_train=len(rows),
        input_size=tuple(state.pre.input_size),  # type: ignore[arg-type]
        features=features,
    )


def prepare(
    recipe: Recipe,
    *,
    register: bool,
    callbacks: Sequence[Callback] = (),
    progress: Callable[[], Any] = _progress,
    trials: bool = True,
    leakage: bool = True,
    folder: Path | None = None,
) -> RunState:
    """The run's state, its plan made; ``trials=False`` (a dry run): a choosing strategy's
    search scores only its cheap candidates and lists the trials it would run;
    ``leakage=False`` (a caller that trains nothing, such as rank): no check of the
    ancestors' held-out images (zoo/registry/leakage.py); ``folder``: the run's folder
    instead of the recipe's own (``run_dir``)."""
    strategy, plugin = build.strategy(recipe.strategy)  # fail fast on a typo
    dist = Dist.from_env()
    if dist.world > 1:  # (a process alone imports torch while its data is checked)
        import torch

        gpu = recipe.device.startswith(("auto", "cuda")) and torch.cuda.is_available()
        dist.init("cuda" if gpu else "cpu")
    described, parent = build.describe(recipe)
    if dist.main:  # a reference given without its tag: said once, before any work
        for said in build.resolution_notes(recipe, described):
            say(said)
    pre, parents = build.licence_inputs(recipe, described, parent)
    # refused here, before any data is read; the registry decides the same way again
    decide_licenses(parents, recipe.license, recipe.license_override)
    workers = recipe.workers if recipe.workers is not None else _default_workers(dist)
    # a registering run alone on its machine imports what it needs later while the
    # check's processes decode (zoo/engine/warmup.py)
    warm = Warmup() if register and dist.world == 1 else None

    def load() -> Any:
        return load_dataset(
            recipe.data,
            resize=pre.resize,
            interpolation=pre.interpolation,
            workers=max(1, workers),
            max_bad_fraction=recipe.max_bad_fraction,
            progress=progress() if dist.main else None,
            alongside=warm.start if warm is not None else None,
        )

    # The first process of each node checks (and decodes) the data into its node's home,
    # while the others wait (a refusal reaches them all); they then find every decoded
    # image in their node's cache.
    try:
        data = dist.first(load, share=False, who=dist.node_main)
    except BaseException:
        if warm is not None:
            warm.stop()
        raise
    if warm is not None:
        warm.join()
    if not dist.node_main:
        data = load()
    import torch

    if recipe.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    split = split_dataset(
        data.labels, recipe.val_split, recipe.seed, recipe.test_split, data.classes
    )
    # an ancestor's held-out images in this training split: said, or refused (--strict)
    found = check_lineage(
        described if parent and leakage else None, data, split, strict=recipe.strict, show=dist.main
    )
    seed_everything(recipe.seed)
    backbone = build.build(recipe, described, len(data.classes))
    rt = resolve_runtime(
        recipe.device,
        recipe.precision,
        recipe.channels_last,
        backbone.model,
        dist,
        recipe.deterministic,
    )
    backbone.model.to(rt.device)
    if rt.channels_last:
        backbone.model.to(memory_format=torch.channels_last)
    state = RunState(
        recipe=recipe,
        dist=dist,
        rt=rt,
        dir=folder if folder is not None else run_dir(recipe),
        data=data,
        split=split,
        pre=pre,
        backbone=backbone,
        plan=TrainingPlan(recipe.strategy, ()),
        strategy=strategy,
        strategy_plugin=plugin,
        parent=parent,
        criterion=torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing),
        workers=workers,
        progress=progress,
        register=register,
        callbacks=tuple(callbacks),
        leakage=found,
    )
    for bad in data.bad:
        state.note(f"skipped {bad.path}: {bad.reason}")
    if data.duplicates:
        state.note(
            f"{len(data.duplicates)} duplicate file(s) left out (identical bytes, one of each "
            f"kept; e.g. {data.duplicates[0].path} = {data.duplicates[0].same_as})"
        )
    if build.chooses(strategy):  # auto: the core scores its candidates (search.py)
        from zoo.engine.search import search

        settings = build.settings_of(recipe)
        state.plan = search(state, strategy, settings, _summary(state), trials=trials)
        state.note(f"{recipe.strategy} chose {state.plan.settings['decision']}")
    else:
        state.plan = build.make_plan(strategy, recipe, state.names, _summary(state))
    return state
