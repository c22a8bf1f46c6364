"""The engine's own listeners on the loop's events (``events.py``, which gives their
order): the best epoch, the checkpoints, the terminal. MLflow's is ``tracking.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.engine import checkpoint
from zoo.engine.events import Listener

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState

__all__ = ["BestEpoch", "Checkpoints", "Terminal", "better", "chosen_by"]


def better(record: dict[str, Any], best: dict[str, Any]) -> bool:
    """Higher validation accuracy; on a tie, lower validation loss."""
    if not best.get("epoch"):
        return True
    acc, best_acc = record["val_accuracy"], best["val_accuracy"]
    return bool(acc > best_acc or (acc == best_acc and record["val_loss"] < best["val_loss"]))


def chosen_by(state: RunState) -> str:
    """What chose the registered epoch (the lineage's ``dataset.split.chosen_by``,
    docs/registry.md): ``last-epoch`` without a validation split; ``fixed`` when the run
    had one candidate epoch (a head-only phase on cached features is one record, whatever
    its passes), so the plan's epoch count fixed it; else ``validation``."""
    if not state.split.val:
        return "last-epoch"
    return "fixed" if len(state.history) == 1 else "validation"


class BestEpoch(Listener):
    """The registered epoch: the best on validation (``better``), or the last without a
    validation split. Its weights go to ``best.pt`` (rank 0), its record to ``state.best``
    (which the checkpoint keeps)."""

    def on_epoch_end(self, state: RunState, record: dict[str, Any]) -> None:
        if state.split.val and not better(record, state.best):
            return
        evaluation = state.evaluation
        state.best = {
            "eval": [evaluation.labels, evaluation.preds],
            "epoch": int(record["epoch"]),
            "val_accuracy": record.get("val_accuracy"),
            "val_loss": record.get("val_loss"),
        }
        checkpoint.save_best(state)


class Checkpoints(Listener):
    """``state.pt`` after each epoch, on rank 0 (a failure reaches every process): what a
    killed run resumes from."""

    def on_epoch_end(self, state: RunState, record: dict[str, Any]) -> None:
        runner = state.runner
        phase_epoch = int(record["phase_epoch"])
        state.dist.first(
            lambda: checkpoint.save(
                state, state.phase_index, phase_epoch, runner.optimizer, runner.scheduler
            )
        )


class Terminal(Listener):
    """One line per epoch on rank 0's terminal (``state.note``: ``zoo.progress``)."""

    def on_epoch_end(self, state: RunState, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        val = (
            f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.3f}"
            + (" (best so far)" if state.best.get("epoch") == epoch else "")
            if state.split.val
            else "no validation split"
        )
        state.note(
            f"epoch {epoch}/{state.plan.epochs} ({record['phase']}): train loss "
            f"{record['train_loss']:.4f} acc {record['train_accuracy']:.3f}, {val}"
        )
