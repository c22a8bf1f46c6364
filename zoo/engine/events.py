"""The loop's events and the listeners that act on them.

The loop (``run.py``) knows no logger, no store and no terminal: it emits five events,
and each concern of a run is a listener that owns what it does on them.

    on_run_start(state)               set up, what the job continues from decided, before
                                      the first phase (``state.run_id``: the checkpoint's)
    on_phase_start(state, i, opt)     phase ``i``'s optimizer exists (after any
                                      re-initialisation), before its first epoch
    on_epoch_end(state, record)       an epoch is trained, evaluated and its weights
                                      checked; ``record`` is in ``state.history``
    on_run_end(state, result)         the registered epoch is scored (``finish.py``);
                                      the listeners may complete ``result``
    on_failure(state, status, error)  the run stops: ``KILLED`` (interrupted, or another
                                      process of the job lost) or ``FAILED``

A run's listeners are called in the order of its list, for every event; ``job.py`` wires
them:

    BestEpoch    choose the registered epoch (``best.pt``; what ``chosen_by`` says)
    Checkpoints  ``state.pt`` after each epoch, written once the best epoch is known
    Tracking     MLflow (``tracking.py``; only when the run registers): the run, its
                 epochs once they are checkpointed, at run end the final figures, the
                 registration (``register.py``) and the run's end
    Terminal     one line per epoch (through ``zoo.progress``), the best epoch marked
    callbacks    ``finetune(..., callbacks=[...])``: watchers (tests, tools), last, so
                 they see each epoch checkpointed, logged and printed

Every process of a torchrun job emits every event. A listener that owns something of
rank 0 (the MLflow run, the checkpoint files, the terminal) acts there, through
``state.dist.first`` where the other processes must wait for it or learn of its failure.
``on_failure`` never waits for another process (it may be gone), and what a listener
raises there is dropped: it must not hide why the run stopped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import FinetuneResult, RunState

__all__ = ["FAILED", "KILLED", "Callback", "Listener", "Listeners"]

KILLED, FAILED = "KILLED", "FAILED"  # on_failure's status (MLflow's run status names)


class Listener:
    """Acts on the loop's events (above); each method does nothing unless overridden."""

    def on_run_start(self, state: RunState) -> None: ...

    def on_phase_start(self, state: RunState, phase_index: int, optimizer: Any) -> None: ...

    def on_epoch_end(self, state: RunState, record: dict[str, Any]) -> None: ...

    def on_run_end(self, state: RunState, result: FinetuneResult) -> None: ...

    def on_failure(self, state: RunState, status: str, error: BaseException) -> None: ...


class Callback(Listener):
    """Watches a run (tests, tools): ``finetune(recipe, callbacks=[...])`` adds them after
    the engine's own listeners, so a callback sees each epoch checkpointed and logged."""

    def on_candidate(self, state: RunState, label: str, rows: list[int], labels: list[int]) -> None:
        """auto's search is about to score a candidate on these samples (search.py)."""


class Listeners:
    """A run's listeners, in the order they are called."""

    def __init__(self, listeners: Sequence[Listener] = ()) -> None:
        self.all = tuple(listeners)

    def run_start(self, state: RunState) -> None:
        for listener in self.all:
            listener.on_run_start(state)

    def phase_start(self, state: RunState, phase_index: int, optimizer: Any) -> None:
        for listener in self.all:
            listener.on_phase_start(state, phase_index, optimizer)

    def epoch_end(self, state: RunState, record: dict[str, Any]) -> None:
        for listener in self.all:
            listener.on_epoch_end(state, record)

    def run_end(self, state: RunState, result: FinetuneResult) -> None:
        for listener in self.all:
            listener.on_run_end(state, result)

    def failure(self, state: RunState, status: str, error: BaseException) -> None:
        for listener in self.all:
            with contextlib.suppress(Exception):  # the run's own error goes on
                listener.on_failure(state, status, error)
