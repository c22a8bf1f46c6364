"""auto's cross-validation with BLAS on one thread (zoo.engine.evidence.small_fit_threads)
vs the thread pools as the machine sets them, side by side on the same features.

The features are the README story's (8 openclipart classes, 30 images each, Lite0, every
stage pooled: the `stage-probe` candidate, the widest auto scores), made once by
`zoo finetune effnet-lite:lite0 DIR --strategy auto --dry-run` in a fresh home. Then the
same 5-fold x 10 CV (zoo.engine.evidence.cv_scores' folds and head) runs alternately with
and without the one-thread limit; CPU seconds (this process, every thread) and wall
seconds of each, and whether the 50 fold accuracies are the same.

    python bench/cv_threads.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    from safetensors.numpy import load_file
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_info

    from zoo.engine.evidence import AUTO_FOLDS, AUTO_REPEATS, cv_head, small_fit_threads
    from zoo.testdata import layout_categories, require_openclipart

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = layout_categories(root / "clipart", root=require_openclipart(), per_class=30)
        env = dict(os.environ, ZOO_HOME=str(root / "home"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "zoo",
                "finetune",
                "effnet-lite:lite0",
                str(data),
                "--strategy",
                "auto",
                "--dry-run",
            ],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        parts = [load_file(p) for p in sorted(glob.glob(str(root / "home/stage-features/*")))]
    x = np.concatenate([p["features"] for p in parts], axis=1)
    y = parts[0]["labels"].astype(int)
    cv = RepeatedStratifiedKFold(n_splits=AUTO_FOLDS, n_repeats=AUTO_REPEATS, random_state=0)
    pools = ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info())

    def run(limited: bool) -> tuple[float, float, list[float]]:
        wall, cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if limited:
                with small_fit_threads(*x.shape):
                    scores = cross_val_score(cv_head(), x, y, cv=cv, scoring="accuracy")
            else:
                scores = cross_val_score(cv_head(), x, y, cv=cv, scoring="accuracy")
        return time.process_time() - cpu, time.perf_counter() - wall, [float(s) for s in scores]

    one: list[tuple[float, float]] = []
    pool: list[tuple[float, float]] = []
    same = True
    for _ in range(args.repeat):
        c1, w1, s1 = run(True)
        c2, w2, s2 = run(False)
        one.append((c1, w1))
        pool.append((c2, w2))
        same = same and s1 == s2
    cpu1, wall1 = (statistics.median(v) for v in zip(*one, strict=True))
    cpu2, wall2 = (statistics.median(v) for v in zip(*pool, strict=True))
    print(f"features {x.shape[0]} x {x.shape[1]}; thread pools here: {pools}")
    cv_name = f"{AUTO_FOLDS}-fold CV x{AUTO_REPEATS}"
    print(f"{cv_name}, one BLAS thread : {cpu1:6.2f} CPU-s {wall1:6.2f} s")
    print(f"{cv_name}, default pools   : {cpu2:6.2f} CPU-s {wall2:6.2f} s")
    print(f"one thread / default: CPU {cpu1 / cpu2:.3f}x, wall {wall1 / wall2:.3f}x")
    print(f"the 50 fold accuracies identical in every repeat: {same}")
    command = f"python bench/cv_threads.py --repeat {args.repeat}"
    print(f"(median of {args.repeat}; reproduce: {command})")


if __name__ == "__main__":
    main()
