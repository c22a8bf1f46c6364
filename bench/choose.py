"""Choosing for the user, on data nothing was tuned on: every figure of docs/protocol.md
from one run.

    python bench/choose.py                      # the evaluation: EVALUATION_SETS, 3 seeds
    python bench/choose.py --smoke              # the plumbing in minutes, on the development set
    python bench/choose.py --sets dev           # development figures (openclipart)
    python bench/choose.py --sets gnome-icons glyphs   # any sets of bench/datasets.py

Drives the real `zoo` CLI (`zoo finetune ... --json`; for the ranks, `zoo rank`'s own
function in this process) in one fresh zoo home per run of this script (`--home DIR`
reuses one: a finished recipe is not trained again, so an interrupted run continues).
For each set and seed: every fixed strategy at its defaults on EfficientNet-Lite0,
`auto`, the linear probe of Lite1 and Lite2, the multi-backbone probe (Lite0,1,2), and
the probes of the real ranking candidates (Lite0/1/2, and Lite0 fine-tuned on each other
evaluation set of the run and on openclipart: derivative_sets); then LogME and k-NN of
those candidates on each seed's training split. Prints each seed's test accuracy, the
paired differences of the protocol with their 95% intervals, Kendall's tau with both
orders, the command and the git commit; writes every raw result to a JSON file (`--out`),
after each run.
Strategies, metrics or flags this tree does not have are reported as not available,
and the run goes on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets
from _choose_figures import rank_figures, set_figures
from _common import git_commit, versions

# --- the protocol (docs/protocol.md): change it only there, with a date ---
VAL_SPLIT = 0.2  # the first four evaluations' split, and the derivatives' validation
TEST_SPLIT = 0.3
# docs/protocol.md amendment 5: the fifth evaluation's sets keep ~20-24 training images
# a class and test on ~590 and 700 images (one image ~0.17 and 0.14 point)
SPLITS = {"symbola": (0.1, 0.7), "digits": (0.1, 0.7)}
SEEDS = (0, 1, 2)  # docs/protocol.md: three seeds (amended from five before any run)
EVALUATION_SETS = ("symbola", "digits")  # docs/protocol.md amendment 5 (4th: art4apps chess)
# development sets now (spent by the third evaluation): the derivatives of a run that names
# no evaluation set (--sets dev, --smoke)
SPENT_SETS = ("art4apps", "chess")
AUTO_BUDGET = "10m"
LITE = ("effnet-lite:lite0", "effnet-lite:lite1", "effnet-lite:lite2")
BASE = LITE[0]
FIXED = (
    "linear-probe",
    "partial",
    "full",
    "lp-ft",
    "layer-decay",
    "gradual",
    "early-layers",
    "stage-probe",
)
MULTI = "multi-backbone probe"
# fitted to convergence: no --epochs (--smoke passes one epoch to the others)
FITTED = ("stage-probe",)
# Lite0 fine-tuned on a set (`full`, its defaults), a real ranking candidate for the others
DERIVATIVE_STRATEGY = "full"
DEV_PER_CLASS = 60  # the development set's derivative is trained on 60 images per class
# --smoke: 2 classes x 10 images, one seed, one epoch
SMOKE_CLASSES, SMOKE_PER_CLASS, SMOKE_BUDGET = 2, 10, "1m"


def splits(name: str) -> tuple[float, float]:
    """(validation, test) shares of a set's split (docs/protocol.md)."""
    return SPLITS.get(name, (VAL_SPLIT, TEST_SPLIT))


def probe_key(ref: str) -> str:
    return "linear-probe" if ref == BASE else f"probe {ref}"


class Zoo:
    """Runs `python -m zoo ...` in the bench's home; keeps every stderr in a log."""

    def __init__(self, home: Path, log: Path) -> None:
        self.env = {**os.environ, "ZOO_HOME": str(home), "CI": "true"}
        self.log = log

    def __call__(self, *args: str) -> dict[str, Any]:
        import subprocess

        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "zoo", *args], env=self.env, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        command = shlex.join(["zoo", *args])
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"$ {command}\n{proc.stderr}(exit {proc.returncode}, {seconds:.0f} s)\n")
        out: dict[str, Any] = {"command": command, "rc": proc.returncode, "seconds": seconds}
        if proc.returncode == 0:
            out["doc"] = json.loads(proc.stdout)
            return out
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("zoo: error:")]
        out["error"] = (errors or lines or ["(no message)"])[-1]
        # exit 2: a strategy, metric, flag or reference form this tree does not have
        out["status"] = "not available" if proc.returncode == 2 else "failed"
        return out


def finetune_runs(budget: str, candidates: list[str]) -> list[tuple[str, str, str, list[str]]]:
    """(key, reference, strategy, extra options) of every run per set and seed."""
    runs = [(s, BASE, s, []) for s in FIXED]
    runs.append(("auto", BASE, "auto", ["--budget", budget]))
    runs += [(probe_key(ref), ref, "linear-probe", []) for ref in LITE[1:]]
    runs.append((MULTI, ",".join(LITE), "linear-probe", []))
    runs += [(probe_key(ref), ref, "linear-probe", []) for ref in candidates if ref not in LITE]
    return runs


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def summarize(outcome: dict[str, Any]) -> dict[str, Any]:
    """What the JSON keeps of a finetune: the figures, the plan's decision, the error."""
    doc = outcome.pop("doc", None)
    if doc is None:
        return outcome
    settings = (doc.get("plan") or {}).get("settings") or {}
    outcome.update(
        test_accuracy=doc["metrics"].get("test_accuracy"),
        metrics=doc["metrics"],
        model_uri=doc.get("model_uri"),
        chosen_by=doc.get("chosen_by"),
        zoo_seconds=doc.get("seconds"),
        status="ok",
    )
    for key in ("decision", "reason", "unfreeze", "evidence", "candidates", "skipped"):
        if key in settings:
            outcome[key] = settings[key]
    return outcome


def training_split(
    data: Path, seed: int, dest: Path, shares: tuple[float, float]
) -> tuple[Path, int]:
    """The images of this seed's training split (zoo's own split of DATA), as links: what
    `zoo rank` scores, so the ranking sees no image the probes are tested on."""
    from zoo.catalog.index import describe
    from zoo.data import Preprocessing, load_dataset, split_dataset

    pre = Preprocessing.from_info(describe(BASE))
    dataset = load_dataset(str(data), resize=pre.resize, interpolation=pre.interpolation)
    val, test = shares
    split = split_dataset(dataset.labels, val, seed, test, dataset.classes)
    for index in split.train:
        sample = dataset.samples[index]
        folder = dest / dataset.classes[sample.label]
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / (sample.sha256[:16] + Path(sample.path).suffix)
        if not link.exists():
            link.symlink_to(Path(sample.path).resolve())
    return dest, len(split.train)


def rank_set(
    name: str, data: Path, seeds: list[int], candidates: list[str], work: Path
) -> dict[str, Any]:
    """LogME and k-NN of the candidates on each seed's training split, through
    `zoo.choose.rank.rank`, the function `zoo rank` runs: its rows come back in the order of
    the references (`on_row`), so a registered derivative, which `zoo rank` names by
    its base model, is never taken for the base itself."""
    from zoo.choose.rank import rank
    from zoo.contract.errors import ZooError

    out: dict[str, Any] = {}
    for seed in seeds:
        folder, n = training_split(data, seed, work / f"rank-{name}-seed{seed}", splits(name))
        for metric in ("logme", "knn"):
            command = shlex.join(["zoo", "rank", str(folder), *candidates, "--metric", metric])
            outcome: dict[str, Any] = {"command": command, "train_images": n}
            rows: list[Any] = []
            t0 = time.perf_counter()
            try:
                rank(str(folder), candidates, metric=metric, on_row=rows.append)
            except ZooError as exc:  # a metric this tree does not have: exit 2 in the CLI
                outcome.update(status="not available", error=f"zoo: error: {exc}")
            except Exception as exc:  # reported, and the run goes on
                outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
            else:
                finals = [row for row in rows if row.layer == "final"]
                scores = {ref: row.score for ref, row in zip(candidates, finals, strict=True)}
                outcome.update(status="ok", scores=scores)
            outcome["seconds"] = time.perf_counter() - t0
            out.setdefault(metric, {})[str(seed)] = outcome
            status = outcome["status"]
            shown = status if status == "ok" else f"{status}: {outcome['error']}"
            print(f"  {name} seed {seed} zoo rank --metric {metric}: {shown}", flush=True)
    return out


def derivative_sets(sets: list[str]) -> list[str]:
    """The sets Lite0 is fine-tuned on for ranking candidates: openclipart and the run's
    evaluation sets (SPENT_SETS when the run names none: `--sets dev`, --smoke, so that
    neither ever runs zoo on a set still to be evaluated). A set's candidates are the
    derivatives of every one of them but itself; a run of one evaluation set alone has
    the openclipart derivative only."""
    return sorted({"dev", *([s for s in sets if s != "dev"] or SPENT_SETS)})


def layouts(sets: list[str], smoke: bool, work: Path) -> dict[str, datasets.Layout]:
    """Every set the run needs (those asked for, and those their derivatives train on)."""
    wanted = {*sets, *derivative_sets(sets)}
    made: dict[str, datasets.Layout] = {}
    for name in sorted(wanted):
        if name == "dev":
            from zoo.testdata import CATEGORIES, fetch, layout_categories

            fetch(quiet=True)
            per_class = None if name in sets and not smoke else DEV_PER_CLASS
            folder = work / f"dev-{per_class or 'all'}"
            layout_categories(folder, CATEGORIES, per_class=per_class)
            counts = {d.name: sum(1 for _ in d.iterdir()) for d in sorted(folder.iterdir())}
            made[name] = datasets.Layout("dev", folder, counts, "openclipart-png (zoo.testdata)")
        else:
            made[name] = datasets.layout(name)
        if smoke:
            made[name] = datasets.subset(
                made[name], work / f"smoke-{name}", SMOKE_CLASSES, SMOKE_PER_CLASS
            )
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=(*datasets.SETS, "dev"))
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument(
        "--smoke", action="store_true", help="2 classes x 10 images, 1 seed, 1 epoch"
    )
    parser.add_argument("--home", type=Path, help="zoo home to use (default: a fresh one)")
    parser.add_argument("--out", type=Path, help="raw results (default: under the home)")
    args = parser.parse_args()
    sets = args.sets or (["dev"] if args.smoke else list(EVALUATION_SETS))
    seeds = args.seeds or ([0] if args.smoke else list(SEEDS))
    budget = SMOKE_BUDGET if args.smoke else AUTO_BUDGET
    work = args.home or Path(tempfile.mkdtemp(prefix="zoo-choose-"))
    home = work / "home"
    os.environ["ZOO_HOME"] = str(home)  # this process reads the same home (splits, refs)
    os.environ.setdefault("CI", "true")
    out_path = args.out or work / "choose.json"
    zoo = Zoo(home, work / "zoo.log")
    commit, dirty = git_commit()
    command = shlex.join(["python", "bench/choose.py", *sys.argv[1:]])
    results: dict[str, Any] = {
        "command": command,
        "commit": commit,
        "dirty": dirty,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "versions": versions(),
        "protocol": {
            "val_split": VAL_SPLIT,
            "test_split": TEST_SPLIT,
            "splits": {name: splits(name) for name in sets},
            "seeds": seeds,
            "auto_budget": budget,
            "smoke": args.smoke,
        },
        "sets": {},
        "derivatives": {},
    }

    def save() -> None:
        out_path.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")

    print(f"command: {command}")
    print(f"commit:  {commit}{' (uncommitted changes: a development figure)' if dirty else ''}")
    print(f"home:    {work} (zoo log: {work / 'zoo.log'})", flush=True)
    made = layouts(sets, args.smoke, work)
    epochs = ["--epochs", "1"] if args.smoke else []
    t_start = time.perf_counter()
    # Lite0 fine-tuned on every other set: real candidates for zoo rank (docs/protocol.md)
    derivatives: dict[str, str] = {}
    for name in sorted({n for s in sets for n in derivative_sets(sets) if n != s}):
        model = f"lite0-{DERIVATIVE_STRATEGY}-on-{name}"
        outcome = zoo(
            "finetune",
            BASE,
            str(made[name].path),
            "--strategy",
            DERIVATIVE_STRATEGY,
            "--val-split",
            str(VAL_SPLIT),
            "--seed",
            "0",
            "--name",
            model,
            "--json",
            *epochs,
        )
        results["derivatives"][name] = summarize(outcome)
        if outcome.get("status") == "ok":
            derivatives[name] = outcome["model_uri"]
        print(f"derivative {model}: {outcome.get('model_uri') or outcome.get('error')}")
        save()
    for name in sets:
        layout = made[name]
        candidates = [*LITE, *(uri for other, uri in derivatives.items() if other != name)]
        print(f"\n== {layout.describe()}\n   from {layout.source}", flush=True)
        entry: dict[str, Any] = {
            "layout": {"path": str(layout.path), "counts": layout.counts, "source": layout.source},
            "candidates": candidates,
            "runs": {},
        }
        results["sets"][name] = entry
        for seed in seeds:
            for key, ref, strategy, extra in finetune_runs(budget, candidates):
                model = f"{name}-{slug(key)}-s{seed}"
                outcome = summarize(
                    zoo(
                        "finetune",
                        ref,
                        str(layout.path),
                        "--strategy",
                        strategy,
                        "--val-split",
                        str(splits(name)[0]),
                        "--test-split",
                        str(splits(name)[1]),
                        "--seed",
                        str(seed),
                        "--name",
                        model,
                        "--json",
                        *([] if strategy in FITTED else epochs),
                        *extra,
                    )
                )
                entry["runs"].setdefault(key, {})[str(seed)] = outcome
                save()
                if outcome["status"] == "ok":
                    shown = f"test accuracy {outcome['test_accuracy']:.4f}"
                    if "decision" in outcome:
                        shown += f" (auto chose {outcome['decision']})"
                else:
                    shown = f"{outcome['status']}: {outcome['error']}"
                print(
                    f"  {name} seed {seed} {key}: {shown} ({outcome['seconds']:.0f} s)", flush=True
                )
        entry["rank"] = rank_set(name, layout.path, seeds, candidates, work)
        save()
    elapsed = time.perf_counter() - t_start
    results["seconds"] = elapsed
    save()
    for name in sets:
        entry = results["sets"][name]
        print(f"\n==== {name}: {made[name].describe()}")
        for line in set_figures(entry["runs"], seeds, FIXED, MULTI, [probe_key(r) for r in LITE]):
            print(line)
        for line in rank_figures(
            entry["rank"], entry["runs"], entry["candidates"], seeds, probe_key
        ):
            print(line)
    print(f"\nwall time {elapsed / 60:.1f} min on {os.cpu_count()} CPUs; raw results: {out_path}")
    print(f"reproduce: {command}  (commit {commit}{', dirty' if dirty else ''})")


if __name__ == "__main__":
    main()
