"""Test helpers for plugin authors: zoo's contract checks, a tiny backbone, tiny images.

    from zoo.testing import check_provider, check_strategy, check_exporter

    def test_my_provider_honours_the_contract(zoo_tmp_home):
        check_provider(MyProvider())

The fixtures ``zoo_tmp_home``, ``tiny_backbone`` and ``tiny_image_folder`` come from zoo's
pytest plugin (entry point ``pytest11``), active wherever transfer-zoo is installed; none
is autouse. docs/plugins/testing.md. Importing this module imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.checks import check_backbone, check_registration, grammar_of
from zoo.contract.errors import NotFoundError
from zoo.contract.refs import GENERIC, Ref, parse_ref
from zoo.contract.types import BackboneInfo, ExportResult, StrategySettings, TrainingPlan

if TYPE_CHECKING:  # pragma: no cover
    from zoo.catalog.backbone import ModuleBackbone

__all__ = [
    "UNDER_TEST",
    "check_exporter",
    "check_provider",
    "check_strategy",
    "make_image_folder",
    "tiny_backbone",
]

UNDER_TEST = "under-test"  # the plugin name contract errors carry in these checks


def tiny_backbone(num_classes: int = 3, *, seed: int = 0) -> ModuleBackbone:
    """A 3-stage convolutional classifier on 3x32x32 inputs (stem, block, head)."""
    from zoo.testing.models import tiny_backbone as build

    return build(num_classes=num_classes, seed=seed)


def make_image_folder(
    root: Path,
    classes: Sequence[str] = ("circle", "square"),
    per_class: int = 4,
    size: int = 32,
    *,
    seed: int = 0,
) -> Path:
    """CLASS/IMAGE.png folders of small, distinct, deterministic images; returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.zeros((size, size, 3), dtype=np.float64)
        base[..., c % 3] = 200.0
        for i in range(per_class):
            noise = rng.normal(0.0, 25.0, size=(size, size, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}-{i}.png")
    return root


# ------------------------------------------------------------------------ contract checks


def check_provider(
    provider: Any, refs: Sequence[str] | None = None, *, build: bool = True
) -> list[BackboneInfo]:
    """What zoo checks at registration, then index/describe/build as zoo calls them.

    ``refs``: references to describe and build (default: the index's first entry), parsed
    with the provider's own ``grammar`` as are the index's references (installed or not).
    Builds use ``pretrained=False`` so that nothing is downloaded; returns the index.
    """
    name = check_registration("provider", UNDER_TEST, provider)
    grammars = {name: grammar_of(provider) or GENERIC}
    version = provider.version()
    assert isinstance(version, str) and version, "version() must return a non-empty string"
    entries = list(provider.index())
    assert entries, "index() lists nothing: list at least one backbone"
    for entry in entries:
        assert isinstance(entry, BackboneInfo), f"index() yielded {entry!r}, not a BackboneInfo"
        assert entry.provider == name, f"{entry.reference}: provider is not '{name}'"
        ref = parse_ref(entry.reference, grammars=grammars)  # in the provider's grammar
        assert ref.scheme == name, f"{entry.reference} is not {name}:..."
        assert entry.license, f"{entry.reference}: no licence (use 'unknown' when unknown)"
        json.dumps(entry.to_dict())
    try:
        provider.describe(Ref(name, "no-such-model-anywhere"))
    except NotFoundError:
        pass
    else:
        raise AssertionError("describe() of an unknown name must raise zoo.UnknownModelError")
    for text in refs or [entries[0].reference]:
        ref = parse_ref(text, grammars=grammars)
        info = provider.describe(ref)
        assert isinstance(info, BackboneInfo) and info.reference.startswith(f"{name}:")
        if build:
            _check_build(provider, ref, info)
    return entries


def _check_build(provider: Any, ref: Ref, info: BackboneInfo) -> None:
    import torch

    backbone = provider.build(ref, num_classes=3, pretrained=False)
    check_backbone(UNDER_TEST, provider.name, ref, backbone)
    size = backbone.info.input_size or info.input_size or (3, 32, 32)
    backbone.model.eval()
    with torch.no_grad():
        logits = backbone.model(torch.randn(2, *size))
    assert tuple(logits.shape) == (2, 3), f"a 3-class build gave logits of {tuple(logits.shape)}"


def check_strategy(
    strategy: Any, backbone: Any = None, settings: StrategySettings | None = None
) -> TrainingPlan:
    """Registration checks, then ``plan`` on ``backbone``'s stages (default: the tiny one)."""
    name = check_registration("strategy", UNDER_TEST, strategy)
    backbone = backbone if backbone is not None else tiny_backbone()
    stages = [n for n, _ in backbone.stages()]
    plan = strategy.plan(stages, settings or StrategySettings(epochs=2, lr=1e-3))
    assert isinstance(plan, TrainingPlan), f"plan() returned {plan!r}, not a zoo.TrainingPlan"
    assert plan.strategy == name, f"plan.strategy is '{plan.strategy}', not '{name}'"
    assert plan.phases, "the plan has no phases"
    for phase in plan.phases:
        assert phase.epochs >= 1 and phase.lr > 0, f"phase '{phase.name}': epochs/lr"
        assert phase.trainable, f"phase '{phase.name}' says nothing about what trains"
        for epoch in phase.trainable:
            bad = [i for i in epoch if not 0 <= i < len(stages)]
            assert not bad, f"phase '{phase.name}' trains stages {bad} of {len(stages)}"
    json.dumps(dict(plan.settings))  # goes into the lineage record
    return plan


def check_exporter(exporter: Any, out_dir: Path, backbone: Any = None) -> ExportResult:
    """Registration checks, an export of ``backbone`` (default: tiny) into ``out_dir`` at
    the exporter's first precision, and — when it has one — its ``zoo predict`` runtime
    against the eager model."""
    import numpy as np
    import torch

    from zoo.contract.types import CheckSet, ExportOptions

    name = check_registration("exporter", UNDER_TEST, exporter)
    backbone = backbone if backbone is not None else tiny_backbone()
    module = backbone.model.eval()
    size = backbone.info.input_size or (3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(7, *size, generator=gen)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = ExportOptions(
        out_dir=str(out_dir),
        check=CheckSet(images=images),
        precision=exporter.precisions[0],
        benchmark=False,
    )
    result = exporter.export(module, images[:2].clone(), options)
    assert isinstance(result, ExportResult), f"export() returned {result!r}"
    artifact = Path(result.path)
    assert artifact.is_file(), f"export() names {artifact}, which does not exist"
    assert out_dir.resolve() in artifact.resolve().parents, "write the artifact into out_dir"
    assert result.format == name and result.precision in exporter.precisions
    json.dumps(dict(result.report))
    json.dumps(dict(result.metrics))
    for extra in result.files.values():
        assert Path(extra).is_file(), f"export() lists extra file {extra}, which does not exist"
    lines = getattr(exporter, "report_lines", None)
    if lines is not None:
        assert all(isinstance(line, str) for line in lines(result))
    opener = getattr(exporter, "open", None)
    if opener is not None:
        runtime = opener(artifact, provider="cpu")
        got = np.asarray(runtime.run(images.numpy()))
        with torch.no_grad():
            want = module(images).numpy()
        assert got.shape == want.shape, f"runtime gave {got.shape}, the model {want.shape}"
        assert np.allclose(got, want, atol=1e-4, rtol=1e-3), "runtime disagrees with the model"
    return result
