"""torchvision classification models as ordered stages, one rule set per family.

torchvision has no group matcher, so each model family (the module its class lives in)
gets a short table: which parameters form the stem and how the feature stages are named.
The head is the final classifier layer alone (the last ``Linear``; SqueezeNet's final
1x1 convolution); anything else without a rule (a final norm, the hidden layers of a
VGG classifier, auxiliary heads) joins the stage before it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import zoo

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

HEAD = "head"
STEM = "stem"

# family -> [(regex on the parameter name, stage name: a template over its groups)]
_RULES: dict[str, list[tuple[str, str]]] = {
    "resnet": [(r"^(conv1|bn1)\.", STEM), (r"^(layer\d+)\.", r"\1")],
    "alexnet": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "vgg": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "squeezenet": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "convnext": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "efficientnet": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "mobilenetv2": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "mobilenetv3": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "swin_transformer": [(r"^features\.0\.", STEM), (r"^features\.(\d+)\.", r"features.\1")],
    "densenet": [
        (r"^features\.(conv0|norm0)\.", STEM),
        (r"^features\.(denseblock\d+|transition\d+)\.", r"\1"),
    ],
    "googlenet": [(r"^(conv\d)\.", STEM), (r"^(inception\w+)\.", r"\1")],
    "inception": [(r"^(Conv2d_\w+)\.", STEM), (r"^(Mixed_\w+)\.", r"\1")],
    "maxvit": [(r"^stem\.", STEM), (r"^blocks\.(\d+)\.", r"blocks.\1")],
    "mnasnet": [(r"^layers\.[0-7]\.", STEM), (r"^layers\.(\d+)\.", r"layers.\1")],
    "regnet": [(r"^stem\.", STEM), (r"^trunk_output\.(block\d+)\.", r"\1")],
    "shufflenetv2": [(r"^conv1\.", STEM), (r"^(stage\d+)\.", r"\1")],
    "vision_transformer": [
        (r"^(conv_proj\.|class_token$|encoder\.pos_embedding$)", STEM),
        (r"^encoder\.layers\.(encoder_layer_\d+)\.", r"\1"),
    ],
}


def family(model: nn.Module) -> str:
    return type(model).__module__.rsplit(".", 1)[-1]


def head_path(model: nn.Module) -> str:
    """Dotted path of the final classifier layer."""
    from torch import nn

    if family(model) == "squeezenet":
        return "classifier.1"
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise zoo.ZooError(f"{type(model).__name__} has no Linear classifier zoo can replace")
    return last


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the final classifier layer for a freshly initialised one of ``num_classes``."""
    from torch import nn

    path = head_path(model)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = model.get_submodule(path)
    new: nn.Module
    if isinstance(old, nn.Conv2d):
        new = nn.Conv2d(old.in_channels, num_classes, kernel_size=old.kernel_size[0])
    elif isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    else:  # pragma: no cover - head_path returns Linear or Conv2d
        raise zoo.ZooError(f"cannot replace a {type(old).__name__} head")
    setattr(parent, attr, new)


def torchvision_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Stages of a torchvision classification model, input to head."""
    rules = [(re.compile(p), t) for p, t in _RULES.get(family(model), [])]
    head = head_path(model)
    stage_of: dict[str, str] = {}
    order: list[str] = []
    prev = STEM
    for name, _ in model.named_parameters():
        if name.startswith(head + "."):
            stage_of[name] = HEAD
            continue
        stage = None
        for rx, template in rules:
            m = rx.match(name)
            if m:
                stage = m.expand(template)
                break
        if stage is None:
            # no rule: an unmatched tail (final norm, hidden classifier layers) joins the
            # stage before; a family zoo has no table for is split by top-level children
            stage = prev if rules else name.split(".", 1)[0]
        if stage not in order:
            order.append(stage)
        stage_of[name] = prev = stage
    order.append(HEAD)
    return zoo.stages_from_assignment(model, stage_of.__getitem__, order)
