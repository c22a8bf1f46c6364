"""Shared set-up for the fine-tuning benchmarks: real images and the real backbone."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def setup(per_class: int | None, categories: tuple[str, ...]) -> tuple[str, Path]:
    """A fresh ZOO_HOME and a subset of openclipart laid out as class folders; the
    backbone is EfficientNet-Lite0's ImageNet weights through the zoo-effnet-lite
    provider (plugins/zoo-effnet-lite). Returns (reference, data folder)."""
    os.environ.setdefault("CI", "true")  # plain progress lines
    home = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    os.environ["ZOO_HOME"] = str(home / "home")
    from zoo.contract.plugins import get_plugin_manager
    from zoo.testdata import fetch, layout_categories

    if "effnet-lite" not in get_plugin_manager().providers():
        sys.exit("install the provider first: python -m pip install -e plugins/zoo-effnet-lite")
    fetch(quiet=True)
    data = layout_categories(home / "data", categories, per_class=per_class)
    return "effnet-lite:lite0", data


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b between two score lists (scipy; ties counted as ties)."""
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def paired_interval(differences: list[float]) -> tuple[float, float | None]:
    """Mean of per-seed paired differences and the half-width of its 95% interval,
    t(0.975, n-1) * sd / sqrt(n); None for a single seed (no interval)."""
    from statistics import mean, stdev

    from scipy.stats import t

    m = mean(differences)
    n = len(differences)
    if n < 2:
        return m, None
    return m, float(t.ppf(0.975, n - 1)) * stdev(differences) / n**0.5


def git_commit(path: Path | None = None) -> tuple[str, bool]:
    """The commit of the tree holding the benchmarks, and whether it has uncommitted
    changes or files git does not ignore (a figure from such a tree names no commit it
    ran on)."""
    import subprocess

    where = str(path or Path(__file__).resolve().parent)
    head = subprocess.run(
        ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    status = subprocess.run(
        ["git", "-C", where, "status", "--porcelain"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head or "unknown", bool(status)


def versions() -> dict[str, str]:
    """The versions of what a figure depends on beyond zoo's commit: the same recipe's
    features, and so its figures, move with the torch build (docs/benchmarks.md,
    "Choosing: combining instead of choosing")."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for dist in ("torch", "torchvision", "timm", "scikit-learn", "numpy", "pillow"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "not installed"
    return found
