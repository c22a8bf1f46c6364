"""Rebuilding a registered version's architecture before its weights are loaded: the base
provider's model, or, when the lineage records an ``architecture``, the module zoo
composed (the multi-stage probe, several backbones), by the builder of its ``kind``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from zoo.contract.errors import IntegrityError
from zoo.contract.refs import parse_ref

__all__ = ["build_architecture"]


def build_architecture(
    base: str, num_classes: int | None, architecture: Mapping[str, Any] | None = None
) -> Any:
    """The base provider's model, or (the lineage records an ``architecture``) the module
    zoo composed, rebuilt by the builder of its ``kind``."""
    if not architecture:
        return _provider_model(base, num_classes)
    kind = str(architecture.get("kind")) if isinstance(architecture, Mapping) else "?"
    if kind not in _ARCHITECTURES:
        raise IntegrityError(
            f"the version records an architecture of kind '{kind}' that this zoo cannot "
            f"rebuild (known: {', '.join(sorted(_ARCHITECTURES))}); upgrade zoo"
        )
    return _ARCHITECTURES[kind](base, num_classes, architecture)


def _provider_model(base: str, num_classes: int | None) -> Any:
    from zoo.catalog.index import provider_for

    ref = parse_ref(base)
    return provider_for(ref).build(ref, num_classes=num_classes, pretrained=False).model


def _stage_probe(base: str, num_classes: int | None, record: Mapping[str, Any]) -> Any:
    from zoo.catalog.heads import rebuild

    return rebuild(_provider_model(base, num_classes), record)


def _multi_backbone(base: str, num_classes: int | None, record: Mapping[str, Any]) -> Any:
    from zoo.catalog.composite import CompositeSpec, build_composite
    from zoo.catalog.index import provider_for

    spec = CompositeSpec.from_dict(dict(record))
    built = build_composite(
        spec, num_classes=num_classes or 1, pretrained=False, provider_for=provider_for
    )
    return built.model


# architecture kind (the lineage's "architecture" record) -> builder(base, classes, record);
# a version without the record is the base provider's own architecture
_ARCHITECTURES: dict[str, Callable[[str, int | None, Mapping[str, Any]], Any]] = {
    "stage-probe": _stage_probe,
    "multi-backbone": _multi_backbone,
}
