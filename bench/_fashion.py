"""The images of the `fashion` set (bench/datasets.py): a seeded, class-stratified
subsample of Fashion-MNIST's training idx files, written as 28x28 grayscale PNGs."""

from __future__ import annotations

import gzip
from pathlib import Path


def read_idx(path: Path) -> object:
    import numpy as np

    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_subsample(
    folder: Path, tmp: Path, classes: tuple[str, ...], per_class: int, seed: int
) -> dict[str, int]:
    """PER_CLASS images of each of CLASSES (the idx labels 0, 1, ... in order) as
    TMP/class/<index in the idx file>.png, drawn in a seeded permutation of the class's
    images; a byte-identical image is kept once. Returns the count per class."""
    import numpy as np
    from PIL import Image

    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    seen: set[bytes] = set()
    for label, name in enumerate(classes):
        (tmp / name).mkdir()
        members = np.flatnonzero(labels == label)
        counts[name] = 0
        for index in rng.permutation(members):
            pixels = images[index]  # type: ignore[index]
            if pixels.tobytes() in seen:
                continue  # a byte-identical image: kept once
            seen.add(pixels.tobytes())
            Image.fromarray(pixels, mode="L").save(tmp / name / f"{int(index):05d}.png")
            counts[name] += 1
            if counts[name] == per_class:
                break
    return counts
