"""zoo's pytest plugin (entry point ``pytest11``): fixtures for plugin authors' tests.

Loaded by every pytest run where transfer-zoo is installed, so it imports nothing heavy
and defines no autouse fixture: a fixture does something only in tests that ask for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def zoo_tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty ZOO_HOME and Hugging Face cache for one test, offline, plugins reloaded."""
    from zoo.contract.plugins import reset_plugin_manager

    home = tmp_path / "zoo-home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)
    reset_plugin_manager()
    yield home
    reset_plugin_manager()


@pytest.fixture
def tiny_backbone() -> Any:
    """A fresh 3-class zoo.Backbone (stem, block, head) on 3x32x32 inputs."""
    from zoo.testing import tiny_backbone as build

    return build(num_classes=3)


@pytest.fixture
def tiny_image_folder(tmp_path: Path) -> Path:
    """CLASS/IMAGE.png: two classes of four 32x32 images each."""
    from zoo.testing import make_image_folder

    return make_image_folder(tmp_path / "images")
