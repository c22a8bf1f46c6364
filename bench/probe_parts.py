"""Where the CPU seconds of one whole linear-probe process go, part by part.

    python bench/probe_parts.py [--per-class 64] [--runs 1]

Lays out the same images as bench/probe_process.py (64 openclipart images per class of
the 8 categories: 502 files) and runs, in a fresh process with a fresh ZOO_HOME each time,

    zoo finetune effnet-lite:lite0 DATA --strategy linear-probe

with the engine's and the registry's steps wrapped (in that process only) so that each
step's CPU seconds (every thread of the process; ``time.process_time``) are added to its
part, less those of the steps and imports inside it; an import anywhere counts as
"imports", what no wrapped step ran as "other". The data check's worker processes are
counted where they were waited for (the check). CPU seconds, not wall: the machine is
shared, and waiting for the CPU is not work.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import importlib
import json
import os
import resource
import runpy
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# (module, attribute, part); the first import of each module is counted as an import
STEPS = [
    ("zoo.engine.setup", "load_dataset", "data check + decode"),
    ("zoo.engine.setup", "split_dataset", "split, lineage check"),
    ("zoo.engine.setup", "check_lineage", "split, lineage check"),
    ("zoo.engine.model", "describe", "model: describe, build"),
    ("zoo.engine.model", "build", "model: describe, build"),
    ("zoo.engine.features", "_capture", "features: forward pass"),
    ("zoo.engine.features", "find_classifier", "features: find the classifier"),
    ("zoo.engine.phases", "FeaturePhase.train", "head training"),
    ("zoo.engine.phases", "FeaturePhase.evaluate", "head training"),
    ("zoo.engine.listeners", "Checkpoints.on_epoch_end", "checkpoints"),
    ("zoo.engine.checkpoint", "write_done", "checkpoints"),
    ("zoo.engine.checkpoint", "load_best", "checkpoints"),
    ("zoo.engine.finish", "evaluate.registered", "fp32 scoring of the registered epoch"),
    ("zoo.engine.report", "plot_confusion", "figures (PNG)"),
    ("zoo.engine.report", "plot_curves", "figures (PNG)"),
    ("zoo.engine.tracking", "Tracking.start", "mlflow: run, params, dataset"),
    ("zoo.engine.tracking", "Tracking.log_epoch", "mlflow: metrics, figures"),
    ("zoo.engine.tracking", "Tracking.log_files", "mlflow: metrics, figures"),
    ("zoo.engine.tracking", "Tracking.log_final", "mlflow: metrics, figures"),
    ("zoo.engine.tracking", "Tracking.end", "mlflow: metrics, figures"),
    ("zoo.engine.register", "register", "register: the rest"),
    ("zoo.registry.write", "sha256_file", "register: weights, lineage, card, svg"),
    ("zoo.registry.write", "build_record", "register: weights, lineage, card, svg"),
    ("zoo.registry.write", "model_card", "register: weights, lineage, card, svg"),
    ("zoo.registry.write", "lineage_svg", "register: weights, lineage, card, svg"),
    ("mlflow.pytorch", "log_model", "register: log_model (not torch.export)"),
    ("torch.export", "export", "register: torch.export"),
    ("torch.export", "save", "register: torch.export"),
    ("zoo.registry.write", "_finish", "register: the version, its checks"),
]


class Parts:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.stack: list[list[Any]] = []  # [part, cpu at start, inner cpu, children at start]

    @staticmethod
    def _children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def enter(self, part: str) -> None:
        self.stack.append([part, time.process_time(), 0.0, self._children()])

    def leave(self) -> None:
        part, start, inner, children = self.stack.pop()
        spent = time.process_time() - start
        waited = self._children() - children
        own = spent - inner + waited
        self.totals[part] = self.totals.get(part, 0.0) + own
        if self.stack:
            self.stack[-1][2] += spent
            self.stack[-1][3] += waited  # counted once, where the workers were waited for

    def wrap(self, fn: Any, part: str) -> Any:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.enter(part)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        return wrapped


def child(out: str, argv: list[str]) -> None:
    """In the measured process: wrap imports and steps, run the command, write the parts."""
    parts = Parts()
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def counted(real: Any) -> Any:
        def imported(*args: Any, **kwargs: Any) -> Any:
            if parts.stack and parts.stack[-1][0] == "imports":
                return real(*args, **kwargs)
            parts.enter("imports")
            try:
                return real(*args, **kwargs)
            finally:
                parts.leave()

        return imported

    builtins.__import__ = counted(real_import)
    importlib.import_module = counted(real_import_module)  # type: ignore[assignment]
    parts.enter("other")
    for module, attr, part in STEPS:
        owner: Any = importlib.import_module(module)
        *path, name = attr.split(".")
        for step in path:
            owner = getattr(owner, step)
        setattr(owner, name, parts.wrap(getattr(owner, name), part))

    def report() -> None:
        while parts.stack:
            parts.leave()
        r = resource.getrusage(resource.RUSAGE_SELF)
        total = r.ru_utime + r.ru_stime + Parts._children()
        parts.totals["interpreter start"] = total - sum(parts.totals.values())
        Path(out).write_text(json.dumps(parts.totals), encoding="utf-8")

    sys.argv = ["zoo", *argv]
    try:
        runpy.run_module("zoo", run_name="__main__", alter_sys=True)
    finally:
        report()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import git_commit, setup

    import zoo
    from zoo.testdata import CATEGORIES

    ref, data = setup(args.per_class, CATEGORIES)
    command = ["finetune", ref, str(data), "--strategy", "linear-probe", "--name", "parts"]
    runs: list[dict[str, float]] = []
    for i in range(args.runs):
        home = tempfile.mkdtemp(prefix="zoo-parts-")
        out = Path(home) / "parts.json"
        env = dict(os.environ, ZOO_HOME=home, CI="true")
        cmd = [sys.executable, __file__, "--child", str(out), *command]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"run {i + 1} failed:\n{proc.stderr[-2000:]}")
        runs.append(json.loads(out.read_text(encoding="utf-8")))
    names = sorted({k for r in runs for k in r}, key=lambda k: -sum(r.get(k, 0.0) for r in runs))
    files = sum(1 for p in data.rglob("*") if p.is_file())
    commit, dirty = git_commit(Path(zoo.__file__).parent)  # the zoo measured
    print(f"zoo {shlex.join(command[:2])} DATA --strategy linear-probe, {files} files")
    print(f"commit {commit[:7]}{' (uncommitted changes)' if dirty else ''}; CPU seconds:")
    for name in names:
        print(f"  {name:42s}" + "".join(f"{r.get(name, 0.0):8.2f}" for r in runs))
    print(f"  {'total':42s}" + "".join(f"{sum(r.values()):8.2f}" for r in runs))
    print(f"load average (1, 5, 15 min) after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("reproduce: python " + shlex.join(["bench/probe_parts.py", *sys.argv[1:]]))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
    else:
        main()
