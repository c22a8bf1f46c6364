"""Each strategy trains what it promises, on a tiny real model (timm test_resnet).

Frozen stages' parameters and BatchNorm statistics are bit-identical after training,
trainable ones changed, and the optimizer's parameter groups carry the learning rates the
strategy's plan promised.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.finetune_helpers import initial_state, make_images, stage_of
from zoo import StrategySettings, UsageError
from zoo.engine import Recipe, finetune
from zoo.plugins import get_plugin_manager

REF = "timm:test_resnet"
NAMES = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("strategies") / "data", classes=3, per_class=8)


def _train(images: Path, strategy: str, **kw):
    recipe = Recipe(
        ref=REF,
        data=str(images),
        strategy=strategy,
        random_init=True,
        image_size=32,
        batch_size=8,
        workers=0,
        val_split=0.25,
        precision="fp32",
        **kw,
    )
    result = finetune(recipe, register=False)
    before = initial_state(REF, 3)
    # the last epoch's weights (the registered best epoch may precede a gradual unfreeze)
    after = torch.load(Path(result.run_dir) / "final.pt", weights_only=True)["model"]
    changed: dict[int, set[bool]] = {}
    for key, value in before.items():
        if key.endswith("num_batches_tracked"):
            continue
        stage = stage_of(result.backbone, key)
        changed.setdefault(stage, set()).add(not torch.equal(value, after[key]))
    return result, changed


def _frozen(changed: dict[int, set[bool]], stages: range | list[int]) -> None:
    for i in stages:
        assert changed[i] == {False}, f"stage {NAMES[i]} changed but should be frozen"


def _trained(changed: dict[int, set[bool]], stages: range | list[int]) -> None:
    for i in stages:
        assert True in changed[i], f"stage {NAMES[i]} did not change but should train"


def _group_lrs(result, phase: int = -1) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in result.optimizer_groups[phase]}


def test_all_core_strategies_are_registered_through_the_hook() -> None:
    strategies = get_plugin_manager().strategies()
    expected = {
        "linear-probe",
        "partial",
        "full",
        "lp-ft",
        "layer-decay",
        "gradual",
        "early-layers",
    }
    assert expected <= set(strategies)
    pm = get_plugin_manager()
    assert {pm.owner("strategy", n) for n in expected} == {"strategies"}


def test_linear_probe_trains_only_the_head_on_cached_features(images: Path) -> None:
    result, changed = _train(images, "linear-probe", epochs=20, lr=1e-2)
    _frozen(changed, range(0, 5))
    _trained(changed, [5])
    assert _group_lrs(result) == {"head": 1e-2, "head.no_decay": 1e-2}
    assert result.plan["phases"][0]["head_on_features"] is True
    cache = list((Path(result.run_dir).parents[1] / "features").glob("*.safetensors"))
    assert len(cache) == 1  # features extracted once, stored under the zoo home


def test_partial_trains_the_last_k_stages_and_the_head(images: Path) -> None:
    result, changed = _train(images, "partial", unfreeze=2, epochs=2, lr=3e-3)
    _frozen(changed, range(0, 3))
    _trained(changed, [3, 4, 5])
    assert set(_group_lrs(result).values()) == {3e-3}
    assert {g["stage"] for g in result.optimizer_groups[0]} == {3, 4, 5}


def test_full_trains_every_stage(images: Path) -> None:
    result, changed = _train(images, "full", epochs=2, lr=1e-3)
    _trained(changed, range(0, 6))
    assert {g["stage"] for g in result.optimizer_groups[0]} == set(range(6))


def test_lp_ft_probes_then_fine_tunes_from_the_probe_head(images: Path) -> None:
    result, changed = _train(
        images,
        "lp-ft",
        unfreeze=1,
        epochs=2,
        lr=2e-3,
        strategy_settings={"probe_epochs": 10, "probe_lr": 1e-2},
    )
    _frozen(changed, range(0, 4))
    _trained(changed, [4, 5])
    probe, tune = result.optimizer_groups
    assert {g["name"]: g["lr"] for g in probe} == {"head": 1e-2, "head.no_decay": 1e-2}
    assert {g["stage"] for g in tune} == {4, 5}
    assert {g["lr"] for g in tune} == {2e-3}
    assert [h["phase"] for h in result.history] == ["probe", "finetune", "finetune"]


def test_layer_decay_puts_per_stage_rates_on_the_optimizer_groups(images: Path) -> None:
    result, changed = _train(
        images, "layer-decay", epochs=1, lr=1e-3, strategy_settings={"decay": 0.5}
    )
    _trained(changed, range(0, 6))
    lrs = {g["stage"]: g["lr"] for g in result.optimizer_groups[0]}
    for stage, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * 0.5 ** (5 - stage)), NAMES[stage]
    assert lrs[0] == pytest.approx(1e-3 / 32)


def test_gradual_unfreezes_one_stage_per_epoch_from_the_top(images: Path) -> None:
    result, changed = _train(images, "gradual", epochs=3, lr=1e-3)
    # epoch 1: head; epoch 2: + layer4; epoch 3: + layer3. stem..layer2 never train.
    _frozen(changed, range(0, 3))
    _trained(changed, [3, 4, 5])
    phase = result.plan["phases"][0]
    assert phase["trainable"][:3] == [["head"], ["layer4", "head"], ["layer3", "layer4", "head"]]
    assert {g["stage"] for g in result.optimizer_groups[0]} >= {3, 4, 5}


def test_early_layers_keeps_the_first_stages_and_retrains_the_rest(images: Path) -> None:
    result, changed = _train(
        images, "early-layers", epochs=1, lr=1e-3, strategy_settings={"keep": 2}
    )
    _frozen(changed, [0, 1])
    _trained(changed, [2, 3, 4, 5])
    assert result.plan["phases"][0]["reinit"] == ["layer2", "layer3", "layer4"]


def test_out_of_range_unfreeze_is_a_usage_error() -> None:
    partial = get_plugin_manager().strategies()["partial"]
    with pytest.raises(UsageError, match="--unfreeze 9 is out of range"):
        partial.plan(NAMES, StrategySettings(unfreeze=9))
