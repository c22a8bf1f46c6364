"""zoo provider plugin for torchvision: every classification model and weights enum.

torchvision's weights carry no licence id; where the metadata gives a licence URL it is
kept and mapped to an id when it is a known licence (SWAG -> cc-by-nc-4.0); elsewhere the
licence is ``unknown``, never guessed permissive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from importlib import metadata
from typing import Any

import zoo
from zoo import BackboneInfo, Ref, UnknownModelError


def _info(arch: str, weights: Any) -> BackboneInfo:
    meta = weights.meta
    lic_url = meta.get("license")
    transform = weights.transforms()
    crop = int(transform.crop_size[0])
    resize = int(transform.resize_size[0])
    metrics = meta.get("_metrics") or {}
    dataset = next(iter(metrics), None)
    return BackboneInfo(
        reference=f"torchvision:{arch}.{weights.name}",
        provider="torchvision",
        architecture=arch,
        tag=weights.name,
        license=zoo.license_from_url(lic_url) if lic_url else zoo.UNKNOWN,
        license_url=lic_url,
        source=weights.url,
        pretrained=True,
        pretrained_dataset=dataset.lower() if dataset else None,
        input_size=(3, crop, crop),
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
        interpolation=str(transform.interpolation.value),
        crop_pct=round(crop / resize, 4),
        num_classes=len(meta["categories"]) if meta.get("categories") else None,
        num_params=meta.get("num_params"),
    )


class TorchvisionProvider:
    """Classification models of ``torchvision.models``; weights from torchvision's URLs."""

    name = "torchvision"

    def version(self) -> str:
        return metadata.version("torchvision")

    def index(self) -> Iterable[BackboneInfo]:
        from torchvision import models

        for arch in models.list_models(module=models):
            for weights in models.get_model_weights(arch):
                yield _info(arch, weights)

    def resolve(self, ref: Ref) -> tuple[str, Any]:
        """(architecture, weights enum member); no suffix means the default weights."""
        from torchvision import models

        arch = ref.arch
        if arch not in models.list_models(module=models):
            raise UnknownModelError(f"torchvision has no classification model '{arch}'")
        enum = models.get_model_weights(arch)
        if ref.tag is None:
            return arch, enum.DEFAULT
        try:
            return arch, enum[ref.tag]
        except KeyError:
            known = ", ".join(w.name for w in enum)
            raise UnknownModelError(
                f"torchvision's {arch} has no weights '{ref.tag}' (known: {known})"
            ) from None

    def describe(self, ref: Ref) -> BackboneInfo:
        arch, weights = self.resolve(ref)
        info = _info(arch, weights)
        return replace(info, feature_dim=_meta_feature_dim(arch))

    def pull(self, ref: Ref, *, force: bool = False, progress: Any = None) -> zoo.PulledWeights:
        raise zoo.ZooError("pulling torchvision weights is not available yet (issue 3)")

    def build(self, ref: Ref, *, num_classes: int | None = None, pretrained: bool = True) -> Any:
        raise zoo.ZooError("building torchvision models is not available yet (issue 5)")


def _meta_feature_dim(arch: str) -> int | None:
    """Input width of the classifier's last Linear layer, on the meta device."""
    import torch
    from torchvision import models

    try:
        with torch.device("meta"):
            model = models.get_model(arch, weights=None)
    except Exception:
        return None
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return int(linears[-1].in_features) if linears else None


@zoo.hookimpl
def register_providers(register: Any) -> None:
    register(TorchvisionProvider())
