"""A stratified, seeded train/validation split."""

from __future__ import annotations

from collections.abc import Sequence

from zoo.errors import UsageError

__all__ = ["stratified_split"]


def stratified_split(
    labels: Sequence[int], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, val): each class split on its own, so both sides keep its share.

    Each class puts ``round(n * val_fraction)`` images in validation, at least 1 and at
    most n - 1. The same labels, fraction and seed give the same split on any machine
    (NumPy's PCG64 generator).
    """
    import numpy as np

    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_class):
        members = np.array(by_class[label])
        order = members[rng.permutation(len(members))]
        n_val = min(max(round(len(members) * val_fraction), 1), len(members) - 1)
        val.extend(int(i) for i in order[:n_val])
        train.extend(int(i) for i in order[n_val:])
    return sorted(train), sorted(val)
