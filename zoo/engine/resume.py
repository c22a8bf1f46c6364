"""What a job continues from: a finished run, a checkpoint, or nothing, agreed by every
process of the job.

Nodes need not share a disk, and torchrun's rendezvous decides which node's process
becomes rank 0, so the checkpoint of an interrupted job may sit in any node's home. The
first process of each node looks in its own home (``checkpoint.py`` reads and checks the
files); the job takes a finished run if any node has one, else the newest checkpoint,
which its node sends to every process (and rank 0 writes to its home, where the next
checkpoints go). A refusal on any node (a checkpoint of other data) stops every process
with its message.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from zoo.engine import checkpoint
from zoo.engine.state import FinetuneResult

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState

__all__ = ["continue_from"]


def continue_from(
    state: RunState, *, again: bool, resume: bool, restart: bool
) -> tuple[FinetuneResult | None, checkpoint.Resumed | None]:
    """(the finished result, or the checkpoint to continue from, or neither).

    The first process of each node looks in its node's home; the job agrees on one
    answer: a finished run anywhere, else the newest checkpoint anywhere (sent from the
    node that has it to every process, and to rank 0's home when it is not there)."""
    dist = state.dist
    found: dict[str, Any] = {}

    def look() -> tuple[str, int]:
        if not dist.node_main:
            return ("none", 0)
        done = checkpoint.finished(state, again=again, resume=resume)
        if done is not None:
            found["done"] = done
            return ("done", 0)
        saved = checkpoint.resume(state, resume=resume and dist.world <= 1, restart=restart)
        if saved is None:
            return ("none", 0)
        found["resumed"] = saved
        return ("resume", saved.completed)

    views = dist.agree(look)
    if dist.world <= 1:
        return found.get("done"), found.get("resumed")
    if any(kind == "done" for kind, _ in views):
        src = next(r for r, (kind, _) in enumerate(views) if kind == "done")
        data = dist.broadcast(found["done"].to_dict() if dist.rank == src else None, src)
        result = FinetuneResult.from_dict(data)
        result.already_registered = True
        return result, None
    candidates = [(completed, -r) for r, (kind, completed) in enumerate(views) if kind == "resume"]
    if not candidates:
        if resume:
            checkpoint.resume(state, resume=True, restart=False)  # its one-line refusal
        return None, None
    src = -max(candidates)[1]  # the newest checkpoint (the lowest rank among equals)
    mine = _checkpoint_bytes(state, found.get("resumed")) if dist.rank == src else None
    payload = dist.broadcast(mine, src)
    return None, _from_bytes(state, payload, write=dist.main and src != 0)


def _checkpoint_bytes(state: RunState, resumed: checkpoint.Resumed | None) -> bytes:
    import torch

    assert resumed is not None
    best = checkpoint.load_best(state)
    buffer = io.BytesIO()
    torch.save({"state": resumed.state, "best": best}, buffer)
    return buffer.getvalue()


def _from_bytes(state: RunState, payload: bytes, *, write: bool) -> checkpoint.Resumed:
    import torch

    data = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    saved = data["state"]
    if write:  # rank 0 writes the next checkpoints: it needs the registered epoch's weights
        checkpoint.save_tensors_file(state.dir / checkpoint.STATE_FILE, saved)
        if data["best"] is not None:
            checkpoint.save_tensors_file(state.dir / checkpoint.BEST_FILE, {"model": data["best"]})
    return checkpoint.Resumed(
        int(saved["completed"]), int(saved["phase"]), int(saved["phase_epoch"]), saved
    )
