"""Linear probe with the feature cache vs. the same head trained by running the frozen
backbone every epoch (10 epochs), through zoo's engine, measured side by side.

    python bench/linear_probe_cache.py [--per-class 40] [--epochs 10]

Both runs use the same real backbone (EfficientNet-Lite0, default 224 px input), the same
openclipart images (decoded once beforehand, so neither pays for decoding), the same head,
optimizer and schedule. The cached run pays one forward pass over the data plus cheap
passes over the features; the other pays a forward pass every epoch. The limit of the
ratio is about the number of epochs (one forward pass instead of ten).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    ref, data = setup(args.per_class, ("animals", "food", "plants", "tools"))
    from zoo.catalog.index import describe
    from zoo.data import Preprocessing, load_dataset
    from zoo.engine import Recipe, finetune

    pre = Preprocessing.from_info(describe(ref))
    load_dataset(data, resize=pre.resize, interpolation=pre.interpolation)  # decode once

    common = dict(ref=ref, data=str(data), epochs=args.epochs, lr=1e-3, val_split=0.25)
    t0 = time.perf_counter()
    cached = finetune(Recipe(strategy="linear-probe", **common), register=False)
    t_cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    every = finetune(
        Recipe(strategy="partial", unfreeze=0, cache_frozen=False, **common), register=False
    )
    t_every = time.perf_counter() - t0
    n = len(cached.history) and int(cached.metrics["num_train"] + cached.metrics["num_val"])
    print()
    print(f"images: {n} ({args.per_class} per class, 4 classes), epochs: {args.epochs}")
    print(
        f"feature cache (extract once, head on cached features): {t_cached:8.1f} s"
        f"  val acc {cached.metrics['val_accuracy']:.3f}"
    )
    print(
        f"frozen backbone run every epoch:                     {t_every:8.1f} s"
        f"  val acc {every.metrics['val_accuracy']:.3f}"
    )
    print(
        f"ratio (every epoch / cached): {t_every / t_cached:.2f}x  "
        f"(limit about {args.epochs}x: one forward pass instead of {args.epochs})"
    )
    print("reproduce: python " + shlex.join(["bench/linear_probe_cache.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
