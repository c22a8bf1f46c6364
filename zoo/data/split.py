"""A stratified, seeded split into training, validation and (optionally) test images."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from zoo.contract.errors import DataError, UsageError

__all__ = ["Split", "split_dataset", "stratified_split"]


@dataclass(frozen=True)
class Split:
    """Indices into a dataset's samples. ``test`` is held out from every choice the run
    makes (the best epoch, a strategy's decisions); it is scored once, at the end."""

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...] = ()

    def digest(self, sha256s: Sequence[str]) -> str:
        """Which files went where: the same files split the same way give the same digest."""
        h = hashlib.sha256()
        for part, indices in (("train", self.train), ("val", self.val), ("test", self.test)):
            h.update(part.encode())
            for sha in sorted(sha256s[i] for i in indices):
                h.update(sha.encode())
        return "sha256:" + h.hexdigest()


def split_dataset(
    labels: Sequence[int],
    val_fraction: float,
    seed: int,
    test_fraction: float = 0.0,
    classes: Sequence[str] | None = None,
) -> Split:
    """Each class split on its own, so every part keeps its share of each class.

    A class puts ``round(n * test_fraction)`` images in test (at least 1 when asked for),
    then ``round(n * val_fraction)`` in validation (at least 1 when asked for; none with
    ``val_fraction`` 0), and keeps at least one for training (test gives way first, then
    validation, in a class too small for all three rounded shares). The same labels, fractions
    and seed give the same split on any machine (NumPy's PCG64 generator); with no test
    set it is :func:`stratified_split`.
    """
    import numpy as np

    if not 0.0 <= val_fraction < 1.0:
        raise UsageError(f"--val-split must be in [0, 1), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1.0:
        raise UsageError(
            f"--test-split must be in [0, 1) and leave images for training "
            f"(--val-split {val_fraction} + --test-split {test_fraction} must be below 1)"
        )
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    needed = 1 + (test_fraction > 0) + (val_fraction > 0)
    for label in sorted(by_class):
        members = np.array(by_class[label])
        n = len(members)
        if n < needed:
            name = classes[label] if classes else str(label)
            wanted = (
                ["training"] + ["validation"] * (val_fraction > 0) + ["test"] * (test_fraction > 0)
            )
            fix = "drop --test-split" if test_fraction > 0 else "set --val-split 0"
            raise DataError(
                f"class {name} has {n} image(s); a split into {', '.join(wanted)} needs at "
                f"least {needed} per class: add images or {fix}"
            )
        order = members[rng.permutation(n)]
        # never so many that validation (when asked for) or training has none of the class
        n_test = min(max(round(n * test_fraction), 1), n + 1 - needed) if test_fraction > 0 else 0
        n_val = min(max(round(n * val_fraction), 1), n - n_test - 1) if val_fraction > 0 else 0
        parts["test"].extend(int(i) for i in order[:n_test])
        parts["val"].extend(int(i) for i in order[n_test : n_test + n_val])
        parts["train"].extend(int(i) for i in order[n_test + n_val :])
    return Split(*(tuple(sorted(parts[k])) for k in ("train", "val", "test")))


def stratified_split(
    labels: Sequence[int], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, val) of :func:`split_dataset` without a test set."""
    split = split_dataset(labels, val_fraction, seed)
    return list(split.train), list(split.val)
