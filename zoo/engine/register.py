"""Registering a run's result in the MLflow registry, with its lineage: what the MLflow
listener (``tracking.py``) does at run end, on rank 0, between logging the final figures
and ending the MLflow run.

A recipe already registered on the same data by another host of the same team store is
not registered twice (``registered_by_recipe``): the result names that version.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.engine.batches import example
from zoo.engine.finish import evaluation_record, figure_files, step
from zoo.engine.listeners import chosen_by
from zoo.engine.model import parent_pins
from zoo.engine.state import plan_to_dict
from zoo.registry.leakage import record_split

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import FinetuneResult, RunState

__all__ = ["register", "registered_by_recipe", "tag_recipe"]

_NOT_IN_LINEAGE = {"ref", "data", "name", "license", "license_override", "device", "workers"}


def register(
    state: RunState, result: FinetuneResult, *, experiment: str, again: bool
) -> dict[str, Any]:
    """Register the registered epoch's model (``state.registered``); what the result then
    says: ``name``, ``version``, ``model_uri``, ``run_id``, ``already_registered``."""
    import torch

    known = None if again else registered_by_recipe(state)
    if known is not None:  # another host of the same team store registered it meanwhile
        return {**known, "already_registered": True}
    model = state.registered
    input_example = example(state).detach().cpu().float().contiguous()
    model.to("cpu").to(memory_format=torch.contiguous_format)
    settings = dict(state.plan.settings)
    settings["plan"] = plan_to_dict(state.plan, state.names)
    settings["recipe"] = {
        k: v for k, v in state.recipe.to_dict().items() if k not in _NOT_IN_LINEAGE
    }
    # what `zoo registry reproduce` runs again: where it trained (a cause of other bytes)
    settings["runtime"] = {"device": state.rt.device.type, "processes": state.dist.world}
    dataset = state.data.record()
    dataset["path"] = str(Path(state.recipe.data).expanduser().resolve())  # folder or CSV
    dataset["split"] = {
        "val_split": state.recipe.val_split,
        "test_split": state.recipe.test_split,
        "seed": state.recipe.seed,
        "train": len(state.split.train),
        "val": len(state.split.val),
        "test": len(state.split.test),
        "digest": state.split.digest([s.sha256 for s in state.data.samples]),
        "chosen_by": chosen_by(state),
    }
    split_artifacts = record_split(state, dataset)  # split.json; the leakage check's findings
    with step(state, f"registering {state.recipe.model_name()}"):
        version = _register(
            state,
            model,
            settings,
            dataset,
            result.metrics,
            input_example,
            split_artifacts,
            experiment,
        )
    tag_recipe(state, version)
    return {
        "name": version.name,
        "version": version.version,
        "model_uri": version.model_uri,
        "run_id": state.run_id,
        "already_registered": False,
    }


def _architecture(state: RunState, model: Any) -> dict[str, Any] | None:
    """The lineage's record of a module zoo composed: the multi-stage probe the engine
    builds, or the several backbones' composite (zoo/catalog/composite.py) the run started from."""
    from zoo.catalog.heads import StageProbe, architecture

    if isinstance(model, StageProbe):
        return architecture(model, state.names)
    return getattr(state.backbone, "architecture", None)


def _register(
    state: RunState,
    model: Any,
    settings: dict[str, Any],
    dataset: dict[str, Any],
    metrics: dict[str, float],
    input_example: Any,
    split_artifacts: dict[str, Any],
    experiment: str,
) -> Any:
    from zoo.registry import register_derivative

    cm_png, curves_png, _ = figure_files(state)
    return register_derivative(
        model,
        name=state.recipe.model_name(),
        parents=parent_pins(state),
        license=state.recipe.license,
        license_override=state.recipe.license_override,
        strategy=state.recipe.strategy,
        strategy_settings=settings,
        strategy_plugin=state.strategy_plugin,
        dataset=dataset,
        metrics=metrics,
        input_example=input_example,
        preprocessing=state.pre.to_dict(),
        class_names=list(state.data.classes),
        artifacts={
            "figures/confusion_matrix.png": cm_png,
            "figures/training_curves.png": curves_png,
            **split_artifacts,
        },
        run_id=state.run_id,
        experiment=experiment,
        architecture=_architecture(state, model),
        evaluation=evaluation_record(state),
    )


def registered_by_recipe(state: RunState) -> dict[str, Any] | None:
    """The version this recipe already registered on this data, as the store (not this
    home) knows it: two hosts sharing one team store may run the same recipe."""
    from zoo.registry.records import TAG
    from zoo.registry.store import client

    key, digest = state.recipe.key(), state.data.digest
    found = client().search_model_versions(
        f"tags.`{TAG.RECIPE_KEY}` = '{key}' and tags.`{TAG.DATASET_DIGEST}` = '{digest}'"
    )
    if not found:
        return None
    first = min(found, key=lambda v: int(v.version))
    return {
        "name": first.name,
        "version": int(first.version),
        "model_uri": f"models:/{first.name}/{first.version}",
        "run_id": first.run_id,
    }


def tag_recipe(state: RunState, version: Any) -> None:
    """Tag the registered version with its recipe's key (what registered_by_recipe finds)."""
    from zoo.registry.records import TAG
    from zoo.registry.store import client

    client().set_model_version_tag(
        version.name, str(version.version), TAG.RECIPE_KEY, state.recipe.key()
    )
