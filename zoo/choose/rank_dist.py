"""`zoo rank --nproc-per-node K` (and ``--nnodes N``): the ranking under torchrun.

The parent writes the ranking's arguments to a file and starts torchrun (the same
launcher as `zoo finetune`'s, :mod:`zoo.engine.distributed`) with

    -m zoo.choose.rank_dist JOB RESULT

Every worker runs :func:`zoo.choose.rank.rank`: the first process of each node checks
the data while the others wait, each process extracts the features of its share of the
images (row ``i`` on process ``i % world``) into its own shard of the feature cache
(:mod:`zoo.engine.rows`: no rows are gathered in memory), and every process then scores
the whole cache, so the rows are the same everywhere; the first worker of each node
writes them (or the error the workers agreed on) for its node's parent.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.choose.rank import RankRow, rank
from zoo.engine.distributed import Nodes, job_command, report, run_job

__all__ = ["launch_rank", "main"]


def launch_rank(
    data: str,
    refs: Sequence[str],
    *,
    nproc: int,
    nodes: Nodes | None = None,
    **options: Any,
) -> list[RankRow]:
    """:func:`zoo.choose.rank.rank` (``options``: its keyword arguments but ``on_row``)
    run by ``nproc`` processes on this node (and the other nodes' of ``nodes``)."""
    nodes = nodes or Nodes()
    nodes.check_nodes()
    job = {"data": data, "refs": list(refs), **options}
    text = json.dumps(job, sort_keys=True)
    default_id = "zoo-rank-" + hashlib.sha256(text.encode()).hexdigest()[:16]
    with tempfile.TemporaryDirectory(prefix="zoo-rank-") as tmp:
        job_file, result_file = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_file.write_text(text, encoding="utf-8")
        args = [str(job_file), str(result_file)]
        cmd = job_command("zoo.choose.rank_dist", nproc, nodes, default_id, args)
        out = run_job(
            cmd, nproc, result_file, "the ranking was interrupted; re-run the same command"
        )
    return [RankRow(**row) for row in out["rows"]]


def main(argv: list[str] | None = None) -> int:
    """A torchrun worker of `zoo rank`."""
    args = list(sys.argv[1:] if argv is None else argv)
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    data, refs = job.pop("data"), job.pop("refs")
    return report(lambda: {"rows": [r.to_dict() for r in rank(data, refs, **job)]}, Path(args[1]))


if __name__ == "__main__":
    sys.exit(main())
