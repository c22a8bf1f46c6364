"""Map-style sample access for torch's DataLoader (decoding in its worker processes).

``ImageSamples`` is a plain class (DataLoader accepts any object with ``__len__`` and
``__getitem__``), so importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from zoo.contract.errors import DataError
from zoo.data.check import ImageDataset
from zoo.data.decode import ImageDecodeError, decode_image, resize_for_eval
from zoo.data.load import read_image
from zoo.data.preprocess import Preprocessing, eval_crop, train_crop

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ImageSamples", "load_resized"]


def load_resized(dataset: ImageDataset, index: int, pre: Preprocessing) -> torch.Tensor:
    """The image resized as the eval transform resizes it, uint8 CHW."""
    import numpy as np
    import torch

    cached = dataset.decoded_path(index)
    if cached is not None and cached.exists():
        arr = np.load(cached, allow_pickle=False)
    else:
        sample = dataset.samples[index]
        try:
            img = decode_image(read_image(dataset, index))
        except ImageDecodeError as exc:
            raise DataError(
                f"{sample.path} changed since it was checked and no longer decodes "
                f"({exc.reason}); run again to re-check the data"
            ) from None
        arr = np.asarray(resize_for_eval(img, pre.resize, pre.interpolation))
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


class ImageSamples:
    """Items ``(uint8 CHW crop, label, dataset index)`` for the given dataset indices."""

    def __init__(
        self,
        dataset: ImageDataset,
        indices: Sequence[int],
        pre: Preprocessing,
        *,
        train: bool,
    ) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.pre = pre
        self.train = train

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int, int]:
        index = self.indices[item]
        img = load_resized(self.dataset, index, self.pre)
        crop = train_crop(img, self.pre) if self.train else eval_crop(img, self.pre)
        return crop.contiguous(), self.dataset.samples[index].label, index
