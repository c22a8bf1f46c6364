"""The first command in a new zoo home: `zoo registry list` on an empty home, whose store
is created from the migrated empty schema (zoo.registry.store_template) vs migrated in
place (the cache folder made unwritable), alternated in one run so load affects both
alike. Each run is a whole process; the template itself is made before the first run.

    python bench/new_store.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(home: Path, cache: Path) -> float:
    env = dict(os.environ, ZOO_HOME=str(home), XDG_CACHE_HOME=str(cache), CI="true")
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "zoo", "registry", "list", "--json"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache, blocked = root / "cache", root / "blocked"
        blocked.write_text("a file where the cache folder would be: no template\n")
        timed(root / "warm-up", cache)  # makes the template, imports compiled
        copied, migrated = [], []
        for i in range(args.repeat):
            copied.append(timed(root / f"copied-{i}", cache))
            migrated.append(timed(root / f"migrated-{i}", blocked))
    c, m = statistics.median(copied), statistics.median(migrated)
    print(f"command: python bench/new_store.py --repeat {args.repeat}")
    print(f"zoo registry list on a new home, median of {args.repeat} (alternated):")
    print(f"  store copied from the empty schema: {c:.2f} s")
    print(f"  store migrated in place:            {m:.2f} s")
    print(f"  copied / migrated: {c / m:.2f}x (saves {m - c:.2f} s)")


if __name__ == "__main__":
    main()
