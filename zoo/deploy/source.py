"""The model ``zoo export`` starts from: a registered version (``models:/NAME/N``,
``@ALIAS``, a bare name), loaded with the registry's pickle-free loader, or any catalogue
backbone built by its provider; with what is known about it (preprocessing, classes,
licence, the training data and split recorded in its lineage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoo.contract.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from zoo.data.preprocess import Preprocessing
    from zoo.registry import RegisteredVersion

__all__ = ["Source", "load_source"]

DEFAULT_VAL_FRACTION, DEFAULT_SEED = 0.2, 0  # the training engine's split defaults


@dataclass
class Source:
    """The model to export and what is known about it."""

    reference: str  # canonical: models:/NAME/N or a provider reference
    module: nn.Module
    preprocessing: Preprocessing
    class_names: tuple[str, ...] = ()
    license: str = "unknown"
    version: RegisteredVersion | None = None
    data_root: str | None = None  # training data recorded in the lineage
    # (val_split, seed, test_split, split digest) as the training engine recorded them
    split: tuple[float, int, float, str | None] = (DEFAULT_VAL_FRACTION, DEFAULT_SEED, 0.0, None)


def load_source(ref: str) -> Source:
    """Load a registered version or build a catalogue backbone (pretrained weights)."""
    from zoo.catalog.index import provider_for, resolve
    from zoo.data.preprocess import Preprocessing

    parsed = resolve(ref)
    if parsed.is_registered:
        from zoo import registry

        module, version = registry.load_model(str(parsed))
        if version.tags.get("zoo.relation") == "export" or version.name.endswith(".onnx"):
            raise UsageError(
                f"{version.model_uri} is itself an export: export the version it was "
                f"derived from ({version.tags.get('zoo.derived_from', 'see zoo registry')})"
            )
        from zoo.deploy.images import preprocessing_from

        dataset = version.lineage.get("dataset") or {}
        recorded = dataset.get("split") or {}  # the training engine's split settings
        split = (
            float(recorded.get("val_split", DEFAULT_VAL_FRACTION)),
            int(recorded.get("seed", DEFAULT_SEED)),
            float(recorded.get("test_split", 0.0)),
            recorded.get("digest"),
        )
        return Source(
            reference=version.model_uri,
            module=module,
            preprocessing=preprocessing_from(version.preprocessing),
            class_names=tuple(version.class_names),
            license=version.license,
            version=version,
            data_root=dataset.get("root") if isinstance(dataset, Mapping) else None,
            split=split,
        )
    provider = provider_for(parsed)
    pretrained = provider.describe(parsed).pretrained  # architectures without weights too
    backbone = provider.build(parsed, pretrained=pretrained)
    info = backbone.info
    return Source(
        reference=info.reference,
        module=backbone.model,
        preprocessing=Preprocessing.from_info(info),
        license=info.license,
    )
