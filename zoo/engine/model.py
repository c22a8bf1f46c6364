"""The model a run trains: the parent described, the backbone built with a new head, the
strategy found and its plan validated, the classifier located for the feature cache."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.contract.types import StrategySettings, TrainingPlan, TrainingSummary
from zoo.data import Preprocessing
from zoo.engine.recipe import Recipe
from zoo.engine.state import Parent

if TYPE_CHECKING:  # pragma: no cover
    from zoo.contract.strategy import DeclaredStrategy

__all__ = [
    "build",
    "chooses",
    "describe",
    "init_head",
    "licence_inputs",
    "make_plan",
    "parent_pins",
    "resolution_notes",
    "settings_of",
    "strategy",
    "validate_plan",
]


def describe(recipe: Recipe) -> tuple[Any, Parent | None]:
    """(BackboneInfo or RegisteredVersion, parent) before the model is built."""
    from zoo.contract.refs import is_joined, parse_ref

    if is_joined(recipe.ref):  # several backbones: zoo/catalog/composite.py
        from zoo.catalog.composite import check_strategy, describe_joined
        from zoo.catalog.index import describe as describe_part

        check_strategy(recipe.strategy, recipe.ref)
        return describe_joined(recipe.ref, recipe.image_size, describe=describe_part), None
    ref = parse_ref(recipe.ref)
    if ref.scheme == "bare":  # a registered NAME or local:NAME, whichever exists
        from zoo.catalog.index import resolve

        ref = resolve(ref)
    if ref.scheme == "models":
        from zoo.registry import get_version

        version = get_version(ref)
        pre = version.preprocessing
        if not pre:
            raise UsageError(f"{version.model_uri} records no preprocessing; cannot fine-tune it")
        base = Preprocessing.from_dict(dict(pre))
        if recipe.image_size:
            size = (base.input_size[0], recipe.image_size, recipe.image_size)
            base = Preprocessing(size, base.mean, base.std, base.interpolation, base.crop_pct)
        return version, Parent(version.model_uri, None, version.license, base)
    from zoo.catalog.index import describe as describe_ref

    return describe_ref(ref), None


def resolution_notes(recipe: Recipe, described: Any) -> list[str]:
    """The lines saying which tag a provider filled in for the reference (or each part of
    a joined one) that was given without one, as `zoo info` says them."""
    from zoo.catalog.composite import CompositeSpec
    from zoo.catalog.index import resolution_note
    from zoo.contract.refs import Ref, parse_refs
    from zoo.contract.types import BackboneInfo

    if isinstance(described, CompositeSpec):
        refs = [b.reference for b in described.branches]  # in the joined reference's order
        pairs: list[tuple[Ref | str, str]] = list(zip(parse_refs(recipe.ref), refs, strict=True))
    elif isinstance(described, BackboneInfo):
        pairs = [(recipe.ref, described.reference)]
    else:  # a registered version: its name is what was asked for
        return []
    return [said for asked, got in pairs if (said := resolution_note(asked, got))]


def licence_inputs(
    recipe: Recipe, described: Any, parent: Parent | None
) -> tuple[Preprocessing, list[tuple[str | None, tuple[Any, ...]]]]:
    """The run's preprocessing, and each parent's licence with its chain (root first):
    what :func:`zoo.licenses.compat.decide_licenses` checks before any data is read."""
    from zoo.catalog.composite import CompositeSpec

    if isinstance(described, CompositeSpec):
        from zoo.licenses.compat import Ancestor

        chains = [(b.license, (Ancestor(b.reference, b.license),)) for b in described.branches]
        return described.preprocessing(), list(chains)
    if parent is None:
        return Preprocessing.from_info(described, recipe.image_size), [(described.license, ())]
    from zoo.registry.lineage import license_chain

    return parent.preprocessing, [(parent.license, license_chain(described))]


def parent_pins(state: Any) -> list[Any]:
    """Every parent of the run, pinned (reference, weights SHA-256, licence), in order.

    The one place the parents' SHA-256 is taken: a provider's backbone carries the hash
    of the weights it loaded (a composite carries one per branch); a registered parent's
    comes from the registry when it registers."""
    from zoo.registry.lineage import Pin

    if state.parent is not None:
        return [Pin(state.parent.reference, None, state.parent.license)]
    info = state.backbone.info
    shas = getattr(state.backbone, "branch_sha256", None)
    if shas is not None:  # several backbones: zoo/catalog/composite.py
        from zoo.catalog.composite import CompositeSpec

        spec = CompositeSpec.from_dict(state.backbone.architecture)
        return [
            Pin(b.reference, None if state.recipe.random_init else sha, b.license)
            for b, sha in zip(spec.branches, shas, strict=True)
        ]
    if state.recipe.random_init:
        return [Pin(info.reference, None, info.license)]
    return [Pin(info.reference, getattr(state.backbone, "weights_sha256", None), info.license)]


def build(recipe: Recipe, described: Any, num_classes: int) -> Any:
    """The backbone with a new head of ``num_classes`` outputs, started near zero."""
    from zoo.catalog.composite import CompositeSpec
    from zoo.catalog.index import provider_for
    from zoo.contract.refs import parse_ref

    if isinstance(described, CompositeSpec):
        from zoo.catalog.composite import build_composite

        composite = build_composite(
            described,
            num_classes=num_classes,
            pretrained=not recipe.random_init,
            provider_for=provider_for,
        )
        init_head(composite)
        return composite
    from zoo.registry.records import RegisteredVersion

    ref = parse_ref(recipe.ref)
    registered = isinstance(described, RegisteredVersion)  # models:/... or a registered NAME
    if not registered:
        from zoo.catalog.build import build_backbone

        # its weights_sha256 is the load path's: the parent's SHA-256 the lineage records
        backbone: Any = build_backbone(
            ref, num_classes=num_classes, pretrained=not recipe.random_init
        )
        init_head(backbone)
        return backbone
    # Fine-tuning a registered version: its base architecture with the new head, then
    # every tensor of the version that fits (all but a head of another width).
    from zoo.registry import load_model

    architecture = described.lineage.get("architecture")
    if architecture and architecture.get("kind") == "multi-backbone":
        from zoo.catalog.composite import build_composite

        spec = CompositeSpec.from_dict(architecture)
        backbone = build_composite(
            spec, num_classes=num_classes, pretrained=False, provider_for=provider_for
        )
    else:
        base_ref = parse_ref(described.base)
        backbone = provider_for(base_ref).build(base_ref, num_classes=num_classes, pretrained=False)
    parent_model, _ = load_model(described.model_uri)  # the version described, pinned
    parent_model = _plain(parent_model)
    own = backbone.model.state_dict()
    fitting = {
        k: v for k, v in parent_model.state_dict().items() if k in own and own[k].shape == v.shape
    }
    if any(k not in fitting for k in own):
        init_head(backbone)  # the parent's head has another width: a new one
    backbone.model.load_state_dict(fitting, strict=False)
    return backbone


def _plain(model: Any) -> Any:
    """A registered multi-stage probe continues from its backbone (its probe head reads
    features this architecture's head does not: a new head starts)."""
    from zoo.catalog.heads import StageProbe

    return model.backbone if isinstance(model, StageProbe) else model


def init_head(backbone: Any) -> None:
    """Start a new head near zero (weights N(0, 0.01), bias 0), as linear probes do.

    Providers initialise heads for training from scratch (timm's EfficientNet head is
    uniform in +-0.35): on pretrained features that gives large random logits that the
    first epochs must undo, and measurably hurts short runs.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in backbone.stages()[-1][1].modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.01)
                if module.bias is not None:
                    module.bias.zero_()


def strategy(name: str) -> tuple[DeclaredStrategy, dict[str, Any]]:
    """The strategy object and the plugin that provides it (for the lineage)."""
    from zoo.contract.plugins import get_plugin_manager

    pm = get_plugin_manager()
    strategies = pm.strategies()
    if name not in strategies:
        known = ", ".join(sorted(strategies)) or "none installed"
        failed = sorted(p.name for p in pm.failures)
        why = f"; plugins that failed to load: {', '.join(failed)}" if failed else ""
        see = "zoo plugins" if failed else "zoo strategies"
        raise UsageError(f"no strategy '{name}' (known: {known}{why}); see `{see}`")
    owner = pm.owner("strategy", name)
    plugin = pm.plugins.get(owner) if owner else None
    return strategies[name], {
        "plugin": owner,
        "distribution": plugin.distribution if plugin else None,
        "version": plugin.version if plugin else None,
    }


def settings_of(recipe: Recipe) -> StrategySettings:
    """What the user asked the strategy for."""
    return StrategySettings(
        unfreeze=recipe.unfreeze,
        epochs=recipe.epochs,
        lr=recipe.lr,
        options=dict(recipe.strategy_settings),
    )


def chooses(strategy_obj: DeclaredStrategy) -> bool:
    """A choosing strategy (auto) offers candidates; the search (search.py) plans it."""
    return strategy_obj.extras.candidates


def make_plan(
    strategy_obj: DeclaredStrategy, recipe: Recipe, names: Sequence[str], summary: TrainingSummary
) -> TrainingPlan:
    """The strategy's plan (given the training summary where it asks for one), validated.
    A choosing strategy's plan comes from the search instead (setup.py)."""
    plan = strategy_obj.plan(names, settings_of(recipe), summary=summary)  # if it takes one
    validate_plan(plan, names, recipe.strategy)
    from zoo.contract.refs import is_joined

    if is_joined(recipe.ref) and not all(p.head_on_features for p in plan.phases):
        raise UsageError(
            f"strategy '{recipe.strategy}' chose to train backbone weights, but "
            f"'{recipe.ref}' joins several frozen backbones: use --strategy linear-probe"
        )
    return plan


def validate_plan(plan: Any, names: Sequence[str], strategy_name: str) -> None:
    """Refuse a plan the engine cannot run as written, naming the phase and the field."""

    def bad(where: str, what: str) -> UsageError:
        return UsageError(f"strategy '{strategy_name}' made an invalid plan: {where}: {what}")

    if not isinstance(plan, TrainingPlan) or not plan.phases:
        raise bad("plan", "plan() must return a TrainingPlan with at least one phase")
    head = len(names) - 1
    for phase in plan.phases:
        where = f"phase '{phase.name}'"
        if phase.epochs < 1:
            raise bad(where, f"epochs must be at least 1, got {phase.epochs}")
        if not (isinstance(phase.lr, (int, float)) and math.isfinite(phase.lr) and phase.lr > 0):
            raise bad(where, f"lr must be a positive number, got {phase.lr!r}")
        if not phase.trainable or any(not epoch for epoch in phase.trainable):
            raise bad(where, "trainable must list at least one stage for every epoch")
        used = {i for epoch in phase.trainable for i in epoch} | set(phase.reinit)
        used |= set(phase.lr_scale)
        outside = sorted(i for i in used if not 0 <= i <= head)
        if outside:
            raise bad(where, f"stage index {outside[0]} is outside 0..{head}")
        if phase.head_on_features:
            others = sorted({i for epoch in phase.trainable for i in epoch} - {head})
            if others:
                raise bad(
                    where,
                    f"head_on_features trains only the head, but trainable also names "
                    f"{names[others[0]]}",
                )
            if phase.augment:
                raise bad(
                    where, "head_on_features trains on cached features: augment must be False"
                )
            if phase.reinit:
                raise bad(where, "head_on_features trains on cached features: reinit must be empty")
        _check_features(phase, f"strategy '{strategy_name}' made an invalid plan: {where}")
    if any(p.features == "stages" for p in plan.phases[:-1]):
        raise bad(
            "plan",
            "a phase with features='stages' makes the model the multi-stage probe: it must "
            "be the plan's last phase",
        )


def _check_features(phase: Any, where: str) -> None:
    """``Phase.features``: "head" (the classifier's input) or "stages" (every stage's);
    ``Phase.fit``: "passes" or "lbfgs" (one fit on cached features)."""
    features = getattr(phase, "features", "head")
    if features not in ("head", "stages"):
        raise UsageError(f"{where}: features must be 'head' or 'stages', got {features!r}")
    if features == "stages" and not phase.head_on_features:
        raise UsageError(
            f"{where}: features='stages' trains a head on cached stage features: "
            "head_on_features must be True"
        )
    fit = getattr(phase, "fit", "passes")
    if fit not in ("passes", "lbfgs"):
        raise UsageError(f"{where}: fit must be 'passes' or 'lbfgs', got {fit!r}")
    if fit == "lbfgs" and (not phase.head_on_features or phase.epochs != 1):
        raise UsageError(
            f"{where}: fit='lbfgs' fits a head on cached features to convergence: "
            "head_on_features must be True and epochs 1"
        )
