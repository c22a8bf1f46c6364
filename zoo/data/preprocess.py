"""Preprocessing from the backbone's own config, and the per-sample transforms.

Evaluation is the backbone's eval transform: resize (shorter side to size / crop_pct, with
the config's interpolation), centre crop to the input size, scale to [0, 1], normalise with
the config's mean and std — timm's and torchvision's convention. Training adds standard
augmentation on the same resized image: a random resized crop (25-100% of the area, aspect
3/4-4/3) and a horizontal flip.

Workers return uint8 crops; normalisation happens on the batch in the training process
(:meth:`Preprocessing.normalize`), which moves 4x fewer bytes between processes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from zoo.contract.types import BackboneInfo

__all__ = ["Preprocessing", "eval_crop", "train_crop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    input_size: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_pct: float = 0.875

    @classmethod
    def from_info(cls, info: BackboneInfo, image_size: int | None = None) -> Preprocessing:
        """The backbone's config; ``image_size`` overrides the square input size."""
        size = info.input_size or (3, 224, 224)
        if image_size is not None:
            if image_size < 16:
                raise UsageError(f"--image-size must be at least 16 pixels, got {image_size}")
            size = (size[0], image_size, image_size)
        return cls(
            input_size=(int(size[0]), int(size[1]), int(size[2])),
            mean=tuple(info.mean) if info.mean else IMAGENET_MEAN,
            std=tuple(info.std) if info.std else IMAGENET_STD,
            interpolation=info.interpolation or "bilinear",
            crop_pct=float(info.crop_pct) if info.crop_pct else 0.875,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            input_size=tuple(data["input_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=str(data["interpolation"]),
            crop_pct=float(data["crop_pct"]),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    @property
    def crop(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]

    @property
    def resize(self) -> int | tuple[int, int]:
        """What the eval transform resizes to before cropping (timm's rule)."""
        h, w = self.crop
        if h == w:
            return math.floor(h / self.crop_pct)
        return math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW batch -> float, scaled and normalised (channels-last kept)."""
        import torch

        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1) * 255.0
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1) * 255.0
        return (batch.float() - mean) / std


def _interp(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    return {
        "nearest": InterpolationMode.NEAREST,
        "bilinear": InterpolationMode.BILINEAR,
        "bicubic": InterpolationMode.BICUBIC,
    }.get(name, InterpolationMode.BILINEAR)


def eval_crop(img: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """Centre crop of an already resized uint8 CHW image (pads if smaller)."""
    from torchvision.transforms.v2 import functional as F

    return F.center_crop(img, list(pre.crop))


def train_crop(
    img: torch.Tensor,
    pre: Preprocessing,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random resized crop + horizontal flip of a uint8 CHW image (torch's RNG)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    _, height, width = img.shape
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    top, left, h, w = 0, 0, height, width
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(
            torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item()
        )
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= width and 0 < ch <= height:
            top = int(torch.randint(0, height - ch + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - cw + 1, (1,), generator=generator).item())
            h, w = ch, cw
            break
    else:  # fall back to the central crop of a valid aspect
        in_ratio = width / height
        if in_ratio < ratio[0]:
            w, h = width, round(width / ratio[0])
        elif in_ratio > ratio[1]:
            h, w = height, round(height * ratio[1])
        top, left = (height - h) // 2, (width - w) // 2
    out = F.resized_crop(
        img,
        top,
        left,
        h,
        w,
        list(pre.crop),
        interpolation=_interp(pre.interpolation),
        antialias=True,
    )
    if torch.rand(1, generator=generator).item() < 0.5:
        out = out.flip(-1)
    return out
