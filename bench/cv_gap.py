"""Does auto's cross-validation score the model that gets registered? A development
analysis (docs/protocol.md, "Changes", 2026-12-06, second entry).

    ZOO_HOME=<the evaluation run's home> python bench/cv_gap.py SET SEEDS RESULTS.json

For one set of a finished `bench/choose.py` run (its results JSON, its zoo home, so the
features are cached) and each seed: the mean of auto's repeated CV for the probe's
features and for every body stage's (zoo/engine/evidence.py: the same folds, the same
standardised L2 logistic regression), that regression fitted on the seed's training
split and scored on its test split, and the run's registered `linear-probe` and
`stage-probe` test figures. One JSON line per seed. Those test splits belong to spent
evaluation sets: these are development figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from zoo.engine.evidence import cv_head, cv_scores
from zoo.engine.features import head_features, stage_features
from zoo.engine.recipe import Recipe
from zoo.engine.setup import prepare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set")
    ap.add_argument("seeds", help="comma-separated, e.g. 0,1,2")
    ap.add_argument("results", help="bench/results/choose-COMMIT.json of the run")
    args = ap.parse_args()
    run = json.loads(Path(args.results).read_text())["sets"][args.set]
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.time()
        recipe = Recipe(
            ref="effnet-lite:lite0",
            data=run["layout"]["path"],
            val_split=0.2,
            test_split=0.3,
            seed=seed,
        )
        state = prepare(recipe, register=False, trials=False, leakage=False)
        train, test = list(state.split.train), list(state.split.test)
        head, y = head_features(state)
        stages = [stage_features(state, name)[0].float().numpy() for name in state.names[:-1]]
        row: dict[str, object] = {"set": args.set, "seed": seed}
        for label, x in (("probe", head.float().numpy()), ("stage", np.hstack(stages))):
            scores, _k = cv_scores(x[train], y.numpy()[train], seed)
            row[f"cv_{label}"] = float(np.mean(scores))
            fitted = cv_head().fit(x[train], y.numpy()[train])
            row[f"lr_test_{label}"] = float((fitted.predict(x[test]) == y.numpy()[test]).mean())
        for label, strategy in (("probe", "linear-probe"), ("stage", "stage-probe")):
            row[f"zoo_test_{label}"] = run["runs"][strategy][str(seed)]["test_accuracy"]
        row["n_train"], row["n_test"] = len(train), len(test)
        row["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
