"""zoo provider plugin for timm: every architecture and pretrained tag timm knows.

Written only against zoo's public API; registered through the ``zoo`` entry-point group
like any third-party plugin. timm and torch are imported inside methods.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from typing import Any

import zoo
from zoo import BackboneInfo, Ref, UnknownModelError

# Final dataset of a timm weights tag, read from its last known token ("..._ft_in1k").
_DATASETS = {
    "in1k": "imagenet-1k",
    "in12k": "imagenet-12k",
    "in21k": "imagenet-21k",
    "in22k": "imagenet-22k",
    "ig1b": "instagram-1b",
    "ig3b": "instagram-3b",
    "laion2b": "laion-2b",
    "laion400m": "laion-400m",
    "openai": "openai-wit",
    "lvd142m": "lvd-142m",
    "lvd1689m": "lvd-1689m",
    "jft300m": "jft-300m",
    "webli": "webli",
    "datacompxl": "datacomp-xl",
    "merged2b": "merged-2b",
    "mim_in22k": "imagenet-22k",
}


def dataset_of(tag: str | None) -> str | None:
    if not tag:
        return None
    for token in reversed(tag.split("_")):
        if token in _DATASETS:
            return _DATASETS[token]
    return None


def _info_from_cfg(name: str, cfg: Any, *, pretrained: bool = True) -> BackboneInfo:
    arch, _, tag = name.partition(".")
    if cfg is None:
        return BackboneInfo(
            reference=f"timm:{name}",
            provider="timm",
            architecture=arch,
            tag=tag or None,
            pretrained=False,
        )
    if cfg.hf_hub_id:
        source: str | None = f"https://huggingface.co/{cfg.hf_hub_id}"
    else:
        source = cfg.url or None
    input_size = tuple(cfg.input_size) if cfg.input_size else None
    lic, lic_url, lic_source = _license(cfg, tag)
    return BackboneInfo(
        reference=f"timm:{name}",
        provider="timm",
        architecture=arch,
        tag=tag or None,
        license=lic,
        license_url=lic_url,
        license_source=lic_source,
        source=source,
        pretrained=pretrained and bool(cfg.hf_hub_id or cfg.url or cfg.file),
        pretrained_dataset=dataset_of(tag),
        input_size=input_size,
        mean=tuple(cfg.mean) if cfg.mean else None,
        std=tuple(cfg.std) if cfg.std else None,
        interpolation=cfg.interpolation or None,
        crop_pct=cfg.crop_pct,
        num_classes=cfg.num_classes,
    )


# timm's tags for weights it copied from torchvision (some copies keep no origin URL).
_TORCHVISION_TAGS = ("tv_", "tv2_", "tv3_")
_TORCHVISION_WEIGHTS = "https://download.pytorch.org/models/"


def _license(cfg: Any, tag: str) -> tuple[str, str | None, str]:
    """(licence id, licence URL, who states it). The weights' original publisher wins
    where zoo knows its statement (torchvision, for timm's tv_in1k copies), so one file
    reports one licence whichever provider serves it; else timm's pretrained config."""
    origin = cfg.url or (_TORCHVISION_WEIGHTS if tag.startswith(_TORCHVISION_TAGS) else None)
    stated = zoo.publisher_statement(origin)
    if stated is not None:
        return stated.license, stated.url, stated.source
    lic = zoo.normalize_license(getattr(cfg, "license", None))
    source = "timm's pretrained config" if getattr(cfg, "license", None) else "not stated"
    return lic, zoo.spdx_url(lic), source


class TimmProvider:
    """Backbones from timm's registry; weights come from the Hugging Face Hub."""

    name = "timm"
    grammar = zoo.NameGrammar.tagged()  # timm:ARCH[.TAG][@REV]: the first dot splits

    def version(self) -> str:
        return metadata.version("timm")

    def index(self) -> Iterable[BackboneInfo]:
        import timm

        with_weights = timm.list_models(pretrained=True)
        for name in with_weights:
            yield _info_from_cfg(name, timm.models.get_pretrained_cfg(name))
        has_weights = {n.split(".", 1)[0] for n in with_weights}
        for arch in timm.list_models():
            if arch not in has_weights:
                yield BackboneInfo(
                    reference=f"timm:{arch}", provider="timm", architecture=arch, pretrained=False
                )

    def resolve_name(self, ref: Ref) -> str:
        """ARCH[.TAG] -> ARCH.TAG with timm's default tag filled in; unknown names raise."""
        import timm

        arch = ref.arch
        if not timm.is_model(arch):
            raise UnknownModelError(f"timm has no architecture '{arch}'")
        tags = {full.split(".", 1)[1] for full in timm.models.get_arch_pretrained_cfgs(arch)}
        if ref.tag is None:
            default = timm.models.get_pretrained_cfg(arch)
            return f"{arch}.{default.tag}" if default is not None and default.tag else arch
        if ref.tag not in tags:
            known = ", ".join(sorted(tags)) or "none"
            raise UnknownModelError(
                f"timm's {arch} has no weights tag '{ref.tag}' (known: {known})"
            )
        return ref.name

    def describe(self, ref: Ref) -> BackboneInfo:
        import timm

        name = self.resolve_name(ref)
        cfg = timm.models.get_pretrained_cfg(name) if "." in name else None
        info = _info_from_cfg(name, cfg)
        num_params, feature_dim = _meta_size(name)
        from dataclasses import replace

        return replace(info, num_params=num_params, feature_dim=feature_dim)

    def pull(self, ref: Ref, *, force: bool = False, progress: Any = None) -> zoo.PulledWeights:
        """timm's weights live on the Hugging Face Hub (``cfg.hf_hub_id``); the few that
        do not are plain URLs. ``@REV`` pins a Hub revision."""
        import timm

        name = self.resolve_name(ref)
        cfg = timm.models.get_pretrained_cfg(name) if "." in name else None
        if cfg is None or not (cfg.hf_hub_id or cfg.url):
            raise zoo.UsageError(
                f"timm:{name} has no pretrained weights to pull; pick a tag from "
                f"`zoo list '{ref.arch}*' --provider timm --pretrained`"
            )
        lic = zoo.normalize_license(getattr(cfg, "license", None))
        if cfg.hf_hub_id:
            weights = (
                (cfg.hf_hub_filename,)
                if cfg.hf_hub_filename
                else ("model.safetensors", "pytorch_model.bin")  # safetensors first
            )
            return zoo.pull_hub(
                provider="timm",
                name=name,
                repo_id=cfg.hf_hub_id,
                revision=ref.revision,
                weights=weights,
                license=lic,
                force=force,
                progress=progress,
            )
        if ref.revision:
            raise zoo.UsageError(f"timm:{name} is a plain URL without revisions: drop @REV")
        return zoo.pull_url(
            provider="timm",
            name=name,
            url=str(cfg.url),
            license=lic,
            require_hash=False,
            force=force,
            progress=progress,
        )

    def build(
        self, ref: Ref, *, num_classes: int | None = None, pretrained: bool = True
    ) -> zoo.ModuleBackbone:
        """timm.create_model with a fresh head of ``num_classes`` outputs; pretrained
        weights come from the verified cache (pulled first when missing), never from
        timm's own downloader."""
        import timm

        name = self.resolve_name(ref)
        cfg = timm.models.get_pretrained_cfg(name) if "." in name else None
        info = _info_from_cfg(name, cfg)
        kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
        weights_sha256 = None
        if pretrained:
            if not info.pretrained:
                raise zoo.UsageError(
                    f"timm:{name} has no pretrained weights: build it with pretrained=False "
                    f"or pick a tag from `zoo list '{ref.arch}*' --provider timm`"
                )
            pulled = self.pull(ref)
            state_dict = zoo.load_state_dict(pulled.weights_file.path)
            model: Any = timm.create_model(
                name, pretrained=True, pretrained_cfg_overlay={"state_dict": state_dict}, **kwargs
            )
            weights_sha256 = pulled.weights_file.sha256
            if num_classes is not None and num_classes == (cfg.num_classes if cfg else None):
                model.reset_classifier(num_classes)  # a new head, even of the same width
        else:
            model = timm.create_model(name, pretrained=False, **kwargs)
        return zoo.timm_style_backbone(
            info,
            model,
            pretrained=pretrained,
            num_classes=num_classes,
            weights_sha256=weights_sha256,
        )


def _meta_size(name: str) -> tuple[int | None, int | None]:
    """Parameter count and feature width, counted on the meta device (no weights loaded)."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:
        return None, None
    num_params = sum(p.numel() for p in model.parameters())
    feature_dim = getattr(model, "num_features", None)
    return num_params, int(feature_dim) if isinstance(feature_dim, int) else None


@zoo.hookimpl
def register_providers(register: Any) -> None:
    register(TimmProvider())
