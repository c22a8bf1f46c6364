"""``--nproc-per-node N``: the same run under PyTorch's own launcher (torchrun) with DDP.

The parent process writes the recipe to a file and starts ``python -m
torch.distributed.run --standalone --nproc-per-node N -m zoo.engine.distributed RECIPE
RESULT``; every worker runs :func:`zoo.engine.finetune` (which finds RANK/WORLD_SIZE in its
environment, joins the process group — gloo on CPU, NCCL on GPUs — and wraps the model in
DistributedDataParallel). Rank 0 checks the data, logs, checkpoints and registers; it writes
the result (or the error) to RESULT for the parent. Many nodes: run torchrun yourself with
``--nnodes``/``--rdzv-endpoint`` and this module, exactly as here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from zoo import errors
from zoo.engine.recipe import Recipe
from zoo.engine.run import FinetuneResult, finetune
from zoo.home import atomic_write_text

__all__ = ["launch_torchrun", "main"]


def launch_torchrun(
    recipe: Recipe, *, resume: bool, restart: bool, again: bool = False
) -> FinetuneResult:
    with tempfile.TemporaryDirectory(prefix="zoo-ddp-") as tmp:
        recipe_file = Path(tmp) / "recipe.json"
        result_file = Path(tmp) / "result.json"
        recipe_file.write_text(json.dumps(recipe.to_dict()), encoding="utf-8")
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={recipe.nproc_per_node}",
            "-m",
            "zoo.engine.distributed",
            str(recipe_file),
            str(result_file),
        ]
        if resume:
            cmd.append("--resume")
        if restart:
            cmd.append("--restart")
        if again:
            cmd.append("--again")
        env = dict(os.environ)
        env.setdefault(
            "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // recipe.nproc_per_node))
        )
        proc = subprocess.run(cmd, env=env, check=False)
        if result_file.exists():
            data = json.loads(result_file.read_text(encoding="utf-8"))
            if "error" in data:
                cls = getattr(errors, data["error"], errors.ZooError)
                raise cls(data["message"])
            return FinetuneResult.from_dict(data)
        if proc.returncode == errors.EXIT_INTERRUPTED or proc.returncode < 0:
            raise errors.Interrupted(
                "the distributed run was interrupted; re-run the same command to resume "
                "from its last checkpoint"
            )
        raise errors.ZooError(
            f"the distributed run failed (torchrun exit {proc.returncode}); see the "
            "workers' messages above"
        )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    recipe_file, result_file = Path(args[0]), Path(args[1])
    recipe = Recipe.from_dict(json.loads(recipe_file.read_text(encoding="utf-8")))
    rank = int(os.environ.get("RANK", "0"))
    out: dict[str, Any]
    code = 0
    try:
        result = finetune(
            recipe,
            resume="--resume" in args,
            restart="--restart" in args,
            again="--again" in args,
        )
        out = result.to_dict()
    except errors.ZooError as exc:
        out = {"error": type(exc).__name__, "message": str(exc)}
        code = exc.exit_code
    except KeyboardInterrupt:
        out = {"error": "Interrupted", "message": "interrupted"}
        code = errors.EXIT_INTERRUPTED
    if rank == 0:
        atomic_write_text(result_file, json.dumps(out, default=str))
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass
    return code


if __name__ == "__main__":
    sys.exit(main())
