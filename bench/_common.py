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
    from zoo.plugins import get_plugin_manager
    from zoo.testdata import fetch, layout_categories

    if "effnet-lite" not in get_plugin_manager().providers():
        sys.exit("install the provider first: python -m pip install -e plugins/zoo-effnet-lite")
    fetch(quiet=True)
    data = layout_categories(home / "data", categories, per_class=per_class)
    return "effnet-lite:lite0", data


