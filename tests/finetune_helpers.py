"""Small real datasets and model builders shared by the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = [(220, 40, 40), (40, 40, 220), (40, 200, 40), (200, 200, 40)]


def make_images(
    root: Path,
    classes: int = 2,
    per_class: int = 10,
    size: tuple[int, int] = (40, 48),
    seed: int = 0,
) -> Path:
    """Class-per-folder PNGs: noisy images tinted per class (learnable in a few steps)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(0, 90, (size[0], size[1], 3))
            pixels = (noise + np.array(COLOURS[c]) * 0.6).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
    return root


def stage_of(backbone, key: str) -> int:
    """Index of the stage that holds state-dict entry ``key`` of backbone.model."""
    model = backbone.model
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    target = tensors[key]
    for i, (_, container) in enumerate(backbone.stages()):
        for t in [*container.parameters(), *container.buffers()]:
            if t is target:
                return i
    raise KeyError(key)


def module_home_env(mp: Any, root: Path) -> None:
    """A module-scoped fixture's own zoo home under ``root`` (``mp``: a MonkeyPatch), offline
    as conftest's per-test home is."""
    mp.setenv("ZOO_HOME", str(root / "home"))
    mp.setenv("CI", "true")
    mp.setenv("HF_HUB_CACHE", str(root / "hf-cache"))
    mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: no real hub
