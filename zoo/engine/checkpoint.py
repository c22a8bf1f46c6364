"""Checkpoints: save after every epoch, resume the same run, refuse a resume that would
continue onto other data.

A checkpoint (``state.pt``) holds everything the next epoch depends on: weights, optimizer
and scheduler state, RNG states, the history, the best epoch, the MLflow run id, and what
it was trained on (the dataset digest and the split's digest). It is written atomically
(``zoo.disk.paths.atomic_writer``) and holds only tensors and plain values, loaded with
``torch.load(weights_only=True)``: no pickled code runs on resume.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.disk.paths import atomic_write_text, atomic_writer, disk_full, subdir
from zoo.progress import say

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.recipe import Recipe
    from zoo.engine.state import FinetuneResult, RunState

__all__ = [
    "BEST_FILE",
    "CHECKPOINT_FORMAT",
    "DONE_FILE",
    "STATE_FILE",
    "Resumed",
    "apply",
    "finished",
    "load",
    "recipe_lock",
    "resume",
    "save",
    "save_best",
    "save_tensors_file",
    "write_done",
]

CHECKPOINT_FORMAT = 2  # 2: records the dataset and split digests
STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
DONE_FILE = "result.json"
FINAL_FILE = "final.pt"
LOCK_FILE, OWNER_FILE = "recipe.lock", "recipe.pid"  # one run of a recipe at a time


@contextlib.contextmanager
def recipe_lock(recipe: Recipe) -> Iterator[None]:
    """Hold the recipe's lock (its checkpoint folder's) for the whole run.

    An identical command started meanwhile says once that it waits, and which process it
    waits for, then goes on when the first is done: by then the first has written its
    result, so the second prints "already registered" instead of training again. The
    lock is an OS file lock (``filelock``): a killed holder releases it."""
    from filelock import FileLock, Timeout

    folder = subdir("runs", recipe.key())
    lock = FileLock(str(folder / LOCK_FILE))
    owner = folder / OWNER_FILE
    try:
        lock.acquire(timeout=0)
    except Timeout:
        import time

        pid = "unknown"
        for _ in range(50):  # the holder writes its pid just after it took the lock
            with contextlib.suppress(OSError):
                pid = owner.read_text(encoding="utf-8").strip() or pid
            if pid != "unknown":
                break
            time.sleep(0.1)

        say(f"waiting for the same recipe, already running (pid {pid})")
        lock.acquire()
    try:
        atomic_write_text(owner, str(os.getpid()))
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def save_tensors_file(path: Path, state: dict[str, Any]) -> None:
    """Serialised in memory first: torch's zip writer, failing on a full disk, loses the
    errno ("unexpected pos") or aborts the process; a plain write keeps ENOSPC/EFBIG."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    with disk_full(f"the checkpoint {path}"), atomic_writer(path) as fh:
        fh.write(buffer.getbuffer())


def load(path: Path) -> dict[str, Any]:
    """A checkpoint file, or one line naming it and ``--restart``."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise UsageError(
            f"{path} is not a readable zoo checkpoint ({reason}); pass --restart to discard "
            "it and start this run over"
        ) from None
    if not isinstance(state, dict):
        raise UsageError(
            f"{path} is not a zoo checkpoint (it holds a {type(state).__name__}); pass "
            "--restart to discard it and start this run over"
        )
    return state


@dataclass(frozen=True)
class Resumed:
    completed: int
    phase: int
    phase_epoch: int
    state: dict[str, Any]


def _split_digest(state: RunState) -> str:
    return state.split.digest([s.sha256 for s in state.data.samples])


def _clear(state: RunState) -> None:
    if state.dist.node_main:  # each node's home (under DDP the loop agrees on the outcome)
        for name in (STATE_FILE, BEST_FILE, DONE_FILE):
            (state.dir / name).unlink(missing_ok=True)


def finished(state: RunState, *, again: bool, resume: bool) -> FinetuneResult | None:
    """The result of this run when it already finished on the same data (nothing to do),
    else None; a finished run on changed data, or ``again``, starts over."""
    from zoo.engine.state import FinetuneResult

    done = state.dir / DONE_FILE
    if not done.exists():
        return None
    info = json.loads(done.read_text(encoding="utf-8"))
    same_data = info.get("dataset_digest") == state.data.digest
    if resume:
        raise UsageError(
            f"this run already finished and registered {info.get('model_uri')}: nothing to "
            "resume (drop --resume; add --again to train and register a new version)"
        )
    if same_data and not again and info.get("model_uri"):
        result = FinetuneResult.from_dict(info)
        result.already_registered = True
        return result
    _clear(state)
    return None


def resume(state: RunState, *, resume: bool, restart: bool) -> Resumed | None:
    """The last checkpoint of this run, checked against the recipe and the data; None
    for a fresh start. Raises UsageError (one line, naming ``--restart``) otherwise."""
    path = state.dir / STATE_FILE
    if restart:
        _clear(state)
        return None
    if not path.exists():
        if resume:
            raise UsageError(
                f"--resume: no checkpoint of this recipe in {state.dir}; run without "
                "--resume to start it"
            )
        return None
    saved = load(path)
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(
            f"{path} was written by an older zoo (checkpoint format {saved.get('format')}, "
            f"this one reads {CHECKPOINT_FORMAT}); pass --restart to start this run over"
        )
    if saved.get("key") != state.recipe.key():
        raise UsageError(f"{path} is not a checkpoint of this recipe; pass --restart")
    if saved.get("data") != state.data.digest or saved.get("split") != _split_digest(state):
        raise UsageError(
            f"the data changed since the checkpoint of epoch {saved.get('completed')} in "
            f"{state.dir} (other files, or another split of them): resuming would continue "
            "on other images; pass --restart to start over on the data as it is now"
        )
    return Resumed(int(saved["completed"]), int(saved["phase"]), int(saved["phase_epoch"]), saved)


def apply(state: RunState, resumed: Resumed) -> None:
    """Put the checkpoint's weights, record and RNG into the run."""
    from zoo.engine.seeding import set_rng_state

    saved = resumed.state
    state.model.load_state_dict(saved["model"])
    state.history = json.loads(saved["history"])
    state.best = json.loads(saved["best"])
    state.completed = resumed.completed
    set_rng_state(saved["rng"])


def save(state: RunState, phase: int, phase_epoch: int, optimizer: Any, scheduler: Any) -> None:
    if not state.dist.main:
        return
    save_tensors_file(
        state.dir / STATE_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "key": state.recipe.key(),
            "data": state.data.digest,
            "split": _split_digest(state),
            "completed": state.completed,
            "phase": phase,
            "phase_epoch": phase_epoch,
            "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": _rng(),
            "history": json.dumps(state.history),
            "best": json.dumps(state.best),
            "run_id": state.run_id or "",
        },
    )


def _rng() -> dict[str, Any]:
    from zoo.engine.seeding import rng_state

    return rng_state()


def save_best(state: RunState) -> None:
    if state.dist.main:
        weights = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
        save_tensors_file(state.dir / BEST_FILE, {"model": weights})


def load_best(state: RunState) -> dict[str, Any] | None:
    path = state.dir / BEST_FILE
    return load(path)["model"] if path.exists() else None


def write_done(state: RunState, result: FinetuneResult, final: dict[str, Any]) -> None:
    save_tensors_file(state.dir / FINAL_FILE, {"model": final})
    if result.model_uri:
        atomic_write_text(state.dir / DONE_FILE, json.dumps(result.to_dict(), indent=2))
