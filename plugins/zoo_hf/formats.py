"""What a Hub repo is, read from its small files alone (no torch, no transformers).

A repo's ``config.json`` says which library builds it: timm's format names an
``architecture``; transformers' names a ``model_type`` (and usually ``architectures``).
Its ``preprocessor_config.json`` (a transformers image processor's settings) says how
images are prepared; :func:`input_config` turns that into zoo's input fields.
"""

from __future__ import annotations

import re
from typing import Any

import zoo
from zoo import BackboneInfo

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)

TIMM = "timm"
TRANSFORMERS = "transformers"

# What zoo builds from the Hub, for the one line that refuses anything else.
SUPPORTED = (
    "zoo builds hf: repos of image classifiers and vision backbones: timm-format repos "
    "(config.json with `architecture`) and transformers image-classification models "
    "(ViT, DeiT, BEiT, ConvNeXt, ResNet, Swin, DINOv2, EfficientNet, MobileViT, ...)"
)

# transformers class-name endings that carry an image classifier or a bare vision
# backbone zoo can put a classifier on; others (ForObjectDetection, ForSemanticSegmentation,
# ForDepthEstimation, ForMaskedLM, ...) are models of another task.
_VISION_ENDINGS = (
    "ForImageClassification",
    "ForImageClassificationWithTeacher",
    "Model",
    "Backbone",
    "ForMaskedImageModeling",
    "ForPreTraining",
)

# PIL's resampling filters (transformers' ``resample``) -> the interpolation zoo's resize
# uses: nearest, bilinear, bicubic. Lanczos is closest to bicubic; box and hamming to
# bilinear.
_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bilinear"}


def repo_format(config: dict[str, Any]) -> str | None:
    """``"timm"``, ``"transformers"`` or None (a config.json neither library wrote)."""
    if config.get("architecture"):
        return TIMM
    if config.get("model_type"):
        return TRANSFORMERS
    return None


def task_refusal(repo_id: str, config: dict[str, Any], image_model_types: Any) -> str | None:
    """None when the transformers config is an image classifier or vision backbone zoo
    can build; otherwise the one-line reason (what the repo is, what zoo supports).

    ``image_model_types`` is transformers' own table of model types that have an image
    classification class (``MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES``)."""
    model_type = str(config.get("model_type"))
    archs = [str(a) for a in config.get("architectures") or []]
    what = f"a transformers '{model_type}' model" + (f" ({', '.join(archs)})" if archs else "")
    vision = model_type in image_model_types
    if vision and (not archs or any(a.endswith(_VISION_ENDINGS) for a in archs)):
        return None
    task = ", a model for another task" if vision else ", not an image model"
    return f"hf:{repo_id} is {what}{task}; {SUPPORTED}"


def _dims(value: Any) -> tuple[int, int] | None:
    """(height, width) of an image processor's ``size`` / ``crop_size`` entry."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            edge = int(value["shortest_edge"])
            return edge, edge
    return None


def input_config(processor: dict[str, Any] | None, config: dict[str, Any]) -> dict[str, Any]:
    """BackboneInfo's input fields (input_size, mean, std, interpolation, crop_pct) from a
    transformers image processor's settings, with the model config's ``image_size`` where
    the processor says nothing.

    zoo's eval transform resizes the shorter side to ``size / crop_pct`` and centre-crops
    ``size``. An image processor that crops (``do_center_crop`` with ``crop_size``) gives
    ``crop_pct = crop / resize``; ConvNeXt-style processors give ``crop_pct`` themselves
    (below 384 pixels); one that resizes straight to the input size gives 1.0.
    """
    processor = processor or {}
    channels = int(config.get("num_channels", 3))
    out: dict[str, Any] = {}
    size = _dims(processor.get("size"))
    crop = _dims(processor.get("crop_size"))
    if crop is not None and processor.get("do_center_crop", True):
        resize = min(size) if size else max(crop)
        out["input_size"] = (channels, *crop)
        out["crop_pct"] = round(min(crop) / resize, 6) if resize else 1.0
    elif size is not None:
        out["input_size"] = (channels, *size)
        edge = processor.get("size")
        pct = processor.get("crop_pct")
        shortest = isinstance(edge, dict) and "shortest_edge" in edge
        out["crop_pct"] = float(pct) if pct and shortest and size[0] < 384 else 1.0
    else:
        image_size = _dims(config.get("image_size"))
        if image_size is not None:
            out["input_size"] = (channels, *image_size)
    if processor.get("do_normalize", True) is False:
        out["mean"], out["std"] = (0.0,) * channels, (1.0,) * channels
    else:
        for key, field in (("image_mean", "mean"), ("image_std", "std")):
            value = processor.get(key)
            if isinstance(value, (int, float)):
                value = [value] * channels
            if value:
                out[field] = tuple(float(v) for v in value)
    resample = processor.get("resample")
    if isinstance(resample, int):
        out["interpolation"] = _RESAMPLE.get(resample, "bilinear")
    return out


# Where an hf: entry's licence comes from: the repo's own statement.
_CARD_SOURCE = "the model card's license field (README.md front matter)"


def license_from_card(readme: str | None) -> str:
    """The ``license:`` of a model card's YAML front matter (``license_name`` for 'other')."""
    if not readme:
        return zoo.UNKNOWN
    m = _FRONT_MATTER.match(readme)
    if not m:
        return zoo.UNKNOWN
    import yaml

    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return zoo.UNKNOWN
    lic = meta.get("license")
    if lic == "other" and meta.get("license_name"):
        lic = meta["license_name"]
    if isinstance(lic, list):
        lic = lic[0] if lic else None
    return zoo.normalize_license(lic)


def info_from_config(
    repo_id: str,
    revision: str | None,
    config: dict[str, Any],
    license_id: str,
    endpoint: str,
    processor: dict[str, Any] | None = None,
) -> BackboneInfo:
    """BackboneInfo from a repo's config.json (timm's layout or transformers'); for
    transformers' the input fields come from its preprocessor_config.json."""
    pcfg = dict(config.get("pretrained_cfg") or {})
    if repo_format(config) == TRANSFORMERS:
        pcfg.update(input_config(processor, config))
    arch = (
        config.get("architecture")
        or (config.get("architectures") or [None])[0]
        or config.get("model_type")
        or repo_id
    )
    input_size = pcfg.get("input_size")
    if input_size is None and config.get("image_size"):
        size = int(config["image_size"])
        input_size = [int(config.get("num_channels", 3)), size, size]
    return BackboneInfo(
        reference=f"hf:{repo_id}" + (f"@{revision}" if revision else ""),
        provider="hf",
        architecture=str(arch),
        tag=revision,
        license=license_id,
        license_url=zoo.spdx_url(license_id),
        license_source=_CARD_SOURCE if license_id != zoo.UNKNOWN else "not stated",
        source=f"{endpoint.rstrip('/')}/{repo_id}",
        pretrained=True,
        input_size=tuple(input_size) if input_size else None,
        mean=tuple(pcfg["mean"]) if pcfg.get("mean") else None,
        std=tuple(pcfg["std"]) if pcfg.get("std") else None,
        interpolation=pcfg.get("interpolation"),
        crop_pct=pcfg.get("crop_pct"),
        num_classes=config.get("num_classes")
        or (len(config["id2label"]) if config.get("id2label") else None),
        feature_dim=config.get("num_features")
        or config.get("hidden_size")
        or (config.get("hidden_sizes") or [None])[-1],
    )
