"""CLI start-up: `zoo --help` wall time, and `zoo list` cold (index built) vs warm (index
read from $ZOO_HOME/catalog). Both run side by side in this script, alternating, so the
machine's load affects them alike.

    python bench/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k != "ZOO_LOAD_PLUGINS"}
    help_times, cold, warm, python_only = [], [], [], []
    for _ in range(opts.repeat):
        home = tempfile.mkdtemp(prefix="zoo-bench-home-")
        env = {**base, "ZOO_HOME": home}
        try:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            python_only.append(time.perf_counter() - start)
            help_times.append(timed(["--help"], env))
            cold.append(timed(["list", "resnet50*"], env))  # builds every provider's index
            warm.append(timed(["list", "resnet50*"], env))  # reads the cached index
        finally:
            shutil.rmtree(home, ignore_errors=True)
    med = statistics.median
    print(
        f"python -c pass          {med(python_only) * 1000:7.0f} ms (interpreter start, for scale)"
    )
    print(f"zoo --help              {med(help_times) * 1000:7.0f} ms")
    print(
        f"zoo list 'resnet50*'    cold {med(cold) * 1000:7.0f} ms   warm {med(warm) * 1000:7.0f} ms"
        f"   cold/warm = {med(cold) / med(warm):.1f}x"
    )
    print(
        f"(median of {opts.repeat}; reproduce: python bench/cli_startup.py --repeat {opts.repeat})"
    )


if __name__ == "__main__":
    main()
