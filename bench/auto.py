"""`--strategy auto` against the strategies it chooses from, on a test split it never saw.

    python bench/auto.py [--seeds 0 1 2] [--image-size 224] [--strategies auto ...]

The 8-category openclipart protocol (docs/finetune.md), EfficientNet-Lite0
(`effnet-lite:lite0`); for each seed a 20% validation split (it chooses the registered
epoch) and a 30%
test split that chooses nothing: `auto` decides from the training split alone. Every
run shares one zoo home, so the feature and prefix caches are computed once for all
seeds (they hold every image; the split only picks rows). Prints each seed's test
accuracy per strategy, the means, and the acceptance figures (issue: auto at least 3
points above the probe, and no worse than the best of partial / lp-ft minus 0.5).

Its figures are development figures (docs/protocol.md): openclipart is the set the
defaults and auto's rule were tuned on. The evaluation on sets nothing was tuned on is
bench/choose.py.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import setup

STRATEGIES = ["linear-probe", "partial", "lp-ft", "auto"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=STRATEGIES,
        choices=STRATEGIES,
        help="a subset, to re-measure one column (the others are deterministic per seed)",
    )
    args = parser.parse_args()
    from zoo.testdata import CATEGORIES

    ref, data = setup(None, CATEGORIES)  # type: ignore[arg-type]
    from zoo.engine import Recipe, finetune

    table: dict[str, dict[int, float]] = {}
    decisions = {}
    for seed in args.seeds:
        for strategy in args.strategies:
            t0 = time.perf_counter()
            recipe = Recipe(
                ref=ref,
                data=str(data),
                strategy=strategy,
                val_split=0.2,
                test_split=0.3,
                seed=seed,
                image_size=args.image_size,
            )
            result = finetune(recipe, register=False)
            acc = result.metrics["test_accuracy"]
            table.setdefault(strategy, {})[seed] = acc
            if strategy == "auto":
                settings = result.plan["settings"]
                decisions[seed] = f"{settings['decision']} {settings.get('unfreeze', '')}".strip()
            seconds = time.perf_counter() - t0
            line = f"seed {seed} {strategy:13s} test accuracy {acc:.4f} ({seconds:.0f} s)"
            print(line, flush=True)
    mean = {s: sum(v.values()) / len(v) for s, v in table.items()}
    print()
    print("test accuracy per seed:", json.dumps(table))
    print("auto decided:", json.dumps(decisions))
    print("means:", json.dumps({k: round(v, 4) for k, v in mean.items()}))
    print("reproduce: python " + shlex.join(["bench/auto.py", *sys.argv[1:]]))
    if set(STRATEGIES) - set(mean):
        return
    best = max(mean["partial"], mean["lp-ft"])
    gain = 100 * (mean["auto"] - mean["linear-probe"])
    print(f"auto - linear-probe: {gain:+.1f} points (goal >= +3)")
    print(f"auto - best of partial/lp-ft: {100 * (mean['auto'] - best):+.1f} points (goal >= -0.5)")


if __name__ == "__main__":
    main()
