"""The class rule shared by the `emoji`, `schematics`, `art4apps` and `chess` sets
(bench/datasets.py): a minimum per class, no image under two classes, no byte-identical
copies, and a seeded cap per class."""

from __future__ import annotations

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
