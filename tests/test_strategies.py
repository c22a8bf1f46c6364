"""Each strategy trains what it promises, on a tiny real model (timm test_resnet).

Frozen stages' parameters and BatchNorm statistics are bit-identical after training,
trainable ones changed, and the optimizer's parameter groups carry the learning rates the
strategy's plan promised.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.finetune_helpers import make_images, stage_of
from zoo import StrategySettings, UsageError
from zoo.contract.plugins import get_plugin_manager
from zoo.engine import Callback, Recipe, finetune

REF = "timm:test_resnet"
NAMES = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("strategies") / "data", classes=3, per_class=8)


class Recorder(Callback):
    """What the optimizer really held when each phase started, and the weights then
    (after the engine's head initialisation and any re-initialisation)."""

    def __init__(self) -> None:
        self.groups: list[dict[str, float]] = []
        self.stages: list[set[int]] = []
        self.start: dict[str, torch.Tensor] | None = None

    def on_phase_start(self, state, phase_index, optimizer) -> None:
        self.groups.append({g["name"]: g["initial_lr"] for g in optimizer.param_groups})
        self.stages.append({g["stage"] for g in optimizer.param_groups})
        if self.start is None or state.plan.phases[phase_index].reinit:
            self.start = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


class Untrained(Callback):
    """A deliberately broken engine: every epoch's updates are undone."""

    def on_phase_start(self, state, phase_index, optimizer) -> None:
        self.start = {k: v.detach().clone() for k, v in state.model.state_dict().items()}

    def on_epoch_end(self, state, record) -> None:
        state.model.load_state_dict(self.start)


class WrongRates(Callback):
    """A deliberately broken engine: the optimizer's rates are not the plan's."""

    def on_phase_start(self, state, phase_index, optimizer) -> None:
        for group in optimizer.param_groups:
            group["initial_lr"] *= 0.5


def _train(images: Path, strategy: str, *, broken: Callback | None = None, **kw):
    recorder = Recorder()
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
    callbacks = [broken, recorder] if broken is not None else [recorder]
    result = finetune(recipe, register=False, callbacks=callbacks)
    assert recorder.start is not None
    # the last epoch's weights (the registered best epoch may precede a gradual unfreeze)
    after = torch.load(Path(result.run_dir) / "final.pt", weights_only=True)["model"]
    changed: dict[int, set[bool]] = {}
    for key, value in recorder.start.items():
        if key.endswith("num_batches_tracked"):
            continue
        stage = stage_of(result.backbone, key)
        changed.setdefault(stage, set()).add(not torch.equal(value, after[key]))
    return result, changed, recorder


def _frozen(changed: dict[int, set[bool]], stages: range | list[int]) -> None:
    for i in stages:
        assert changed[i] == {False}, f"stage {NAMES[i]} changed but should be frozen"


def _trained(changed: dict[int, set[bool]], stages: range | list[int]) -> None:
    for i in stages:
        assert True in changed[i], f"stage {NAMES[i]} did not change but should train"


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
    result, changed, rec = _train(images, "linear-probe", epochs=20, lr=1e-2)
    _frozen(changed, range(0, 5))
    _trained(changed, [5])
    assert rec.groups == [{"head": 1e-2, "head.no_decay": 1e-2}]
    assert result.plan["phases"][0]["head_on_features"] is True
    cache = list((Path(result.run_dir).parents[1] / "features").glob("*/rows.json"))
    assert len(cache) == 1  # features extracted once, stored under the zoo home


def test_partial_trains_the_last_k_stages_and_the_head(images: Path) -> None:
    _, changed, rec = _train(images, "partial", unfreeze=2, epochs=2, lr=3e-3)
    _frozen(changed, range(0, 3))
    _trained(changed, [3, 4, 5])
    assert set(rec.groups[0].values()) == {3e-3}
    assert rec.stages == [{3, 4, 5}]


def test_full_trains_every_stage(images: Path) -> None:
    _, changed, rec = _train(images, "full", epochs=2, lr=1e-3)
    _trained(changed, range(0, 6))
    assert rec.stages == [set(range(6))]
    assert set(rec.groups[0].values()) == {1e-3}


def test_lp_ft_probes_then_fine_tunes_from_the_probe_head(images: Path) -> None:
    result, changed, rec = _train(
        images,
        "lp-ft",
        unfreeze=1,
        epochs=2,
        lr=2e-3,
        strategy_settings={"probe_epochs": 10, "probe_lr": 1e-2},
    )
    _frozen(changed, range(0, 4))
    _trained(changed, [4, 5])
    probe, tune = rec.groups
    assert probe == {"head": 1e-2, "head.no_decay": 1e-2}
    assert rec.stages[1] == {4, 5}
    assert set(tune.values()) == {2e-3}
    assert [h["phase"] for h in result.history] == ["probe", "finetune", "finetune"]


def test_layer_decay_puts_per_stage_rates_on_the_optimizer_groups(images: Path) -> None:
    _, changed, rec = _train(
        images, "layer-decay", epochs=1, lr=1e-3, strategy_settings={"decay": 0.5}
    )
    _trained(changed, range(0, 6))
    lrs = {NAMES.index(name.removesuffix(".no_decay")): lr for name, lr in rec.groups[0].items()}
    for stage, lr in lrs.items():
        assert lr == pytest.approx(1e-3 * 0.5 ** (5 - stage)), NAMES[stage]
    assert lrs[0] == pytest.approx(1e-3 / 32)


def test_gradual_unfreezes_one_stage_per_epoch_from_the_top(images: Path) -> None:
    result, changed, rec = _train(images, "gradual", epochs=3, lr=1e-3)
    # epoch 1: head; epoch 2: + layer4; epoch 3: + layer3. stem..layer2 never train.
    _frozen(changed, range(0, 3))
    _trained(changed, [3, 4, 5])
    phase = result.plan["phases"][0]
    assert phase["trainable"][:3] == [["head"], ["layer4", "head"], ["layer3", "layer4", "head"]]
    assert rec.stages[0] >= {3, 4, 5}


def test_early_layers_keeps_the_first_stages_and_retrains_the_rest(images: Path) -> None:
    result, changed, _ = _train(
        images, "early-layers", epochs=1, lr=1e-3, strategy_settings={"keep": 2}
    )
    _frozen(changed, [0, 1])
    _trained(changed, [2, 3, 4, 5])  # compared with the re-initialised weights: trained
    assert result.plan["phases"][0]["reinit"] == ["layer2", "layer3", "layer4"]


@pytest.mark.parametrize("strategy", ["linear-probe", "early-layers"])
def test_the_trained_assertion_fails_when_the_engine_trains_nothing(
    images: Path, strategy: str
) -> None:
    _, changed, _ = _train(images, strategy, epochs=1, lr=1e-2, broken=Untrained())
    with pytest.raises(AssertionError, match="did not change but should train"):
        _trained(changed, [len(NAMES) - 1] if strategy == "linear-probe" else [2, 3, 4])


def test_the_rate_assertion_reads_the_optimizer_not_the_plan(images: Path) -> None:
    result, _, rec = _train(images, "partial", unfreeze=1, epochs=1, lr=3e-3, broken=WrongRates())
    assert result.plan["phases"][0]["lr"] == 3e-3  # the plan still says 3e-3 ...
    assert set(rec.groups[0].values()) == {1.5e-3}  # ... but the optimizer held another


def test_out_of_range_unfreeze_is_a_usage_error() -> None:
    partial = get_plugin_manager().strategies()["partial"]
    with pytest.raises(UsageError, match="--unfreeze 9 is out of range"):
        partial.plan(NAMES, StrategySettings(unfreeze=9))
