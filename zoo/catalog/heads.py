"""The multi-stage probe's model (Head2Toe-style, Evci et al. 2022): a frozen backbone and
ONE linear head on the pooled, standardised outputs of every stage, as one ``nn.Module``
whose forward takes what the backbone takes.

It lives in the core, not in the strategy plugin, because reloading a registered version
(``zoo.registry.read.load_model``) rebuilds it from the lineage's ``architecture`` record
(:func:`architecture` writes it, :func:`rebuild` reads it) and the core never imports a
plugin. Only the engine and the registry's reload import this module, inside functions,
so ``import zoo`` does not import torch.

What the head reads: each stage's output (named by the module path whose output is the
stage's output) averaged over space or tokens, in stage order, then the backbone
classifier's input (the pre-logits features a one-stage probe trains on) unless it is the
last stage's output already (timm's EfficientNets pool inside their last body stage).
The backbone's own classifier still runs, but its output is not the module's output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["KIND", "StageProbe", "architecture", "pool", "rebuild"]

KIND = "stage-probe"  # the lineage's architecture kind


def pool(t: Any) -> torch.Tensor:
    """One row per image: a (N, C, H, W) output averaged over space, (N, T, C) over tokens."""
    t = t[0] if isinstance(t, (tuple, list)) else t
    if t.dim() == 4:
        t = t.mean(dim=(2, 3))
    elif t.dim() == 3:
        t = t.mean(dim=1)
    return t.flatten(1)


class StageProbe(nn.Module):
    """``backbone`` (frozen) + ``(concat(pooled taps, classifier input) - mean) / std`` ->
    ``head`` (one ``nn.Linear``). ``mean`` and ``std`` are buffers: the standardisation
    travels with the weights and into every export."""

    mean: torch.Tensor  # buffers (typed for mypy: nn.Module's __getattr__ is not)
    std: torch.Tensor

    def __init__(
        self,
        backbone: nn.Module,
        taps: Sequence[str],
        classifier: str | None,
        num_features: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.taps = tuple(taps)
        self.classifier = classifier
        for path in (*self.taps, *([classifier] if classifier else [])):
            backbone.get_submodule(path)  # a wrong path fails here, not in forward
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated pooled rows, before standardisation (what the engine caches).

        The hooks live only for this call (nothing is left on the backbone, so copies and
        exports see a plain module); one module must not run two forwards at once."""
        rows: list[Any] = [None] * (len(self.taps) + (1 if self.classifier else 0))

        def keep(i: int) -> Any:
            def hook(_m: nn.Module, _args: Any, out: Any) -> None:
                rows[i] = pool(out)

            return hook

        def keep_input(_m: nn.Module, args: Any) -> None:
            rows[-1] = args[0].flatten(1)  # as the engine's feature cache keeps it

        handles = [
            self.backbone.get_submodule(p).register_forward_hook(keep(i))
            for i, p in enumerate(self.taps)
        ]
        if self.classifier:
            classifier = self.backbone.get_submodule(self.classifier)
            handles.append(classifier.register_forward_pre_hook(keep_input))
        try:
            self.backbone(x)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat(rows, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.features(x) - self.mean) / self.std
        out: torch.Tensor = self.head(z)
        return out

    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """The training rows' mean and std; a feature constant on them is left unscaled."""
        with torch.no_grad():
            self.mean.copy_(mean)
            self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))


def architecture(probe: StageProbe, stages: Sequence[str]) -> dict[str, Any]:
    """The lineage's ``architecture`` record: what :func:`rebuild` needs."""
    return {
        "kind": KIND,
        "stages": list(stages),
        "taps": list(probe.taps),
        "classifier": probe.classifier,
        "num_features": int(probe.head.in_features),
        "num_classes": int(probe.head.out_features),
    }


def rebuild(backbone: nn.Module, record: Mapping[str, Any]) -> StageProbe:
    """The registered module again, around a freshly built ``backbone`` (weights follow)."""
    classifier = record.get("classifier")
    return StageProbe(
        backbone,
        [str(t) for t in record["taps"]],
        str(classifier) if classifier else None,
        int(record["num_features"]),
        int(record["num_classes"]),
    )
