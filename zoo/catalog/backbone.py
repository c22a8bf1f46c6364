"""The Backbone every provider builds: a torch module plus its ordered stages.

Providers return :class:`ModuleBackbone`; strategies see only ``stages()``, so freezing by
depth works the same for timm, torchvision, Hub and local models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zoo.contract.types import BackboneInfo

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["ModuleBackbone", "default_stages"]


def default_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Fallback split: the model's direct children in definition order (last = head).

    Providers should do better (timm feature info, torchvision families, HF encoder
    layers); this keeps an unknown architecture usable.
    """
    return [(name, child) for name, child in model.named_children()]


class ModuleBackbone:
    """A built model and its stages from input to head (the last stage is the head)."""

    def __init__(
        self,
        info: BackboneInfo,
        model: nn.Module,
        stages: Sequence[tuple[str, nn.Module]] | None = None,
        *,
        weights_sha256: str | None = None,
    ) -> None:
        self.info = info
        self.model = model
        self._stages = list(stages) if stages is not None else default_stages(model)
        self.weights_sha256 = weights_sha256  # of the file the weights were loaded from

    def stages(self) -> Sequence[tuple[str, nn.Module]]:
        return self._stages

    @property
    def head(self) -> nn.Module:
        return self._stages[-1][1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logits features; timm models have this natively."""
        model: Any = self.model
        if hasattr(model, "forward_features") and hasattr(model, "forward_head"):
            return model.forward_head(model.forward_features(x), pre_logits=True)
        raise NotImplementedError(
            f"{type(model).__name__} has no forward_features/forward_head; the provider "
            "must give its backbone a forward_features"
        )
