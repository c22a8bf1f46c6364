"""The end of a run: the registered epoch's weights and metrics, the held-out test score,
figures, and the run's result.

Every registered metric comes from the registered (best) epoch; the last epoch's figures
are kept as ``last_*``. The test split, when there is one, is scored here once, on the
registered weights: nothing before this point has seen it. The validation and test
figures are float32 whatever precision the loop ran in (evaluate.registered); the
version records it (``evaluation`` in the lineage, tag ``zoo.eval_precision``).
Registering the result is the MLflow listener's, at run end (``tracking.py``,
``register.py``); what chose the registered epoch is the best-epoch listener's
(``listeners.chosen_by``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import TrainingError
from zoo.disk.paths import atomic_write_text
from zoo.engine import checkpoint, evaluate, report
from zoo.engine.listeners import chosen_by
from zoo.engine.state import FinetuneResult, plan_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState

__all__ = ["evaluation_record", "figure_files", "finish", "registered_metrics", "step"]


def figure_files(state: RunState) -> tuple[Path, Path, Path]:
    """The run's confusion matrix and training curves (PNG) and the matrix as JSON."""
    figures = state.dir / "figures"
    return (
        figures / "confusion_matrix.png",
        figures / "training_curves.png",
        state.dir / "confusion_matrix.json",
    )


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
    state: RunState, seconds: float, resumed: int | None
) -> tuple[FinetuneResult, dict[str, Any]]:
    """The registered epoch's weights on every process; rank 0 scores them and makes the
    result, which every process then returns (a failure there reaches every process with
    its message), with the last epoch's weights (``final.pt``)."""
    final = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
    best = checkpoint.load_best(state) if state.dist.main else None
    if best is not None:
        state.model.load_state_dict(best)
    state.dist.broadcast_module(state.model)  # rank 0's home holds the best epoch
    if not state.history:
        raise TrainingError("the run completed no epoch; nothing was registered")
    n = evaluate.registered_images(state)
    with step(state, f"scoring the registered epoch in fp32 ({n} images)"):
        scores = evaluate.registered(state, final)
    result = state.dist.first(lambda: _conclude(state, seconds, resumed, scores), share=False)
    if state.dist.world > 1:
        data = state.dist.broadcast(result.to_dict() if state.dist.main else None)
        if not state.dist.main:
            result = FinetuneResult.from_dict(data)
            if not state.register:
                result.backbone = state.backbone
    return result, final


def _conclude(
    state: RunState, seconds: float, resumed: int | None, scores: evaluate.Registered
) -> FinetuneResult:
    metrics = registered_metrics(state, seconds, scores)
    if scores.test is not None:
        metrics.update(scores.test.metrics("test"))
        metrics["num_test"] = float(len(state.split.test))
    state.registered = state.strategy.finalize_model(state.model)  # the model without one
    _check_finite(state.registered)
    labels, predicted = _val_eval(state, scores)
    matrix = report.confusion(labels, predicted, len(state.data.classes))
    cm_png, curves_png, matrix_json = figure_files(state)
    cm_png.parent.mkdir(exist_ok=True)
    report.plot_confusion(matrix, state.data.classes, cm_png)
    report.plot_curves(state.history, curves_png)
    if not state.register:
        return _result(state, metrics, seconds, resumed, backbone=state.backbone)
    atomic_write_text(
        matrix_json, json.dumps({"classes": list(state.data.classes), "matrix": matrix})
    )
    return _result(state, metrics, seconds, resumed)


@contextmanager
def step(state: RunState, description: str) -> Iterator[None]:
    """A wait the user sees (a spinner, or started/done lines in a pipe): rank 0 only."""
    progress = state.progress() if state.dist.main else None
    if progress is not None:
        progress.start(description, None)
    try:
        yield
    finally:
        if progress is not None:
            progress.finish()
