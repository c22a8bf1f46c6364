"""CLI start-up, measured side by side in one run (alternating, so the machine's load
affects each alike):

* `zoo --help`, and `zoo list` cold (index built) vs warm (index read from
  $ZOO_HOME/catalog), and the warm list as a multiple of `zoo --help`;
* `zoo info` cold (asks timm) vs warm (answered from what the catalogue kept);
* `zoo registry lineage` of a model with --versions registered versions (200), on the
  embedded SQLite store.

    python bench/cli_startup.py [--repeat 5] [--versions 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = "timm:resnet50.a1_in1k"


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


def make_registry(home: Path, name: str, versions: int) -> None:
    """``versions`` versions of ``name`` as zoo records them (lineage tags; version N's
    parent is version N // 2, version 1's the base), created through MLflow's client
    without training or uploading anything: lineage reads tags only."""
    os.environ["ZOO_HOME"] = str(home)
    from zoo.registry.store import client

    mc = client()
    mc.create_registered_model(name, tags={"zoo.kind": "zoo-model"})
    source = (home / "artifacts-placeholder").as_uri()
    chains: dict[int, list[str]] = {}
    for n in range(1, versions + 1):
        parent = BASE if n == 1 else f"models:/{name}/{n // 2}"
        chain = [BASE] if n == 1 else [*chains[n // 2], parent]
        chains[n] = chain
        record = {
            "format": 1,
            "name": name,
            "relation": "finetune",
            "parent": {"reference": parent, "kind": "registered" if n > 1 else "provider"},
            "base": {"reference": BASE, "license": "apache-2.0"},
            "chain": chain,
            "strategy": {"name": "linear-probe", "settings": {"epochs": 1}},
            "license": {"id": "apache-2.0", "parent": "apache-2.0", "inherited": True},
        }
        tags = {
            "zoo.lineage": json.dumps(record),
            "zoo.parent": parent,
            "zoo.base": BASE,
            "zoo.relation": "finetune",
            "zoo.license": "apache-2.0",
            "zoo.strategy": "linear-probe",
            "zoo.format": "pytorch",
        }
        mc.create_model_version(name, source, tags=tags, await_creation_for=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--versions", type=int, default=200)
    opts = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if k not in {"ZOO_LOAD_PLUGINS", "CI"}}
    base.pop("MLFLOW_TRACKING_URI", None)
    times: dict[str, list[float]] = {
        k: [] for k in ("python", "help", "cold", "warm", "info_cold", "info_warm", "lineage")
    }
    registry_home = Path(tempfile.mkdtemp(prefix="zoo-bench-registry-"))
    make_registry(registry_home, "bench-model", opts.versions)
    try:
        for _ in range(opts.repeat):
            home = tempfile.mkdtemp(prefix="zoo-bench-home-")
            env = {**base, "ZOO_HOME": home}
            try:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], check=True)
                times["python"].append(time.perf_counter() - start)
                times["help"].append(timed(["--help"], env))
                times["cold"].append(timed(["list", "resnet50*"], env))  # builds every index
                times["warm"].append(timed(["list", "resnet50*"], env))  # reads the cache
                times["info_cold"].append(timed(["info", BASE], env))  # asks timm once
                times["info_warm"].append(timed(["info", BASE], env))  # from the catalogue
                lineage_env = {**base, "ZOO_HOME": str(registry_home)}
                times["lineage"].append(timed(["registry", "lineage", "bench-model"], lineage_env))
            finally:
                shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(registry_home, ignore_errors=True)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"python -c pass          {med['python']:7.0f} ms (interpreter start, for scale)")
    print(f"zoo --help              {med['help']:7.0f} ms")
    print(
        f"zoo list 'resnet50*'    cold {med['cold']:7.0f} ms   warm {med['warm']:7.0f} ms"
        f"   cold/warm = {med['cold'] / med['warm']:.1f}x"
        f"   warm/--help = {med['warm'] / med['help']:.2f}x"
    )
    print(f"zoo info {BASE}   cold {med['info_cold']:7.0f} ms   warm {med['info_warm']:7.0f} ms")
    print(f"zoo registry lineage ({opts.versions} versions)   {med['lineage']:7.0f} ms")
    print(
        f"(median of {opts.repeat}; reproduce: python bench/cli_startup.py --repeat "
        f"{opts.repeat} --versions {opts.versions})"
    )


if __name__ == "__main__":
    main()
