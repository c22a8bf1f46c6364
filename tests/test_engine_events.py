"""The loop's events (zoo/engine/events.py): the loop emits them in order, the engine's
own listeners act on them before the caller's callbacks, and a run that stops tells
every listener why without letting one hide it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.finetune_helpers import make_images
from zoo.contract.errors import Interrupted
from zoo.engine import Callback, Recipe, finetune
from zoo.engine.events import FAILED, KILLED
from zoo.engine.job import wire
from zoo.engine.listeners import BestEpoch, Checkpoints, Terminal
from zoo.engine.tracking import Tracking

FAST = {"random_init": True, "image_size": 32, "batch_size": 8, "workers": 0, "precision": "fp32"}


class Recorder(Callback):
    """Every event, and what the engine's listeners had done when it reached a callback."""

    def __init__(self, stop_at: int | None = None, error: BaseException | None = None) -> None:
        self.seen: list[tuple] = []
        self.stop_at, self.error = stop_at, error

    def on_run_start(self, state) -> None:
        self.seen.append(("run_start",))

    def on_phase_start(self, state, phase_index, optimizer) -> None:
        self.seen.append(("phase_start", phase_index))

    def on_epoch_end(self, state, record) -> None:
        saved = torch.load(state.dir / "state.pt", weights_only=True)
        self.seen.append(("epoch_end", record["epoch"], saved["completed"], state.best["epoch"]))
        if record["epoch"] == self.stop_at:
            assert self.error is not None
            raise self.error

    def on_run_end(self, state, result) -> None:
        self.seen.append(("run_end", result.best_epoch))

    def on_failure(self, state, status, error) -> None:
        self.seen.append(("failure", status, type(error).__name__))


class Broken(Callback):
    def on_failure(self, state, status, error) -> None:
        raise RuntimeError("a listener failing while the run stops")


def _recipe(tmp_path: Path, **kw) -> Recipe:
    data = make_images(tmp_path / "data", classes=2, per_class=6)
    return Recipe(
        ref="timm:test_resnet", data=str(data), strategy="partial", unfreeze=1, **FAST, **kw
    )


def test_the_loop_emits_its_events_in_order_after_the_engines_own_listeners(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    result = finetune(_recipe(tmp_path, epochs=2), register=False, callbacks=[recorder])
    # each epoch reached the callback checkpointed, its best epoch chosen
    epochs = [s for s in recorder.seen if s[0] == "epoch_end"]
    assert [(e, saved) for _, e, saved, _ in epochs] == [(1, 1), (2, 2)]
    assert all(1 <= best <= e for _, e, _, best in epochs)
    assert recorder.seen[:2] == [("run_start",), ("phase_start", 0)]
    assert recorder.seen[-1] == ("run_end", result.best_epoch)
    assert len(recorder.seen) == 5


@pytest.mark.parametrize(
    ("error", "status", "raised"),
    [(KeyboardInterrupt(), KILLED, Interrupted), (RuntimeError("boom"), FAILED, RuntimeError)],
)
def test_a_run_that_stops_tells_every_listener_and_raises_its_own_error(
    tmp_path: Path, error: BaseException, status: str, raised: type
) -> None:
    recorder = Recorder(stop_at=1, error=error)
    with pytest.raises(raised):
        finetune(
            _recipe(tmp_path, epochs=2),
            register=False,
            callbacks=[Broken(), recorder],
        )
    assert recorder.seen[-1] == ("failure", status, type(error).__name__)


def test_the_listeners_are_wired_in_their_documented_order() -> None:
    state = SimpleNamespace(register=True, dist=SimpleNamespace(main=True))
    watcher = Callback()
    wired = wire(state, [watcher], again=False)  # type: ignore[arg-type]
    assert [type(x) for x in wired] == [BestEpoch, Checkpoints, Tracking, Terminal, Callback]
    assert wired[-1] is watcher
    state.register = False  # no MLflow without registration
    assert [type(x) for x in wire(state, [], again=False)] == [  # type: ignore[arg-type]
        BestEpoch,
        Checkpoints,
        Terminal,
    ]
