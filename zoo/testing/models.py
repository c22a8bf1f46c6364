"""The tiny backbone of zoo.testing (imports torch: only imported when one is built)."""

from __future__ import annotations

import torch
from torch import nn

from zoo.catalog.backbone import ModuleBackbone
from zoo.contract.types import BackboneInfo


class TinyNet(nn.Module):
    """stem (conv) -> block (conv) -> pooled features -> head (linear)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.block(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class TinyBackbone(ModuleBackbone):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)  # type: ignore[operator]


def tiny_backbone(num_classes: int = 3, *, seed: int = 0) -> ModuleBackbone:
    torch.manual_seed(seed)
    model = TinyNet(num_classes)
    info = BackboneInfo(
        reference="tiny:net",
        provider="tiny",
        architecture="net",
        license="mit",
        pretrained=False,
        input_size=(3, 32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bilinear",
        crop_pct=1.0,
        num_classes=num_classes,
        num_params=sum(p.numel() for p in model.parameters()),
        feature_dim=16,
    )
    stages = [("stem", model.stem), ("block", model.block), ("head", model.head)]
    return TinyBackbone(info, model, stages)
