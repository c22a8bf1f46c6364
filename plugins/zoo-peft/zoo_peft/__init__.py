"""zoo-peft: LoRA and BitFit strategies, through zoo's optional strategy hooks.

A third-party plugin: it imports only ``zoo`` (and peft, inside the hooks that need it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zoo
from zoo import Phase, StrategySettings, TrainingPlan, UsageError

__all__ = ["BitFit", "LoRA", "register_strategies"]

zoo_plugin_api = 2  # prepare_model / finalize_model

EPOCHS = 5
LORA_LR = 1e-3
BITFIT_LR = 1e-3
ATTENTION = ("qkv", "query", "key", "value")  # timm ViT / transformers ViT projections
MAX_RANK = 1024
LORA_SETTINGS = ("r", "alpha", "dropout", "targets", "augment")
BITFIT_SETTINGS = ("augment",)


def _refuse(name: str, key: str, value: Any, allowed: str) -> UsageError:
    return UsageError(f"{name} setting {key}: {value!r} is not {allowed}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse settings peft would reject after minutes, or that would be ignored."""
    known = LORA_SETTINGS if name == "lora" else BITFIT_SETTINGS
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(
            f"{name} has no setting {', '.join(map(repr, unknown))} (its settings: "
            f"{', '.join(known)}; docs/strategies.md)"
        )
    if "augment" in options and not isinstance(options["augment"], bool):
        raise _refuse(name, "augment", options["augment"], "true or false")
    if name != "lora":
        return
    r = options.get("r", 8)
    if not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= MAX_RANK:
        raise _refuse(name, "r", r, f"a whole number from 1 to {MAX_RANK} (the adapters' rank)")
    alpha = options.get("alpha", 16)
    if not _number(alpha) or not math.isfinite(alpha) or alpha <= 0:
        raise _refuse(name, "alpha", alpha, "a positive finite number (scaling: alpha / r)")
    dropout = options.get("dropout", 0.0)
    if not _number(dropout) or not 0.0 <= dropout < 1.0:
        raise _refuse(name, "dropout", dropout, "a number in [0, 1)")
    targets = options.get("targets")
    if targets is not None and (
        not isinstance(targets, list | tuple)
        or not targets
        or not all(isinstance(t, str) and t for t in targets)
    ):
        raise _refuse(name, "targets", targets, "a list of layer names (e.g. [qkv, fc1])")


def _head_only_plan(
    name: str, stages: Sequence[str], settings: StrategySettings, lr: float
) -> TrainingPlan:
    """One phase whose stage set is the head alone: the body stays in eval mode (no
    BatchNorm statistics move), and ``prepare_model`` says which parameters train."""
    _check_options(name, settings.options)
    if len(stages) < 2:
        raise UsageError(
            f"{name} needs a body and a head; this backbone has {len(stages)} stage(s)"
        )
    epochs = settings.epochs or EPOCHS
    rate = settings.lr or lr
    head = len(stages) - 1
    phase = Phase(
        "finetune", epochs, rate, ((head,),), augment=bool(settings.options.get("augment", False))
    )
    return TrainingPlan(name, (phase,), {"epochs": epochs, "lr": rate, **dict(settings.options)})


def _adaptable(
    model: Any, stages: Sequence[tuple[str, Any]], wanted: Sequence[str] | None
) -> list[str]:
    from torch import nn

    body_ids = {id(m) for _, container in stages[:-1] for m in container.modules()}
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if id(module) in body_ids
        and (
            isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)
        )
    ]
    if wanted:
        chosen = [n for n, _ in candidates if n.split(".")[-1] in set(wanted)]
    else:
        attention = [n for n, _ in candidates if n.split(".")[-1] in ATTENTION]
        chosen = attention or [n for n, _ in candidates]
    if not chosen:
        raise UsageError("lora found no linear or convolution layer below the head to adapt")
    return chosen


@dataclass
class LoRA:
    name: str = "lora"
    summary: str = (
        "LoRA adapters (peft) on attention or linear/conv layers + a new head; merged "
        "before registration"
    )

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        return _head_only_plan(self.name, stages, settings, LORA_LR)

    def prepare_model(
        self, model: Any, stages: Sequence[tuple[str, Any]], phase: Phase, plan: TrainingPlan
    ) -> list[Any]:
        from peft import LoraConfig, inject_adapter_in_model

        options = plan.settings
        if not any("lora_A" in name for name, _ in model.named_parameters()):
            targets = _adaptable(model, stages, options.get("targets"))
            config = LoraConfig(
                r=int(options.get("r", 8)),
                lora_alpha=options.get("alpha", 16),
                lora_dropout=float(options.get("dropout", 0.0)),
                target_modules=targets,
            )
            inject_adapter_in_model(config, model)
        adapters = [p for name, p in model.named_parameters() if "lora_" in name]
        head = list(stages[-1][1].parameters())
        return adapters + head

    def finalize_model(self, model: Any) -> Any:
        """Merge every adapter into its base layer and put the base layer back."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        wrapped = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
        for name, module in wrapped:
            module.merge()
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, module.get_base_layer())
        return model


@dataclass
class BitFit:
    name: str = "bitfit"
    summary: str = "train only the biases of the body and the new head (BitFit)"

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan:
        return _head_only_plan(self.name, stages, settings, BITFIT_LR)

    def prepare_model(
        self, model: Any, stages: Sequence[tuple[str, Any]], phase: Phase, plan: TrainingPlan
    ) -> list[Any]:
        biases = [p for _, c in stages[:-1] for n, p in c.named_parameters() if n.endswith("bias")]
        if not biases:
            raise UsageError("bitfit: this backbone's body has no bias parameters to train")
        return biases + list(stages[-1][1].parameters())


@zoo.hookimpl
def register_strategies(register: Any) -> None:
    register(LoRA())
    register(BitFit())
