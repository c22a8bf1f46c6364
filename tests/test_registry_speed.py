"""Listing an SQLite store reads its tables directly (no MLflow import): the same
versions MLflow's own search returns, aliases and deletions included, and a lineage of
200 versions answered without importing mlflow (its time is measured in
bench/cli_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import registry

BASE = "timm:resnet50.a1_in1k"


def _make(name: str, versions: int, home: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        import cli_startup
    finally:
        sys.path.pop(0)
    cli_startup.make_registry(home, name, versions)


def test_direct_read_matches_mlflows_search(zoo_home: Path) -> None:
    from zoo.registry.store import client

    _make("speedy", 6, zoo_home)
    mc = client()
    mc.set_registered_model_alias("speedy", "champion", "3")
    mc.set_registered_model_alias("speedy", "staging", "3")
    mc.delete_model_version("speedy", "6")
    fast = registry.list_versions()
    slow = registry.list_versions(filter_string="name LIKE '%'")  # through MLflow
    assert [v.to_dict() for v in fast] == [v.to_dict() for v in slow]
    assert [v.version for v in fast] == [1, 2, 3, 4, 5]
    assert fast[2].aliases == ("champion", "staging")
    assert registry.list_versions("speedy", license="Apache-2.0") == fast
    assert registry.list_versions(license="mit") == []


@pytest.mark.slow
def test_lineage_of_200_versions_imports_no_mlflow(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _make("wide", 200, home)
    code = (
        "import sys\n"
        "from zoo.cli import run\n"
        "rc = run(['registry', 'lineage', 'wide', '--json'])\n"
        "heavy = [m for m in ('mlflow', 'torch') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    import os

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "ZOO_HOME": str(home)},
        timeout=120,
    )
    assert "HEAVY [] 0" in result.stderr, result.stderr
    doc = json.loads(result.stdout)

    def count(node: dict) -> int:
        return 1 + sum(count(c) for c in node["children"])

    assert len(doc["roots"]) == 1 and doc["roots"][0]["reference"] == BASE
    assert count(doc["roots"][0]) == 201  # the base and every version
    # how long it takes is bench/cli_startup.py's figure (docs/benchmarks.md), not a test's
