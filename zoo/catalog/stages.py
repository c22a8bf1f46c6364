"""Splitting any model into ordered stages (input -> head) from a parameter -> stage map.

Providers know how their models are laid out (timm's group matchers, torchvision's
families); they express that as a function from a parameter's name to a stage name, and
:func:`stages_from_assignment` turns it into stage modules that *share* the model's own
submodules and parameters. Freezing a stage (``requires_grad_(False)``, ``eval()``)
therefore freezes those parts of the model, whatever the source.

Every parameter lands in exactly one stage (:func:`check_partition`); modules without
parameters (activations, pooling, affine-free norms with running statistics) go to the
stage of the parameters that precede them, so ``stage.eval()`` reaches them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from zoo.contract.checks import check_partition
from zoo.contract.errors import ZooError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["check_partition", "group_matcher_stages", "stages_from_assignment"]


def _safe(name: str, taken: set[str]) -> str:
    base = name.replace(".", "_") or "root"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}_{n}"
    taken.add(candidate)
    return candidate


def stages_from_assignment(
    model: nn.Module,
    assign: Callable[[str], str],
    order: Sequence[str],
) -> list[tuple[str, nn.Module]]:
    """Stages named and ordered by ``order``, each holding what ``assign`` gives it.

    ``assign(param_name)`` returns the stage name of each parameter (its full dotted name
    in ``model.named_parameters()``). A module whose parameters all go to one stage is
    placed whole in that stage; a module that spans stages is split further, and
    parameters held directly by it (a ViT's ``cls_token``) are registered on the stage
    themselves. Stages that end up empty are dropped.
    """
    from torch import nn

    order = list(order)
    index = {name: i for i, name in enumerate(order)}
    containers = {name: nn.Module() for name in order}
    taken: dict[str, set[str]] = {name: set() for name in order}
    param_stage: dict[int, str] = {}
    for pname, param in model.named_parameters():
        stage = assign(pname)
        if stage not in index:
            raise ZooError(f"parameter '{pname}' was assigned to unknown stage '{stage}'")
        prev = param_stage.get(id(param))
        if prev is not None and prev != stage:
            raise ZooError(f"shared parameter '{pname}' was assigned to two stages")
        param_stage[id(param)] = stage

    current = order[0]

    def place(prefix: str, module: nn.Module) -> None:
        nonlocal current
        stages = {param_stage[id(p)] for p in module.parameters()}
        if len(stages) == 1:
            (stage,) = stages
            containers[stage].add_module(_safe(prefix, taken[stage]), module)
            current = stage
            return
        if not stages:
            if prefix:  # parameter-free module: goes with what precedes it
                containers[current].add_module(_safe(prefix, taken[current]), module)
            return
        for pname, param in module.named_parameters(recurse=False):
            stage = param_stage[id(param)]
            full = f"{prefix}.{pname}" if prefix else pname
            containers[stage].register_parameter(_safe(full, taken[stage]), param)
            current = stage
        for cname, child in module.named_children():
            place(f"{prefix}.{cname}" if prefix else cname, child)

    place("", model)
    result = []
    for name in order:
        container = containers[name]
        if any(True for _ in container.parameters()) or name == order[-1]:
            result.append((name, container))
    check_partition(model, result)
    return result


# ------------------------------------------------------------------------- timm's layout
# timm's own ``group_matcher(coarse=True)`` (the grouping its layer-decay uses) says which
# parameters form the stem and each block group. zoo keeps that order, makes the classifier
# (``get_classifier()``) the last stage on its own, and folds whatever else timm leaves for
# the end (final norm, ``conv_head``, a head's pre-logits norm) into the stage before the
# head: it feeds the head but is not new. timm models come from the timm provider, from
# timm-format Hub repos and from local imports of either, hence one shared helper.

HEAD = "head"


def _label(members: list[str], others: list[str]) -> str:
    """The shortest module path of the group's first parameter that no other group shares
    (``layer1``, ``blocks.4``)."""
    if not members:
        return ""
    tokens = members[0].split(".")[:-1]
    for i in range(1, len(tokens) + 1):
        prefix = ".".join(tokens[:i])
        if not any(o == prefix or o.startswith(prefix + ".") for o in others):
            return prefix
    return ""


def classifier_param_names(model: nn.Module) -> set[str]:
    """Names of the classifier's parameters (empty when the model has no classifier)."""
    get = getattr(model, "get_classifier", None)
    if get is None:
        return set()
    classifier = get()
    ids = {id(p) for p in classifier.parameters()} if classifier is not None else set()
    return {n for n, p in model.named_parameters() if id(p) in ids}


def group_matcher_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Stages of a timm-style model (``group_matcher`` + ``get_classifier``), input to
    head, partitioning its parameters. Used by every provider whose models are timm's."""
    head_names = classifier_param_names(model)
    groups: dict[str, int] = {}
    matcher = getattr(model, "group_matcher", None)
    if matcher is not None:
        from timm.models._manipulate import group_with_matcher

        try:
            grouped = group_with_matcher(
                model.named_parameters(), matcher(coarse=True), return_values=False
            )
        except Exception:  # a model whose matcher does not cover its own layout
            grouped = {}
        for gid, params in grouped.items():
            for n in params:
                groups[n] = int(gid)
    if not groups:  # no matcher: the model's direct children, in order
        children = [n for n, _ in model.named_children()]
        for n, _ in model.named_parameters():
            top = n.split(".", 1)[0]
            groups[n] = children.index(top) if top in children else 0
    body = sorted({g for n, g in groups.items() if n not in head_names})
    last = max(groups.values(), default=0)
    if len(body) > 1 and last in body and any(groups[n] == last for n in head_names):
        # timm's last group collects what no rule matched: the classifier and what feeds
        # it directly (a pre-logits norm). Without the classifier it joins the stage before.
        body.remove(last)
        for n, g in groups.items():
            if g == last:
                groups[n] = body[-1]
    names: dict[int, str] = {}
    used: set[str] = set()
    for i, gid in enumerate(body):
        members = [n for n, g in groups.items() if g == gid and n not in head_names]
        others = [n for n, g in groups.items() if g != gid]
        label = "stem" if i == 0 else (_label(members, others) or f"stage{i}")
        if label in used or label == HEAD:
            label = f"{label}_{i}"
        used.add(label)
        names[gid] = label

    def assign(param_name: str) -> str:
        if param_name in head_names:
            return HEAD
        return names[groups[param_name]]

    return stages_from_assignment(model, assign, [*names.values(), HEAD])


def timm_style_backbone(
    info: Any,
    model: Any,
    *,
    pretrained: bool,
    num_classes: int | None,
    weights_sha256: str | None,
) -> Any:
    """A ModuleBackbone for a built timm-style model, its info completed from the model
    itself (head width, feature width, parameter count). Shared by every provider whose
    models are timm's (timm, timm-format Hub repos)."""
    from dataclasses import replace

    from zoo.catalog.backbone import ModuleBackbone

    info = replace(
        info,
        pretrained=pretrained,
        num_classes=getattr(model, "num_classes", num_classes),
        feature_dim=getattr(model, "num_features", None),
        num_params=sum(p.numel() for p in model.parameters()),
    )
    return ModuleBackbone(info, model, group_matcher_stages(model), weights_sha256=weights_sha256)
