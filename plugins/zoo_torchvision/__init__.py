"""zoo provider plugin for torchvision: every classification model and weights enum.

torchvision's weights carry no licence id. Where the metadata gives a licence URL it is
kept and mapped to an id (SWAG -> cc-by-nc-4.0); elsewhere the licence is what
torchvision states for the weights it publishes, read from the one table zoo keeps for
that (``zoo.publisher_statement``), which timm's copies of the same files use too.
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
    stated = zoo.publisher_statement(weights.url)
    if lic_url:
        lic, lic_source = zoo.license_from_url(lic_url), "torchvision's weights metadata"
    elif stated is not None:
        lic, lic_url, lic_source = stated.license, stated.url, stated.source
    else:
        lic, lic_source = zoo.UNKNOWN, None
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
        license=lic,
        license_url=lic_url,
        license_source=lic_source,
        source=weights.url,
        pretrained=True,
        pretrained_dataset=dataset.lower() if dataset else None,
        imagenet_top1=(metrics.get("ImageNet-1K") or {}).get("acc@1"),
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
    grammar = zoo.NameGrammar.tagged(  # torchvision:ARCH[.WEIGHTS], one dot, no @REV
        "ARCH[.WEIGHTS]",
        dotted_tags=False,
        revisions=False,
        refusal="expected an architecture and an optional weights name",
        no_revisions="torchvision weights have no revisions",
    )

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
        """torchvision's weights URL (or the same path under ZOO_TORCHVISION_MIRROR),
        verified against the SHA-256 prefix in its file name."""
        if ref.revision:
            raise zoo.BadReferenceError(
                f"torchvision weights have no revisions: drop @{ref.revision} / --revision"
            )
        arch, weights = self.resolve(ref)
        info = _info(arch, weights)
        return zoo.pull_url(
            provider="torchvision",
            name=f"{arch}.{weights.name}",
            url=mirror_url(weights.url),
            license=info.license,
            source=weights.url,
            require_hash=True,
            force=force,
            progress=progress,
        )

    def build(
        self, ref: Ref, *, num_classes: int | None = None, pretrained: bool = True
    ) -> zoo.ModuleBackbone:
        """The architecture with a fresh head of ``num_classes`` outputs; pretrained
        weights come from the verified cache, loaded without unpickling code."""
        from torchvision import models

        from zoo_torchvision.stages import replace_head, torchvision_stages

        arch, weights = self.resolve(ref)
        info = _info(arch, weights)
        weights_sha256 = None
        if pretrained:
            pulled = self.pull(ref)
            state_dict = zoo.load_state_dict(pulled.weights_file.path)
            model = models.get_model(arch, weights=None, **_weights_kwargs(arch, weights))
            model.load_state_dict(state_dict, strict=True)
            _drop_aux(model)
            weights_sha256 = pulled.weights_file.sha256
            if num_classes is not None:
                replace_head(model, num_classes)
        else:
            kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
            if arch in _AUX_ARCHS:
                kwargs.update(aux_logits=False, init_weights=True)
            model = models.get_model(arch, weights=None, **kwargs)
        linears = [m for m in model.modules() if m.__class__.__name__ == "Linear"]
        info = replace(
            info,
            pretrained=pretrained,
            num_classes=num_classes if num_classes is not None else info.num_classes,
            num_params=sum(p.numel() for p in model.parameters()),
            feature_dim=int(linears[-1].in_features) if linears else None,
        )
        return zoo.ModuleBackbone(
            info, model, torchvision_stages(model), weights_sha256=weights_sha256
        )


_AUX_ARCHS = ("googlenet", "inception_v3")
_OFFICIAL = "https://download.pytorch.org/models/"


def mirror_url(url: str) -> str:
    """The weights URL under ZOO_TORCHVISION_MIRROR (same path below ``/models/``)."""
    import os

    mirror = os.environ.get("ZOO_TORCHVISION_MIRROR", "").strip()
    if not mirror:
        return url
    rest = url[len(_OFFICIAL) :] if url.startswith(_OFFICIAL) else url.rsplit("/", 1)[-1]
    return f"{mirror.rstrip('/')}/{rest}"


def _weights_kwargs(arch: str, weights: Any) -> dict[str, Any]:
    """The constructor arguments torchvision's own builder sets for these weights."""
    kwargs: dict[str, Any] = {}
    if weights.meta.get("categories"):
        kwargs["num_classes"] = len(weights.meta["categories"])
    if arch.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    elif arch.startswith("maxvit"):
        kwargs["input_size"] = weights.meta["min_size"]
    elif arch in _AUX_ARCHS:
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    return kwargs


def _drop_aux(model: Any) -> None:
    """As torchvision's builders do: the auxiliary heads exist only to load the weights."""
    if hasattr(model, "aux1"):
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    if hasattr(model, "AuxLogits"):
        model.aux_logits, model.AuxLogits = False, None


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
