"""The loop: one fine-tuning run, from its prepared state to its result.

resume -> run start -> phases -> epochs -> finish (``finish.py``) -> run end, emitting
the loop's events (``events.py``). The loop knows no logger, store or terminal: its
listeners own them (the best epoch, checkpoints, MLflow, the terminal, callbacks), wired
in their order by ``job.py``, whose ``finetune()`` sets a recipe up and runs this loop.
Each part takes the run's state (``state.py``); none imports this module.

The run's checkpoints live in ``$ZOO_HOME/runs/<recipe hash>/``: the same command finds
them again, so re-running it after a kill (or with ``--resume``) continues from the last
completed epoch, provided the data is the same. Each epoch's data order, augmentation and
dropout depend only on (seed, epoch), so the resumed run ends with exactly the weights an
uninterrupted one would have had (in deterministic mode, bit for bit).

Under torchrun every process runs this loop. Nodes need not share a disk: the first
process of each node looks for the run's files in its own home, the job continues from
the newest checkpoint any node has (sent to every process), rank 0 owns the MLflow run
(its id reaches the others by broadcast, at run start) and writes the checkpoints to its
home. A process that dies stops the others (their collectives fail, or torchrun stops
them) with exit code 130 and the last checkpoint intact.
"""

from __future__ import annotations

import math
import time
from typing import Any

from zoo.contract.errors import Interrupted, TrainingError, UsageError
from zoo.contract.types import Phase
from zoo.engine import checkpoint
from zoo.engine.context import stopping
from zoo.engine.evaluate import Evaluation
from zoo.engine.events import FAILED, KILLED, Listeners
from zoo.engine.finish import finish
from zoo.engine.optimize import check_weights
from zoo.engine.phases import start_phase
from zoo.engine.resume import continue_from
from zoo.engine.state import FinetuneResult, RunState

__all__ = ["run"]


def run(
    state: RunState,
    start: float,
    *,
    resume: bool = False,
    restart: bool = False,
    again: bool = False,
) -> FinetuneResult:
    """The loop, from a state ``setup.prepare`` made and ``job.py`` wired the listeners of;
    ``start``: when the job began (``time.monotonic()``)."""
    return _run(state, start, resume, restart, again)


def _run(
    state: RunState, start: float, resume: bool, restart: bool, again: bool
) -> FinetuneResult:
    done, resumed = continue_from(state, again=again, resume=resume, restart=restart)
    if done is not None:
        return done
    if resumed is not None:
        state.run_id = resumed.state.get("run_id") or None
        state.note(f"resuming from the checkpoint of epoch {resumed.completed} in {state.dir}")
    events = Listeners(state.listeners)
    events.run_start(state)  # the MLflow run: rank 0's, known to every process
    try:
        _loop(state, events, resumed)
        resumed_from = resumed.completed if resumed is not None else None
        result, last = finish(state, time.monotonic() - start, resumed_from)
        events.run_end(state, result)  # registered by the MLflow listener
        state.dist.first(lambda: checkpoint.write_done(state, result, last))  # rank 0
        return result
    except KeyboardInterrupt as exc:
        stopping()
        events.failure(state, KILLED, exc)
        raise Interrupted(f"interrupted during {_where(state)}. Re-run {_again}") from None
    except Exception as exc:
        stopping()
        if state.dist.world > 1 and _lost_a_process(exc):
            events.failure(state, KILLED, exc)
            raise Interrupted(
                f"another process of the job stopped during {_where(state)} ("
                f"{' '.join(str(exc).split())[:160]}). Re-run {_again} on every node"
            ) from None
        events.failure(state, FAILED, exc)
        raise
    except BaseException as exc:
        stopping()
        events.failure(state, FAILED, exc)
        raise


_again = "the same command (or add --resume) to continue"


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


def _loop(state: RunState, events: Listeners, resumed: checkpoint.Resumed | None) -> None:
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
        state.phase_index, state.runner = pi, runner
        events.phase_start(state, pi, runner.optimizer)
        for e in runner.units(first):
            record = runner.train(e)
            evaluation = runner.evaluate(state.split.val)
            if state.split.val:  # without a validation split there is no val figure
                record.update(evaluation.metrics("val"))
            _epoch_done(state, events, record, evaluation)
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


def _epoch_done(
    state: RunState, events: Listeners, record: dict[str, Any], evaluation: Evaluation
) -> None:
    """The epoch's figures checked and kept, then its listeners: the best epoch, the
    checkpoint, MLflow, the terminal line, callbacks (events.py)."""
    epoch = int(record["epoch"])
    if not math.isfinite(record.get("val_loss", 0.0)):
        lr = max(g["initial_lr"] for g in state.runner.optimizer.param_groups)
        raise TrainingError(
            f"the validation loss became {record['val_loss']} in epoch {epoch}; the run "
            f"stopped and nothing was registered. Lower the learning rate (was {lr:g}) or "
            "check the data"
        )
    check_weights(state, epoch)
    state.history.append(record)
    state.completed = epoch
    state.evaluation = evaluation
    events.epoch_end(state, record)
