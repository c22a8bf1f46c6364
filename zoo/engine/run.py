"""One fine-tuning run, start to registration: ``finetune(recipe)``.

The loop alone: set up (``setup.py``) -> finished already? (``checkpoint.py``) -> resume
-> phases -> epochs -> finish (``finish.py``). Each part takes the run's state
(``state.py``); none imports this module.

The run's checkpoints live in ``$ZOO_HOME/runs/<recipe hash>/``: the same command finds
them again, so re-running it after a kill (or with ``--resume``) continues from the last
completed epoch, provided the data is the same. Each epoch's data order, augmentation and
dropout depend only on (seed, epoch), so the resumed run ends with exactly the weights an
uninterrupted one would have had (in deterministic mode, bit for bit).

Under torchrun every process runs this loop. Nodes need not share a disk: the first
process of each node looks for the run's files in its own home, the job continues from
the newest checkpoint any node has (sent to every process), rank 0 owns the MLflow run
(its id reaches the others by broadcast) and writes the checkpoints to its home. A
process that dies stops the others (their collectives fail, or torchrun stops them) with
exit code 130 and the last checkpoint intact.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from typing import Any

from zoo.contract.errors import DataError, Interrupted, TrainingError, UsageError
from zoo.contract.types import Phase
from zoo.engine import checkpoint
from zoo.engine.context import stopping
from zoo.engine.evaluate import Evaluation
from zoo.engine.finish import finish
from zoo.engine.optimize import check_weights
from zoo.engine.phases import start_phase
from zoo.engine.recipe import Recipe
from zoo.engine.resume import continue_from
from zoo.engine.setup import prepare, run_dir
from zoo.engine.state import Callback, FinetuneResult, RunState
from zoo.engine.tracking import NoTracking, tracker

__all__ = ["FinetuneResult", "clean_run", "finetune", "run_dir"]


def finetune(
    recipe: Recipe,
    *,
    resume: bool = False,
    restart: bool = False,
    again: bool = False,
    register: bool = True,
    callbacks: Sequence[Callback] = (),
) -> FinetuneResult:
    """Run (or resume) one fine-tuning recipe and register its best epoch.

    A recipe that already finished on the same data returns its registered result
    (``already_registered``) unless ``again``. ``register=False`` trains and evaluates
    without MLflow or the registry (library use, experiments); the result then carries
    the trained backbone.

    One process at a time runs a recipe (``checkpoint.recipe_lock``): an identical
    command waits, then finds the result. Under torchrun the launching process holds the
    lock (``distributed.launch_torchrun``), so the ranks never wait for each other on
    it. The lock is taken once the recipe is set up: a refusal writes nothing.
    """
    if resume and restart:
        raise UsageError(
            "--resume and --restart contradict each other: --resume continues this "
            "recipe's checkpoint, --restart discards it; pass one of them"
        )
    start = time.monotonic()
    state = prepare(recipe, register=register, callbacks=callbacks)  # refusals write nothing
    _same_data_everywhere(state)
    if "LOCAL_RANK" in os.environ:
        return _run(state, start, resume, restart, again)
    with checkpoint.recipe_lock(recipe):
        return _run(state, start, resume, restart, again)


def _run(state: RunState, start: float, resume: bool, restart: bool, again: bool) -> FinetuneResult:
    done, resumed = continue_from(state, again=again, resume=resume, restart=restart)
    if done is not None:
        return done
    if resumed is not None:
        state.run_id = resumed.state.get("run_id") or None
        state.note(f"resuming from the checkpoint of epoch {resumed.completed} in {state.dir}")
    tracking = tracker(state)

    def start_tracking() -> str | None:
        tracking.start()
        return state.run_id

    state.run_id = state.dist.first(start_tracking)  # rank 0's run, known to every process
    try:
        _loop(state, tracking, resumed)
        resumed_from = resumed.completed if resumed is not None else None
        return finish(state, tracking, time.monotonic() - start, resumed_from, again=again)
    except KeyboardInterrupt:
        stopping()
        tracking.end("KILLED")
        raise Interrupted(f"interrupted during {_where(state)}. Re-run {_again}") from None
    except Exception as exc:
        stopping()
        if state.dist.world > 1 and _lost_a_process(exc):
            tracking.end("KILLED")
            raise Interrupted(
                f"another process of the job stopped during {_where(state)} ("
                f"{' '.join(str(exc).split())[:160]}). Re-run {_again} on every node"
            ) from None
        tracking.end("FAILED")
        raise
    except BaseException:
        stopping()
        tracking.end("FAILED")
        raise


_again = "the same command (or add --resume) to continue"


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


def _where(state: RunState) -> str:
    done_epochs = state.completed
    saved = (
        f"the checkpoint of epoch {done_epochs} is saved in {state.dir / checkpoint.STATE_FILE}"
        if done_epochs
        else "no epoch had completed, so nothing was saved"
    )
    return f"epoch {done_epochs + 1}/{state.plan.epochs}; {saved}"


def _lost_a_process(exc: BaseException) -> bool:
    """A collective failed because another process of the job died or hung."""
    import torch.distributed as dist

    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection closed", "Connection reset")
    )


def _loop(state: RunState, tracking: NoTracking, resumed: checkpoint.Resumed | None) -> None:
    """Phases -> epochs. A resumed run starts at the checkpoint's phase and epoch."""
    start_phase_index, start_epoch = (resumed.phase, resumed.phase_epoch) if resumed else (0, 0)
    pending = resumed
    for pi in range(start_phase_index, len(state.plan.phases)):
        phase = state.plan.phases[pi]
        first = start_epoch if pi == start_phase_index else 0
        if first >= phase.epochs:
            continue
        state.prepared = _prepare_model(state, phase)
        if pending is not None:  # weights after the strategy prepared the model
            checkpoint.apply(state, pending)
        runner = start_phase(state, phase, first, pending.state if pending else None)
        pending = None
        state.fire("on_phase_start", pi, runner.optimizer)
        for e in runner.units(first):
            record = runner.train(e)
            evaluation = runner.evaluate(state.split.val)
            if state.split.val:  # without a validation split there is no val figure
                record.update(evaluation.metrics("val"))
            _epoch_done(state, tracking, pi, record, evaluation, runner)
    if pending is not None:  # every epoch was done before the run stopped
        last = state.plan.phases[-1]
        if last.features == "stages":  # the checkpoint holds the multi-stage probe: build it
            start_phase(state, last, last.epochs)
        checkpoint.apply(state, pending)


def _prepare_model(state: RunState, phase: Phase) -> list[Any] | None:
    """The strategy's optional ``prepare_model`` (docs/strategies.md)."""
    if phase.head_on_features or not state.strategy.extras.prepare_model:
        return None
    chosen = state.strategy.prepare_model(state.model, state.stages, phase, state.plan)
    state.model.to(state.rt.device)  # parameters the strategy added
    if chosen is None:
        return None
    params = list(chosen)
    if not params:
        raise UsageError(f"strategy '{state.recipe.strategy}' chose no parameters to train")
    return params


def _better(record: dict[str, Any], best: dict[str, Any]) -> bool:
    """Higher validation accuracy; on a tie, lower validation loss."""
    if not best.get("epoch"):
        return True
    acc, best_acc = record["val_accuracy"], best["val_accuracy"]
    return bool(acc > best_acc or (acc == best_acc and record["val_loss"] < best["val_loss"]))


def _epoch_done(
    state: RunState,
    tracking: NoTracking,
    pi: int,
    record: dict[str, Any],
    evaluation: Evaluation,
    runner: Any,
) -> None:
    epoch = int(record["epoch"])
    if not math.isfinite(record.get("val_loss", 0.0)):
        lr = max(g["initial_lr"] for g in runner.optimizer.param_groups)
        raise TrainingError(
            f"the validation loss became {record['val_loss']} in epoch {epoch}; the run "
            f"stopped and nothing was registered. Lower the learning rate (was {lr:g}) or "
            "check the data"
        )
    check_weights(state, epoch)
    state.history.append(record)
    state.completed = epoch
    improved = not state.split.val or _better(record, state.best)  # none: the last epoch
    if improved:
        state.best = {
            "eval": [evaluation.labels, evaluation.preds],
            "epoch": epoch,
            "val_accuracy": record.get("val_accuracy"),
            "val_loss": record.get("val_loss"),
        }
        checkpoint.save_best(state)

    def save_and_log() -> None:  # rank 0; a failure reaches every process
        checkpoint.save(state, pi, int(record["phase_epoch"]), runner.optimizer, runner.scheduler)
        tracking.log_epoch(record)

    state.dist.first(save_and_log)
    val = (
        f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.3f}"
        + (" (best so far)" if improved else "")
        if state.split.val
        else "no validation split"
    )
    state.note(
        f"epoch {epoch}/{state.plan.epochs} ({record['phase']}): train loss "
        f"{record['train_loss']:.4f} acc {record['train_accuracy']:.3f}, {val}"
    )
    state.fire("on_epoch_end", record)


def clean_run(recipe: Recipe) -> None:
    """Remove a run's checkpoints (``--restart`` does this before starting)."""
    shutil.rmtree(run_dir(recipe), ignore_errors=True)
