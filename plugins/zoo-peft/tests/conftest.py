"""zoo-peft's test fixtures: a home of its own per test, offline, and a tiny dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # no hub
    from zoo.contract.plugins import reset_plugin_manager

    reset_plugin_manager()
    return tmp_path / "home"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for c, colour in enumerate(((220, 40, 40), (40, 40, 220))):
        folder = tmp_path / "data" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = (rng.integers(0, 90, (36, 36, 3)) + np.array(colour) * 0.6).clip(0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "data"
