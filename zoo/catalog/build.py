"""Building a backbone from any provider reference: the one call strategies and the
engine use (``zoo.build_backbone("timm:resnet50.a1_in1k", num_classes=10)``); and pulling
any reference's weights through its provider (`zoo pull`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from zoo.contract.protocols import Backbone, Progress
from zoo.contract.refs import Ref
from zoo.contract.types import PulledWeights

if TYPE_CHECKING:  # pragma: no cover
    from zoo.weights.checkpoints import LoadedWeights

__all__ = ["build_backbone", "loaded_sha256", "pull"]


def build_backbone(
    ref: Ref | str, *, num_classes: int | None = None, pretrained: bool = True
) -> Backbone:
    """Resolve ``ref`` through the catalogue and let its provider build it: pretrained
    weights from the verified cache (pulled first when missing), a fresh head of
    ``num_classes`` outputs (None keeps the original head).

    The backbone's ``weights_sha256`` is that of the bytes its weights were loaded from,
    as the load path (:func:`zoo.weights.checkpoints.load_weights`) hashed or vouched for them,
    whatever the provider's record says.
    """
    from zoo.catalog.index import provider_for, resolve
    from zoo.contract.errors import UsageError
    from zoo.weights.checkpoints import recording_loads

    ref = resolve(ref)
    if ref.is_registered:
        raise UsageError(
            f"'{ref}' is a registered model: load it with zoo.registry.load_model('{ref}')"
        )
    with recording_loads() as loaded:
        backbone = provider_for(ref).build(ref, num_classes=num_classes, pretrained=pretrained)
    if pretrained and loaded:
        backbone.weights_sha256 = loaded_sha256(loaded, backbone.weights_sha256)
    return backbone


def loaded_sha256(loaded: Sequence[LoadedWeights], claimed: str | None) -> str:
    """The SHA-256 of the weights a build loaded: of the one file loaded, or of the file
    the provider names (``claimed``) when it loaded several, else of the first."""
    if len(loaded) > 1 and any(w.sha256 == claimed for w in loaded):
        return str(claimed)
    return loaded[0].sha256


def pull(
    ref: Ref | str,
    *,
    revision: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> PulledWeights:
    """`zoo pull REF [--revision R] [--force]`: resolve the provider and pull."""
    from zoo.catalog.index import provider_for, resolve
    from zoo.contract.errors import UsageError

    ref = resolve(ref)
    if ref.is_registered:
        raise UsageError(f"'{ref}' is a registered model: its weights are in the registry already")
    ref = ref.with_revision(revision)
    return provider_for(ref).pull(ref, force=force, progress=progress)
