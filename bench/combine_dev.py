"""Would a candidate that combines the probe and the multi-stage probe, rather than choose
between them, meet issue 20's goals? A development analysis (docs/protocol.md,
"Changes"; docs/benchmarks.md, "Choosing: combining instead of choosing").

    python bench/combine_dev.py [--sets icons fashion ...] [--seeds 0,1,2] [--home DIR]
                                [--out bench/results/combine-dev-COMMIT.jsonl]
    python bench/combine_dev.py --table LINES.jsonl bench/results/dev-stage-probe-7cde2d5.json

For each set and seed, on zoo's own split (val 0.2, test 0.3, `effnet-lite:lite0`):

- `probe`: the `linear-probe` strategy as zoo registers it (AdamW passes, the best
  validation epoch), trained in process (`finetune(register=False)`); its test
  probabilities are its classifier applied to the cached features.
- `probe-lr`: the standardised L2 logistic regression auto's CV scores, on the same
  features (zoo/engine/evidence.py `cv_head`).
- `stage`: the multi-stage probe as it registers (every stage's pooled features and the
  classifier's input, `zoo.engine.features.stage_probe`), fitted by the same regression.
- `mean` / `mean-lr`: the average of `stage`'s and `probe`'s (`probe-lr`'s) class
  probabilities: one model, no choice.

Each is scored on the test split; the cheap ones (`probe-lr`, `stage`, `mean-lr`) also by
auto's repeated k-fold CV on the training split (the same folds), with the corrected
t-test's p-value against `probe-lr`. One JSON line per set and seed. The sets are spent
evaluation sets: every figure here is a development figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

DEV_SETS = ("icons", "fashion", "gnome-icons", "glyphs", "emoji", "schematics")
BASE = "effnet-lite:lite0"


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def full_proba(fitted: object, x: np.ndarray, classes: int) -> np.ndarray:
    """predict_proba over every class (a class absent from the fit's rows gets 0)."""
    out = np.zeros((len(x), classes))
    out[:, fitted.classes_] = fitted.predict_proba(x)  # type: ignore[attr-defined]
    return out


def cv_rows(
    h: np.ndarray, s: np.ndarray, y: np.ndarray, seed: int, classes: int
) -> dict[str, list[float]]:
    """Per-fold accuracies of probe-lr, stage and mean-lr over auto's folds."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    from zoo.engine.evidence import AUTO_FOLDS, AUTO_REPEATS, cv_head

    counts = np.bincount(y)
    k = min(AUTO_FOLDS, int(counts[counts > 0].min()))
    cv = RepeatedStratifiedKFold(n_splits=k, n_repeats=AUTO_REPEATS, random_state=seed)
    folds: dict[str, list[float]] = {"probe-lr": [], "stage": [], "mean-lr": []}
    for fit_rows, held in cv.split(h, y):
        p = full_proba(cv_head().fit(h[fit_rows], y[fit_rows]), h[held], classes)
        q = full_proba(cv_head().fit(s[fit_rows], y[fit_rows]), s[held], classes)
        for name, proba in (("probe-lr", p), ("stage", q), ("mean-lr", (p + q) / 2)):
            folds[name].append(float((proba.argmax(1) == y[held]).mean()))
    return folds


def one(name: str, seed: int) -> dict[str, object]:
    import torch
    from datasets import layout

    from zoo.engine.evidence import AUTO_REPEATS, corrected_t_p, cv_head
    from zoo.engine.features import classifier, head_features, stage_probe
    from zoo.engine.recipe import Recipe
    from zoo.engine.run import finetune
    from zoo.engine.setup import prepare

    t0 = time.time()
    data = str(layout(name).path)
    recipe = Recipe(ref=BASE, data=data, val_split=0.2, test_split=0.3, seed=seed)
    result = finetune(recipe, register=False)  # the linear probe as zoo registers it
    state = prepare(recipe, register=False, trials=False, leakage=False)
    train = np.array(list(state.split.train))
    test = np.array(list(state.split.test))
    head = classifier(state)
    path = {id(m): p for p, m in state.model.named_modules()}[id(head)]
    h_t, labels = head_features(state, head)
    s_t = stage_probe(state, head)[0]
    h, s, y = h_t.float().numpy(), s_t.float().numpy(), labels.numpy()
    classes = len(state.data.classes)
    trained = result.backbone.model.get_submodule(path)
    with torch.no_grad():
        logits = trained(h_t[torch.from_numpy(test)].to(next(trained.parameters()).dtype))
    proba = {"probe": softmax(logits.float().numpy())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's convergence notes
        proba["probe-lr"] = full_proba(cv_head().fit(h[train], y[train]), h[test], classes)
        proba["stage"] = full_proba(cv_head().fit(s[train], y[train]), s[test], classes)
        proba["mean"] = (proba["probe"] + proba["stage"]) / 2
        proba["mean-lr"] = (proba["probe-lr"] + proba["stage"]) / 2
        folds = cv_rows(h[train], s[train], y[train], seed, classes)
    row: dict[str, object] = {"set": name, "seed": seed, "n_train": len(train), "n_test": len(test)}
    row["zoo_test_probe"] = result.metrics.get("test_accuracy")
    for key, p in proba.items():
        row[f"test_{key}"] = float((p.argmax(1) == y[test]).mean())
    k = len(folds["probe-lr"]) // AUTO_REPEATS
    share = 1 / (k - 1)
    for key, scores in folds.items():
        row[f"cv_{key}"] = float(np.mean(scores))
        if key != "probe-lr":
            row[f"p_{key}"] = corrected_t_p(scores, folds["probe-lr"], share)
    row["p_stage_vs_mean-lr"] = corrected_t_p(folds["stage"], folds["mean-lr"], share)
    row["seconds"] = round(time.time() - t0, 1)
    return row


# what auto's rule compares against: the Bonferroni share of AUTO_ALPHA for its four
# challengers on Lite0 (stage-probe, partial K=1..3; zoo/engine/evidence.py)
RULE_ALPHA = 0.05 / 4
GOAL = 0.005  # issue 20: within 0.5 point of the best fixed strategy, and of the probe


def rules(row: dict[str, object]) -> dict[str, float]:
    """What each rule would register for one set and seed (test accuracy)."""
    t = {k[5:]: float(v) for k, v in row.items() if k.startswith("test_")}  # type: ignore[arg-type]
    p_stage, p_mean = float(row["p_stage"]), float(row["p_mean-lr"])  # type: ignore[arg-type]
    return {
        "probe always": t["probe"],
        "today's: stage if p < alpha": t["stage"] if p_stage < RULE_ALPHA else t["probe"],
        "stage always": t["stage"],
        "mean always": t["mean"],
        "mean-lr always": t["mean-lr"],
        "mean if p(mean-lr) < alpha": t["mean"] if p_mean < RULE_ALPHA else t["probe"],
        "mean if p(mean-lr) < 0.05": t["mean"] if p_mean < 0.05 else t["probe"],
    }


def table(lines: Path, fixed: Path) -> None:
    """Each rule against issue 20's two goals per set: the mean over seeds within 0.5 of
    the best fixed strategy (FIXED: a bench/results/dev-stage-probe-*.json of the same
    sets and seeds), and no seed more than 0.5 below the probe."""
    rows = [json.loads(line) for line in lines.read_text().splitlines() if line.strip()]
    others = json.loads(fixed.read_text())["sets"]
    names = list(rules(rows[0]))
    print(f"rules over {lines} (best fixed from {fixed}); mean test accuracy, goal 1, goal 2")
    met = {n: [0, 0] for n in names}
    sets = sorted({r["set"] for r in rows}, key=[r["set"] for r in rows].index)
    for name in sets:
        mine = [r for r in rows if r["set"] == name]
        fixed_means = {
            k: float(np.mean([others[name]["seeds"][str(r["seed"])][k] for r in mine]))
            for k in ("partial", "full", "lp-ft", "layer-decay", "gradual", "early-layers")
        }
        fixed_means["linear-probe"] = float(np.mean([r["test_probe"] for r in mine]))
        fixed_means["stage-probe"] = float(np.mean([r["test_stage"] for r in mine]))
        best = max(fixed_means, key=fixed_means.__getitem__)
        print(f"{name} ({len(mine)} seeds): best fixed {best} {fixed_means[best]:.3f}")
        for n in names:
            got = [rules(r)[n] for r in mine]
            g1 = float(np.mean(got)) >= fixed_means[best] - GOAL
            g2 = all(a >= float(r["test_probe"]) - GOAL for a, r in zip(got, mine, strict=True))
            met[n][0] += g1
            met[n][1] += g2
            seeds = " ".join(f"{a:.3f}" for a in got)
            print(
                f"  {n:28s} {np.mean(got):.3f} [{seeds}] goal1 {'met' if g1 else 'MISSED'}"
                f" goal2 {'met' if g2 else 'MISSED'}"
            )
    print("sets meeting goal 1 / goal 2:")
    for n in names:
        print(f"  {n:28s} {met[n][0]}/{len(sets)}  {met[n][1]}/{len(sets)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=list(DEV_SETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--home", help="ZOO_HOME for the runs (features are cached there)")
    ap.add_argument("--out", type=Path, help="append the JSON lines here too")
    ap.add_argument(
        "--table",
        nargs=2,
        type=Path,
        metavar=("LINES", "FIXED"),
        help="print the rules' table from a finished run's JSON lines instead",
    )
    args = ap.parse_args()
    if args.table:
        table(*args.table)
        return
    if args.home:
        os.environ["ZOO_HOME"] = args.home
    os.environ.setdefault("CI", "true")
    from _common import git_commit, versions

    print("$ python bench/combine_dev.py " + " ".join(sys.argv[1:]), flush=True)
    print(json.dumps({"commit": git_commit(), "versions": versions()}), flush=True)
    for name in args.sets:
        for seed in (int(s) for s in args.seeds.split(",")):
            line = json.dumps(one(name, seed))
            print(line, flush=True)
            if args.out:
                with args.out.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")


if __name__ == "__main__":
    main()
