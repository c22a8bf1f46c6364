"""The class rule shared by the `emoji`, `schematics`, `art4apps`, `chess` and `symbola`
sets (bench/datasets.py): a minimum per class, no image under two classes, no
byte-identical copies, and a seeded cap per class; and the near-copy test across classes
of `art4apps` and `symbola`."""

from __future__ import annotations

import io
from pathlib import Path


def capped(
    found: dict[str, dict[str, bytes]], minimum: int, per_class: int, seed: int
) -> dict[str, dict[str, bytes]]:
    """Classes of FOUND (class -> file name -> PNG bytes) with at least MINIMUM distinct
    images, each capped at PER_CLASS by a seeded sample of its files in name order. An
    image whose bytes appear under two classes is left out of both; a byte-identical
    copy within a class is kept once (the first by file name)."""
    import numpy as np

    owners: dict[bytes, set[str]] = {}
    for name, files in found.items():
        for image in files.values():
            owners.setdefault(image, set()).add(name)
    rng = np.random.default_rng(seed)
    kept: dict[str, dict[str, bytes]] = {}
    for name in sorted(found):
        seen: set[bytes] = set()
        distinct: dict[str, bytes] = {}
        for file, image in sorted(found[name].items()):
            if len(owners[image]) == 1 and image not in seen:
                seen.add(image)
                distinct[file] = image
        if len(distinct) < minimum:
            continue
        names = sorted(distinct)
        if len(names) > per_class:
            names = [names[i] for i in sorted(rng.choice(len(names), per_class, replace=False))]
        kept[name] = {file: distinct[file] for file in names}
    return kept


def write(tmp: Path, kept: dict[str, dict[str, bytes]]) -> dict[str, int]:
    """KEPT's images as TMP/class/file; returns the count per class."""
    for label, files in kept.items():
        (tmp / label).mkdir()
        for file, image in files.items():
            (tmp / label / file).write_bytes(image)
    return {label: len(files) for label, files in kept.items()}


def near_copies(
    found: dict[str, dict[str, bytes]], thumb: int, threshold: float
) -> set[tuple[str, str]]:
    """(class, file) of every image of FOUND closer than THRESHOLD grey levels to an image
    of another class, or to its mirror image: mean absolute difference of the grayscale
    images reduced (area-averaged) to THUMB x THUMB (an image of that size is compared as
    it is). Such a pair is one picture under two labels, for the caller to leave out."""
    import numpy as np
    from PIL import Image

    keys = [(label, file) for label in sorted(found) for file in sorted(found[label])]
    thumbs = np.stack(
        [
            np.asarray(
                Image.open(io.BytesIO(found[label][file]))
                .convert("L")
                .resize((thumb, thumb), Image.Resampling.BOX),
                dtype=np.float32,
            ).ravel()
            for label, file in keys
        ]
    )
    mirrored = thumbs.reshape(-1, thumb, thumb)[:, :, ::-1].reshape(len(keys), -1)
    labels = np.array([label for label, _ in keys])
    out: set[tuple[str, str]] = set()
    for i, key in enumerate(keys):
        apart = np.abs(thumbs[i + 1 :] - thumbs[i]).mean(axis=1)
        apart = np.minimum(apart, np.abs(thumbs[i + 1 :] - mirrored[i]).mean(axis=1))
        near = apart < threshold
        for j in np.flatnonzero(near & (labels[i + 1 :] != labels[i])):
            out.update((key, keys[i + 1 + int(j)]))
    return out
