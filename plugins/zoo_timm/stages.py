"""timm models as ordered stages: stem, feature stages, head.

timm's own ``group_matcher(coarse=True)`` (the grouping its layer-decay uses) says which
parameters form the stem and each block group. zoo keeps that order, makes the classifier
(``get_classifier()``) the last stage on its own, and folds whatever else timm leaves for
the end (final norm, ``conv_head``, a head's pre-logits norm) into the stage before the
head: it feeds the head but is not new.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import zoo

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

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


def timm_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Stages of a timm model, input to head, partitioning its parameters."""
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

    return zoo.stages_from_assignment(model, assign, [*names.values(), HEAD])


__all__ = ["classifier_param_names", "timm_stages"]
