"""What an export is verified on (its check set): real images when there are any
(``--calibration DATA``, else the training data recorded in the version's lineage when
it still exists), split as training split them, the validation images for the gates and
a class-stratified sample of the training images for int8 calibration; otherwise seeded
random inputs (then only the allclose gate holds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.contract.errors import UsageError
from zoo.contract.types import CheckSet

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from zoo.data.check import ImageDataset
    from zoo.data.preprocess import Preprocessing
    from zoo.deploy.source import Source

__all__ = ["CALIBRATION_IMAGES", "CHECK_IMAGES", "RANDOM_IMAGES", "build_check_set"]

CHECK_IMAGES = 200  # real validation images the gates run on (at most)
CALIBRATION_IMAGES = 128  # training images int8 is calibrated on (at most), every class its share
RANDOM_IMAGES = 16  # random inputs when there are no real images: batches 1, 2, 7 and 6


def _stack(dataset: ImageDataset, indices: Sequence[int], prep: Preprocessing) -> torch.Tensor:
    """The images as the export's runtime gets them: files decoded in parallel, a data
    source's images (tar shards, Parquet) from the bytes it reads again."""
    import numpy as np
    import torch

    from zoo.data import read_image
    from zoo.deploy.images import decode_images, load_image

    if dataset.kind not in ("folder", "csv"):
        arrays = [load_image(read_image(dataset, i), prep) for i in indices]
        return torch.from_numpy(np.stack(arrays))
    paths = [Path(dataset.samples[i].path) for i in indices]
    arrays = []
    for path, array, error in decode_images(paths, prep):
        if array is None:
            raise UsageError(f"{path}: {error}")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays))


def _no_step(_detail: str) -> None:
    pass


def build_check_set(
    source: Source,
    data: Path | None,
    *,
    say: Callable[[str], None],
    step: Callable[[str], None] = _no_step,
) -> CheckSet:
    """Real images split as training split them, or seeded random inputs; ``step`` is
    told what it reads."""
    import torch

    root = data
    if root is None and source.data_root and Path(source.data_root).is_dir():
        root = Path(source.data_root)
        say(f"checking on the training data recorded for {source.reference}: {root}")
    if root is None:
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(RANDOM_IMAGES, *source.preprocessing.input_size, generator=gen)
        return CheckSet(images=images, real=False)

    from zoo.data import load_dataset, split_dataset

    prep = source.preprocessing
    step(f"reading the images in {root}")
    dataset = load_dataset(root, resize=prep.resize, interpolation=prep.interpolation)
    # The engine's own split of the same files (it follows their content, not their
    # order): calibration from the training part, the gates on the validation part, and
    # the test part, if any, left for the figure it was held out for.
    val_split, seed, test_split, digest = source.split
    split = split_dataset(dataset.labels, val_split, seed, test_split, dataset.classes)
    if digest and data is None and split.digest([s.sha256 for s in dataset.samples]) != digest:
        say(
            f"the images in {root} changed since {source.reference} was trained: its "
            "validation split is not the one that chose its epoch"
        )
    train, val = list(split.train), list(split.val)
    index = {name: i for i, name in enumerate(source.class_names)}
    if source.class_names:
        labels = [index.get(dataset.classes[s.label], -1) for s in dataset.samples]
    else:
        labels = [-1] * len(dataset.samples)
    total = len(val)
    val = _spread(val, CHECK_IMAGES)
    train = _stratified(train, [s.label for s in dataset.samples], CALIBRATION_IMAGES)
    some = f"{len(val)} of the {total}" if len(val) < total else f"all {total}"
    say(f"check set: {some} validation images and {len(train)} calibration images from {root}")
    step(f"decoding {len(val)} validation and {len(train)} calibration images")
    validation = _stack(dataset, val, prep)
    return CheckSet(
        images=validation,
        real=True,
        labels=tuple(labels[i] for i in val),
        calibration=_stack(dataset, train, prep),
        validation=validation,
        validation_labels=tuple(labels[i] for i in val),
    )


def _stratified(indices: Sequence[int], labels: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` indices, taken from the classes in turn (each class's own spread
    evenly), so that any leading part of the list covers every class about equally."""
    by_class: dict[int, list[int]] = {}
    for i in indices:
        by_class.setdefault(labels[i], []).append(i)
    if len(indices) <= limit:
        share = {c: len(v) for c, v in by_class.items()}
    else:
        share = dict.fromkeys(by_class, 0)
        left = limit
        while left:  # one more per class in turn, while the class has images left
            grew = False
            for c in sorted(by_class):
                if left and share[c] < len(by_class[c]):
                    share[c] += 1
                    left -= 1
                    grew = True
            if not grew:
                break
    picked = {c: _spread(v, share[c]) for c, v in by_class.items()}
    out: list[int] = []
    for rank in range(max(share.values(), default=0)):
        out += [picked[c][rank] for c in sorted(picked) if rank < len(picked[c])]
    return out


def _spread(indices: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` indices, evenly spread (so every class keeps a share)."""
    if len(indices) <= limit:
        return list(indices)
    step = len(indices) / limit
    return [indices[int(i * step)] for i in range(limit)]
