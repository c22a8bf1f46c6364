"""The end of a run: the registered epoch's weights and metrics, the held-out test score,
figures, and registration with the lineage.

Every registered metric comes from the registered (best) epoch; the last epoch's figures
are kept as ``last_*``. The test split, when there is one, is scored here once, on the
registered weights: nothing before this point has seen it. The validation and test
figures are float32 whatever precision the loop ran in (evaluate.registered); the
version records it (``evaluation`` in the lineage, tag ``zoo.eval_precision``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import TrainingError
from zoo.disk.paths import atomic_write_text
from zoo.engine import checkpoint, evaluate, report
from zoo.engine.batches import example
from zoo.engine.model import parent_pins, plan_to_dict
from zoo.engine.state import FinetuneResult
from zoo.engine.tracking import EXPERIMENT, registered_by_recipe, tag_recipe
from zoo.registry.leakage import record_split

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState
    from zoo.engine.tracking import NoTracking

__all__ = ["chosen_by", "evaluation_record", "finish", "registered_metrics"]


def chosen_by(state: RunState) -> str:
    """What chose the registered epoch (the lineage's ``dataset.split.chosen_by``,
    docs/registry.md): ``last-epoch`` without a validation split; ``fixed`` when the run
    had one candidate epoch (a head-only phase on cached features is one record, whatever
    its passes), so the plan's epoch count fixed it; else ``validation``."""
    if not state.split.val:
        return "last-epoch"
    return "fixed" if len(state.history) == 1 else "validation"


_NOT_IN_LINEAGE = {"ref", "data", "name", "license", "license_override", "device", "workers"}


def _val_eval(state: RunState, scores: evaluate.Registered | None) -> tuple[list, list]:
    """(labels, predictions) of the registered epoch on the validation split."""
    if scores is not None and scores.val is not None:
        return scores.val.labels, scores.val.preds
    labels, predicted = state.best["eval"]
    return labels, predicted


def registered_metrics(
    state: RunState, seconds: float, scores: evaluate.Registered | None = None
) -> dict[str, float]:
    """Metrics of the registered epoch (and ``last_*`` of the last one); the validation
    figures are ``scores``' (float32) where it has them, else the loop's."""
    best_epoch = int(state.best["epoch"])
    chosen = next(r for r in state.history if int(r["epoch"]) == best_epoch)
    last = state.history[-1]
    metrics: dict[str, float] = {
        "train_accuracy": float(chosen["train_accuracy"]),
        "train_loss": float(chosen["train_loss"]),
        "best_epoch": float(best_epoch),
        "epochs": float(state.plan.epochs),
        "train_seconds": seconds,
        "num_train": float(len(state.split.train)),
        "num_val": float(len(state.split.val)),
    }
    for key in ("train_loss", "train_accuracy"):
        metrics[f"last_{key}"] = float(last[key])
    if not state.split.val:  # no validation figure exists
        return metrics
    labels, predicted = _val_eval(state, scores)
    n = len(state.data.classes)
    matrix = report.confusion(labels, predicted, n)
    metrics["val_accuracy"] = sum(matrix[i][i] for i in range(n)) / max(1, len(labels))
    metrics["val_loss"] = float(chosen["val_loss"])
    for key in ("val_loss", "val_accuracy"):
        metrics[f"last_{key}"] = float(last[key])
    if scores is not None and scores.val is not None and scores.last_val is not None:
        metrics["val_loss"] = scores.val.loss
        metrics["last_val_loss"] = scores.last_val.loss
        metrics["last_val_accuracy"] = scores.last_val.accuracy
    for cls, acc in report.per_class_accuracy(matrix, state.data.classes).items():
        metrics[f"val_accuracy.{report.metric_key(cls)}"] = acc
    return metrics


def evaluation_record(state: RunState) -> dict[str, str]:
    """What the registered figures were computed in (the lineage's ``evaluation``): val_*
    and test_* in float32, train_* (and the choice of the epoch) in the loop's precision."""
    return {
        "precision": evaluate.FP32,
        "training_precision": evaluate.loop_precision(state.rt),
    }


def _check_finite(model: Any) -> None:
    import torch

    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise TrainingError(
                f"the registered epoch's weights are not finite ({name}); nothing was "
                "registered. Lower the learning rate or check the data"
            )


def _architecture(state: RunState, model: Any) -> dict[str, Any] | None:
    """The lineage's record of a module zoo composed: the multi-stage probe the engine
    builds, or the several backbones' composite (zoo/catalog/composite.py) the run started from."""
    from zoo.catalog.heads import StageProbe, architecture

    if isinstance(model, StageProbe):
        return architecture(model, state.names)
    return getattr(state.backbone, "architecture", None)


def _result(
    state: RunState, metrics: dict[str, float], seconds: float, resumed: int | None, **kw: Any
) -> FinetuneResult:
    return FinetuneResult(
        name=kw.pop("name", state.recipe.model_name()),
        version=kw.pop("version", None),
        model_uri=kw.pop("model_uri", None),
        run_id=kw.pop("run_id", None),
        metrics=metrics,
        best_epoch=int(state.best["epoch"]),
        epochs=state.plan.epochs,
        resumed_from=resumed,
        skipped=list(state.data.bad),
        seconds=seconds,
        world_size=state.dist.world,
        run_dir=str(state.dir),
        recipe=state.recipe.to_dict(),
        plan=plan_to_dict(state.plan, state.names),
        history=state.history,
        ranks=state.rank_records,
        optimizer_groups=state.optimizer_groups,
        dataset_digest=state.data.digest,
        chosen_by=chosen_by(state),
        evaluation=evaluation_record(state),
        **kw,
    )


def finish(
    state: RunState,
    tracking: NoTracking,
    seconds: float,
    resumed: int | None,
    *,
    again: bool = False,
) -> FinetuneResult:
    """The registered epoch's weights on every process; rank 0 scores, registers and
    writes the result, which every process then returns (a failure there, such as a
    registration error, reaches every process with its message)."""
    final = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
    best = checkpoint.load_best(state) if state.dist.main else None
    if best is not None:
        state.model.load_state_dict(best)
    state.dist.broadcast_module(state.model)  # rank 0's home holds the best epoch
    if not state.history:
        raise TrainingError("the run completed no epoch; nothing was registered")
    n = evaluate.registered_images(state)
    with _step(state, f"scoring the registered epoch in fp32 ({n} images)"):
        scores = evaluate.registered(state, final)
    result = state.dist.first(
        lambda: _conclude(state, tracking, seconds, resumed, scores, final, again), share=False
    )
    if state.dist.world > 1:
        data = state.dist.broadcast(result.to_dict() if state.dist.main else None)
        if not state.dist.main:
            result = FinetuneResult.from_dict(data)
            if not state.register:
                result.backbone = state.backbone
    return result


def _conclude(
    state: RunState,
    tracking: NoTracking,
    seconds: float,
    resumed: int | None,
    scores: evaluate.Registered,
    final: dict[str, Any],
    again: bool = False,
) -> FinetuneResult:
    import torch

    metrics = registered_metrics(state, seconds, scores)
    if scores.test is not None:
        metrics.update(scores.test.metrics("test"))
        metrics["num_test"] = float(len(state.split.test))
    model = state.strategy.finalize_model(state.model)  # the model itself without one
    _check_finite(model)
    labels, predicted = _val_eval(state, scores)
    matrix = report.confusion(labels, predicted, len(state.data.classes))
    figures = state.dir / "figures"
    figures.mkdir(exist_ok=True)
    cm_png = report.plot_confusion(matrix, state.data.classes, figures / "confusion_matrix.png")
    curves_png = report.plot_curves(state.history, figures / "training_curves.png")
    if not state.register:
        checkpoint.write_done(state, _result(state, metrics, seconds, resumed), final)
        return _result(state, metrics, seconds, resumed, backbone=state.backbone)
    matrix_json = state.dir / "confusion_matrix.json"
    atomic_write_text(
        matrix_json, json.dumps({"classes": list(state.data.classes), "matrix": matrix})
    )
    tracking.log_final(metrics, [(cm_png, "figures"), (curves_png, "figures"), (matrix_json, None)])
    known = None if again else registered_by_recipe(state)
    if known is not None:  # another host of the same team store registered it meanwhile
        tracking.end("FINISHED")
        result = _result(state, metrics, seconds, resumed, **known)
        checkpoint.write_done(state, result, final)
        result.already_registered = True
        return result
    input_example = example(state).detach().cpu().float().contiguous()
    model.to("cpu").to(memory_format=torch.contiguous_format)
    settings = dict(state.plan.settings)
    settings["plan"] = plan_to_dict(state.plan, state.names)
    settings["recipe"] = {
        k: v for k, v in state.recipe.to_dict().items() if k not in _NOT_IN_LINEAGE
    }
    dataset = state.data.record()
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
    with _step(state, f"registering {state.recipe.model_name()}"):
        version = _register(
            state,
            model,
            settings,
            dataset,
            metrics,
            input_example,
            split_artifacts,
            cm_png,
            curves_png,
        )
    tag_recipe(state, version)
    tracking.end("FINISHED")
    result = _result(
        state,
        metrics,
        seconds,
        resumed,
        name=version.name,
        version=version.version,
        model_uri=version.model_uri,
        run_id=state.run_id,
    )
    checkpoint.write_done(state, result, final)
    return result


@contextmanager
def _step(state: RunState, description: str) -> Iterator[None]:
    """A wait the user sees (a spinner, or started/done lines in a pipe): rank 0 only."""
    progress = state.progress() if state.dist.main else None
    if progress is not None:
        progress.start(description, None)
    try:
        yield
    finally:
        if progress is not None:
            progress.finish()


def _register(
    state: RunState,
    model: Any,
    settings: dict[str, Any],
    dataset: dict[str, Any],
    metrics: dict[str, float],
    input_example: Any,
    split_artifacts: dict[str, Any],
    cm_png: Any,
    curves_png: Any,
) -> Any:
    from zoo.registry import register_derivative

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
        experiment=EXPERIMENT,
        architecture=_architecture(state, model),
        evaluation=evaluation_record(state),
    )
