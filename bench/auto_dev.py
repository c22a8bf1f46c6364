"""auto's decision on the development sets, beside the test figures recorded for the
same splits: what a change to auto's cross-validation would have chosen.

    python bench/auto_dev.py [--sets icons ...] [--seeds 0 1 2] [--home DIR] [--out F.jsonl]

Development figures only (docs/protocol.md): every set named here is spent. For each set
and seed, `zoo finetune effnet-lite:lite0 SET --strategy auto --dry-run` on the
protocol's split (val 0.2, test 0.3, the seed) in one zoo home (the feature caches are
filled once per set); then auto's cheap scores and decision beside the test accuracy of
the linear probe and the multi-stage probe as registered on that split, read from the
raw results of earlier runs (RECORDED). The dry run scores only the cheap candidates:
the figures say which of the two probes auto would take.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets
from _common import git_commit

RESULTS = Path(__file__).resolve().parent / "results"
# where each set's registered probe and multi-stage probe (L-BFGS head) were measured
COMBINE = "combine-dev-a7f99c9.jsonl"  # the six sets spent by the first three evaluations
RECORDED = {"art4apps": "choose-b70b89d.json", "chess": "choose-b70b89d.json"}
SETS = ("icons", "fashion", "gnome-icons", "glyphs", "emoji", "schematics", "art4apps", "chess")


def recorded() -> dict[tuple[str, int], dict[str, float]]:
    """(set, seed) -> {"probe": test accuracy, "stage": test accuracy}."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    for line in (RESULTS / COMBINE).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        out[(row["set"], row["seed"])] = {"probe": row["test_probe"], "stage": row["test_stage"]}
    for name, file in RECORDED.items():
        runs = json.loads((RESULTS / file).read_text(encoding="utf-8"))["sets"][name]["runs"]
        for seed, run in runs["linear-probe"].items():
            stage = runs["stage-probe"][seed]
            probe, staged = run["test_accuracy"], stage["test_accuracy"]
            out[(name, int(seed))] = {"probe": probe, "stage": staged}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--home", type=Path, default=Path("auto-dev-home"))
    parser.add_argument("--out", type=Path, default=Path("auto-dev.jsonl"))
    args = parser.parse_args()
    env = {**os.environ, "ZOO_HOME": str(args.home), "CI": "true"}
    tests = recorded()
    commit, dirty = git_commit()
    state = " with uncommitted changes" if dirty else ""
    print(f"$ python bench/auto_dev.py {' '.join(sys.argv[1:])}   (commit {commit[:7]}{state})")
    print(f"{'set':<12}{'seed':>5} {'decision':<13}{'cv probe':>9}{'cv stage':>9}{'p':>8}"
          f"{'test probe':>11}{'test stage':>11}{'auto-probe':>11}")  # fmt: skip
    for name in args.sets:
        path = datasets.layout(name).path
        for seed in args.seeds:
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "zoo", "finetune", "effnet-lite:lite0", str(path),
                   "--strategy", "auto", "--dry-run", "--val-split", "0.2", "--test-split",
                   "0.3", "--seed", str(seed), "--json"]  # fmt: skip
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            settings = json.loads(proc.stdout)["plan"]["settings"]
            ev = settings["evidence"]
            test = tests.get((name, seed), {})
            decision = settings["decision"]
            chosen = test.get("probe" if decision == "linear-probe" else "stage")
            row = {
                "set": name,
                "seed": seed,
                "decision": decision,
                "cv_probe": ev.get("cv.linear-probe"),
                "cv_stage": ev.get("cv.stage-probe"),
                "p_stage": ev.get("p.stage-probe"),
                "test_probe": test.get("probe"),
                "test_stage": test.get("stage"),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            diff = None if chosen is None else 100 * (chosen - test["probe"])
            print(f"{name:<12}{seed:>5} {decision:<13}{row['cv_probe']:>9.3f}"
                  f"{row['cv_stage'] or 0:>9.3f}{row['p_stage'] or 1:>8.3f}"
                  f"{test.get('probe', 0):>11.3f}{test.get('stage', 0):>11.3f}"
                  f"{'' if diff is None else f'{diff:+.1f}':>11}", flush=True)  # fmt: skip
            with args.out.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
