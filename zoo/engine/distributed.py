"""``--nproc-per-node K`` and ``--nnodes N``: the same run under PyTorch's own launcher
(torchrun) with DDP.

The parent process (``zoo finetune`` on each node) writes the recipe to a file and starts
torchrun (``torch.distributed.run``, wrapped by ``--torchrun`` here only so that a failed
process is reported in one line, not torchrun's traceback) with

    --standalone --nproc-per-node K -m zoo.engine.distributed RECIPE RESULT

or, for several nodes, ``--nnodes N --nproc-per-node K --rdzv-backend c10d
--rdzv-endpoint HOST:PORT --rdzv-id ID --max-restarts 0`` in place of ``--standalone``:
torchrun's rendezvous forms the job, zoo adds no cluster code of its own. Every worker
runs :func:`zoo.engine.finetune` (which finds RANK/WORLD_SIZE/LOCAL_RANK in its
environment, selects its GPU, joins the process group and wraps the model in DDP). The
first worker of each node writes the job's result, or the error every worker agreed on,
to RESULT for its node's parent, which prints it and exits with its code.

Signals: torchrun stops the workers with SIGTERM when one of them ends; a worker treats
SIGTERM (and Ctrl-C) as an interruption: the last checkpoint stays, the exit code is 130.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.contract import errors
from zoo.disk.paths import atomic_write_text
from zoo.engine.context import Dist, stop_on_signals
from zoo.engine.job import FinetuneResult, finetune
from zoo.engine.recipe import Recipe

__all__ = [
    "Nodes",
    "job_command",
    "launch_line",
    "launch_torchrun",
    "main",
    "report",
    "run_job",
    "torchrun_command",
]

_ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class Nodes:
    """The job's nodes: how many, and torchrun's c10d rendezvous that joins them."""

    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT, the same on every node
    rdzv_id: str | None = None  # default: derived from the recipe (same on every node)

    @property
    def multi(self) -> bool:
        return self.nnodes > 1 or self.rdzv_endpoint is not None

    def check(self, recipe: Recipe) -> None:
        """The nodes' options and the recipe's batch over the job's processes."""
        self.check_nodes()
        world = self.nnodes * recipe.nproc_per_node
        if recipe.batch_size % world:
            raise errors.UsageError(
                f"--batch-size {recipe.batch_size} does not split evenly over {world} "
                f"processes ({self.nnodes} nodes x {recipe.nproc_per_node}); pick a multiple "
                f"of {world}"
            )
        if world > 1 and recipe.batch_size // world < 2:
            raise errors.UsageError(
                f"--batch-size {recipe.batch_size} over {world} processes is "
                f"{recipe.batch_size // world} image per process per step: BatchNorm cannot "
                f"train on one image per process; use --batch-size {2 * world} or more (or "
                "fewer processes)"
            )

    def check_nodes(self) -> None:
        if self.nnodes < 1:
            raise errors.UsageError(f"--nnodes must be at least 1, got {self.nnodes}")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise errors.UsageError(
                f"--nnodes {self.nnodes} needs --rdzv-endpoint HOST:PORT: the same address on "
                "every node, of one of them (its torchrun hosts the rendezvous)"
            )
        if self.rdzv_endpoint is not None:
            m = _ENDPOINT.match(self.rdzv_endpoint)
            if m is None or not 0 < int(m.group(2)) < 65536:
                raise errors.UsageError(
                    f"--rdzv-endpoint {self.rdzv_endpoint!r} is not HOST:PORT (e.g. "
                    "node1.example.org:29400 or 10.0.0.5:29400)"
                )
        if self.rdzv_id is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", self.rdzv_id):
            raise errors.UsageError(
                f"--rdzv-id {self.rdzv_id!r}: use up to 64 letters, digits, '_', '.' or '-'"
            )


def torchrun_command(
    recipe: Recipe, nodes: Nodes, recipe_file: Path, result_file: Path
) -> list[str]:
    return job_command(
        "zoo.engine.distributed",
        recipe.nproc_per_node,
        nodes,
        "zoo-" + recipe.key(),
        [str(recipe_file), str(result_file)],
    )


def job_command(
    worker: str, nproc: int, nodes: Nodes, default_id: str, args: list[str]
) -> list[str]:
    """torchrun (through ``--torchrun``) running ``python -m worker ARGS`` in ``nproc``
    processes on this node, joined with the other nodes' by the rendezvous."""
    cmd = [sys.executable, "-m", "zoo.engine.distributed", "--torchrun"]
    if nodes.multi:
        cmd += [
            f"--nnodes={nodes.nnodes}",
            f"--nproc-per-node={nproc}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={nodes.rdzv_endpoint}",
            f"--rdzv-id={nodes.rdzv_id or default_id}",
            "--max-restarts=0",
        ]
    else:
        cmd += ["--standalone", f"--nproc-per-node={nproc}"]
    return [*cmd, "-m", worker, *args]


def launch_line(recipe: Recipe | int, nodes: Nodes, what: str = "DDP") -> str:
    """What the parent says as it starts torchrun: how many processes, on how many nodes
    (``recipe``: the recipe, or the processes on this node)."""
    k = recipe if isinstance(recipe, int) else recipe.nproc_per_node
    here = f"{k} process{'es' if k != 1 else ''}"
    if not nodes.multi:
        return f"torchrun: starting {here} on this machine ({what}, one node)"
    n = nodes.nnodes
    return (
        f"torchrun: starting {here} on this node, {k * n} in all on {n} node"
        f"{'s' if n != 1 else ''} ({what}; rendezvous at {nodes.rdzv_endpoint})"
    )


def launch_torchrun(
    recipe: Recipe,
    *,
    resume: bool,
    restart: bool,
    again: bool = False,
    nodes: Nodes | None = None,
) -> FinetuneResult:
    from zoo.engine.checkpoint import recipe_lock

    nodes = nodes or Nodes()
    nodes.check(recipe)
    # held here, not by the ranks (they never wait on it); after the checks: a refusal
    # writes nothing
    with recipe_lock(recipe), tempfile.TemporaryDirectory(prefix="zoo-ddp-") as tmp:
        recipe_file = Path(tmp) / "recipe.json"
        result_file = Path(tmp) / "result.json"
        recipe_file.write_text(json.dumps(recipe.to_dict()), encoding="utf-8")
        cmd = torchrun_command(recipe, nodes, recipe_file, result_file)
        cmd += [flag for flag, on in (("--resume", resume), ("--restart", restart)) if on]
        if again:
            cmd.append("--again")
        print(f"zoo: {launch_line(recipe, nodes)}", file=sys.stderr, flush=True)
        data = run_job(cmd, recipe.nproc_per_node, result_file)
        return FinetuneResult.from_dict(data)


def run_job(
    cmd: list[str],
    nproc: int,
    result_file: Path,
    interrupted: str = "the distributed run was interrupted; re-run the same command to "
    "resume from its last checkpoint",
) -> dict[str, Any]:
    """Run torchrun's ``cmd`` and return the outcome this node's first worker wrote to
    ``result_file``, or raise the error the workers agreed on (``interrupted``: what to
    say when torchrun was stopped before any worker reported)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    code = _wait(subprocess.Popen(cmd, env=env), result_file.parent)
    if result_file.exists():
        data = _cause(json.loads(result_file.read_text(encoding="utf-8")), result_file)
        if "error" in data:
            cls = getattr(errors, data["error"], errors.ZooError)
            if not (isinstance(cls, type) and issubclass(cls, errors.ZooError)):
                cls = errors.ZooError
            raise cls(data["message"])
        return data
    if code == errors.EXIT_INTERRUPTED or code < 0:
        raise errors.Interrupted(interrupted)
    raise errors.ZooError(
        f"the distributed run failed (torchrun exit {code}); see the workers' messages above"
    )


def _rank_file(result_file: Path, rank: int) -> Path:
    return result_file.with_name(f"error.rank{rank}.json")


def _cause(data: dict[str, Any], result_file: Path) -> dict[str, Any]:
    """The node's outcome; when that is "another process stopped" and another process
    of this node failed by itself (out of memory, say), that process's error."""
    if data.get("error") != "Interrupted":
        return data
    for path in sorted(result_file.parent.glob("error.rank*.json")):
        other = json.loads(path.read_text(encoding="utf-8"))
        if other.get("error") not in (None, "Interrupted"):
            rank = path.stem.removeprefix("error.rank")
            return {"error": other["error"], "message": f"rank {rank}: {other['message']}"}
    return data


def _wait(proc: subprocess.Popen[Any], outcomes: Path) -> int:
    """torchrun's exit code. Ctrl-C here goes on to torchrun (which stops its workers,
    who save and report); a second Ctrl-C stops waiting for them."""
    try:
        return _wait_or_stop(proc, outcomes)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=120)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
            raise errors.Interrupted(
                "interrupted; the workers were stopped, the last completed epoch's "
                "checkpoint is kept: re-run the same command to resume"
            ) from None


def _wait_or_stop(proc: subprocess.Popen[Any], outcomes: Path) -> int:
    """torchrun's exit code. A worker that has reported its outcome (the node's
    ``result.json``, or a rank's ``error.rankN.json``) exits 0, so torchrun keeps waiting
    for the others; one stuck outside any collective (a decode worker that never
    answers, say) would hang the command for good. Once an outcome is reported, the
    others get the job's collective timeout (``ZOO_DIST_TIMEOUT``) to end; then torchrun
    is stopped, which stops them."""
    import time

    from zoo.engine.context import collective_timeout

    grace = collective_timeout()
    reported: float | None = None
    while True:
        try:
            return proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        if reported is None:
            if any(outcomes.glob("result.json")) or any(outcomes.glob("error.rank*.json")):
                reported = time.monotonic()
        elif time.monotonic() - reported > grace:
            print(
                f"zoo: a worker reported its outcome {grace} s ago (ZOO_DIST_TIMEOUT) and "
                "the others have not ended: stopping them",
                file=sys.stderr,
                flush=True,
            )
            proc.terminate()
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()


def _torchrun(args: list[str]) -> int:
    """torchrun itself (``torch.distributed.run.main``), with its failure report as one
    line per failed process instead of a traceback; the parent reports the outcome."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(args)
    except ChildFailedError as exc:
        for rank, failure in sorted(exc.failures.items()):
            how = (
                f"signal {failure.signal_name()}"
                if failure.exitcode < 0
                else f"exit code {failure.exitcode}"
            )
            print(f"zoo: torchrun: process rank {rank} ended with {how}", file=sys.stderr)
        return 1
    except (SignalException, KeyboardInterrupt):
        return errors.EXIT_INTERRUPTED
    return 0


def main(argv: list[str] | None = None) -> int:
    """A torchrun worker of `zoo finetune` (or torchrun itself, with ``--torchrun``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--torchrun"]:
        return _torchrun(args[1:])
    recipe_file, result_file = Path(args[0]), Path(args[1])
    recipe = Recipe.from_dict(json.loads(recipe_file.read_text(encoding="utf-8")))
    return report(
        lambda: finetune(
            recipe,
            resume="--resume" in args,
            restart="--restart" in args,
            again="--again" in args,
        ).to_dict(),
        result_file,
    )


def report(work: Callable[[], dict[str, Any]], result_file: Path) -> int:
    """Run a worker's ``work`` and report its outcome. Exits 0 once it is reported (its
    node's first worker writes it for the parent, which exits with its code), so
    torchrun adds no report of its own to a refusal that all the workers share."""
    stop_on_signals()
    out: dict[str, Any]
    clean = False
    try:
        out, clean = work(), True
    except errors.ZooError as exc:
        out = {"error": type(exc).__name__, "message": str(exc)}
    except KeyboardInterrupt:
        out = {
            "error": "Interrupted",
            "message": "interrupted before training began; re-run the same command",
        }
    except Exception as exc:
        if os.environ.get("ZOO_DEBUG", "") in {"1", "true"}:
            import traceback

            traceback.print_exc()
        out = {
            "error": "ZooError",
            "message": f"unexpected {type(exc).__name__} in a distributed worker: {exc} "
            "(set ZOO_DEBUG=1 for the traceback)",
        }
    dist = Dist.from_env()
    if dist.node_main:
        atomic_write_text(result_file, json.dumps(out, default=str))
    elif not clean:  # its own error may be why the others stopped: the parent looks
        atomic_write_text(_rank_file(result_file, dist.rank), json.dumps(out, default=str))
    if not clean:
        # A peer may be gone, and leaving the group could wait for it (NCCL) or abort at
        # exit: the outcome is written, so end here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    dist.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
