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
from typing import TYPE_CHECKING

from zoo.errors import ZooError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["check_partition", "stages_from_assignment"]


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


def check_partition(model: nn.Module, stages: Sequence[tuple[str, nn.Module]]) -> None:
    """Raise unless every parameter of ``model`` is in exactly one stage (and no other)."""
    owner: dict[int, str] = {}
    for stage_name, stage in stages:
        for param in stage.parameters():
            if id(param) in owner and owner[id(param)] != stage_name:
                raise ZooError(f"a parameter is in stages '{owner[id(param)]}' and '{stage_name}'")
            owner[id(param)] = stage_name
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [n for pid, n in names.items() if pid not in owner]
    if missing:
        raise ZooError(f"parameters in no stage: {', '.join(missing[:5])}")
    extra = [s for pid, s in owner.items() if pid not in names]
    if extra:
        raise ZooError(f"stage '{extra[0]}' holds a parameter the model does not have")
