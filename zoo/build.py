"""Building a backbone from any provider reference: the one call strategies and the
engine use (``zoo.build_backbone("timm:resnet50.a1_in1k", num_classes=10)``)."""

from __future__ import annotations

from zoo.refs import Ref
from zoo.types import Backbone

__all__ = ["build_backbone"]


def build_backbone(
    ref: Ref | str, *, num_classes: int | None = None, pretrained: bool = True
) -> Backbone:
    """Resolve ``ref`` through the catalogue and let its provider build it: pretrained
    weights from the verified cache (pulled first when missing), a fresh head of
    ``num_classes`` outputs (None keeps the original head)."""
    from zoo.catalog import provider_for, resolve
    from zoo.errors import UsageError

    ref = resolve(ref)
    if ref.is_registered:
        raise UsageError(
            f"'{ref}' is a registered model: load it with zoo.registry.load_model('{ref}')"
        )
    return provider_for(ref).build(ref, num_classes=num_classes, pretrained=pretrained)
