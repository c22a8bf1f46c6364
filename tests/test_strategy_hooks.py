"""The optional strategy hooks of plugin API 2 (docs/strategies.md): a summary of the
training split when planning, prepare_model before each phase's optimizer, and
finalize_model before registration. A strategy without them behaves as before (every
test in tests/test_strategies.py uses such strategies)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zoo
from tests.finetune_helpers import make_images
from zoo import Phase, TrainingPlan
from zoo.contract.plugins import get_plugin_manager
from zoo.engine import Callback, Recipe, finetune

FAST = {"random_init": True, "image_size": 32, "batch_size": 8, "workers": 0, "precision": "fp32"}


class Observer:
    """Plans on the summary; trains only the head's bias; scales the head at the end."""

    name = "observer"
    summary = "a test strategy that uses every optional hook"

    def __init__(self) -> None:
        self.seen: dict[str, object] = {}

    def plan(self, stages, settings, summary):
        x, y = summary.features()
        mid_x, mid_y = summary.features(stages[2])
        self.seen.update(
            counts=dict(summary.class_counts),
            num_train=summary.num_train,
            input_size=summary.input_size,
            features=(tuple(x.shape), tuple(y.tolist())),
            mid=(tuple(mid_x.shape), len(mid_y)),
        )
        head = len(stages) - 1
        return TrainingPlan(self.name, (Phase("bias", 2, 1e-2, ((head,),), augment=False),))

    def prepare_model(self, model, stages, phase, plan):
        head = stages[-1][1]
        return [p for name, p in head.named_parameters() if name.endswith("bias")]

    def finalize_model(self, model):
        self.seen["finalized"] = True
        return model


@pytest.fixture
def observer():
    strategy = Observer()

    class Plugin:
        @staticmethod
        @zoo.hookimpl
        def register_strategies(register) -> None:
            register(strategy)

    pm = get_plugin_manager()
    pm.register(Plugin, "test-observer")
    try:
        yield strategy
    finally:
        pm.unregister("test-observer")


class Groups(Callback):
    def on_phase_start(self, state, phase_index, optimizer) -> None:
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.start = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


def test_the_summary_holds_the_training_split_only(observer: Observer, tmp_path: Path) -> None:
    data = make_images(tmp_path / "data", classes=3, per_class=8)
    result = finetune(
        Recipe(
            ref="timm:test_resnet",
            data=str(data),
            strategy="observer",
            val_split=0.25,
            test_split=0.25,
            **FAST,
        ),
        register=False,
    )
    n_train = int(result.metrics["num_train"])
    assert n_train == 12 and observer.seen["num_train"] == n_train
    assert observer.seen["counts"] == {"class0": 4, "class1": 4, "class2": 4}
    assert observer.seen["input_size"] == (3, 32, 32)
    shape, labels = observer.seen["features"]
    assert shape[0] == n_train and sorted(labels) == [0] * 4 + [1] * 4 + [2] * 4
    assert observer.seen["mid"][0][0] == n_train and observer.seen["mid"][1] == n_train


def test_prepare_model_chooses_what_trains_and_finalize_runs(
    observer: Observer, tmp_path: Path
) -> None:
    data = make_images(tmp_path / "data", classes=2, per_class=6)
    groups = Groups()
    result = finetune(
        Recipe(ref="timm:test_resnet", data=str(data), strategy="observer", **FAST),
        register=False,
        callbacks=[groups],
    )
    head = result.backbone.stages()[-1][1]
    bias = [p for name, p in head.named_parameters() if name.endswith("bias")]
    assert len(groups.params) == len(bias) and all(any(p is q for q in bias) for p in groups.params)
    after = torch.load(Path(result.run_dir) / "final.pt", weights_only=True)["model"]
    changed = {k for k, v in groups.start.items() if not torch.equal(v, after[k])}
    assert changed and all(k.endswith("bias") for k in changed), changed
    assert observer.seen.get("finalized") is True


def test_the_registry_knows_which_optional_members_a_strategy_declares(
    observer: Observer,
) -> None:
    from zoo.contract.strategy import StrategyExtras

    strategies = get_plugin_manager().strategies()
    assert strategies["observer"].extras == StrategyExtras(
        plan_summary=True, prepare_model=True, finalize_model=True, candidates=False
    )
    assert strategies["auto"].extras.candidates and strategies["auto"].extras.plan_summary
    plain = strategies["linear-probe"]
    assert plain.extras == StrategyExtras()
    model = torch.nn.Linear(2, 2)  # without the members, zoo's own behaviour
    assert plain.prepare_model(model, [], None, None) is None
    assert plain.finalize_model(model) is model


class WrongPrepare:
    name = "wrong-prepare"
    summary = "prepare_model takes the wrong arguments"

    def plan(self, stages, settings):
        return TrainingPlan(self.name, (Phase("head", 1, 1e-3, ((len(stages) - 1,),)),))

    def prepare_model(self, model):  # zoo passes (model, stages, phase, plan)
        return None


class WrongPlan:
    name = "wrong-plan"
    summary = "plan takes a third argument zoo does not pass"

    def plan(self, stages, settings, budget):
        return TrainingPlan(self.name, (Phase("head", 1, 1e-3, ((len(stages) - 1,),)),))


@pytest.mark.parametrize(
    ("strategy", "member", "wanted"),
    [
        (WrongPrepare, "optional `prepare_model`", "(model, stages, phase, plan)"),
        (WrongPlan, "`plan`", "(stages, settings)"),
    ],
)
def test_a_member_with_the_wrong_signature_is_refused_at_registration(
    strategy, member: str, wanted: str
) -> None:
    class Plugin:
        @staticmethod
        @zoo.hookimpl
        def register_strategies(register) -> None:
            register(strategy())

    pm = get_plugin_manager()
    pm.register(Plugin, "test-wrong")
    try:
        assert strategy.name not in pm.strategies()
        error = pm.plugins["test-wrong"].error
        assert error is not None and "\n" not in error
        assert f"registered strategy '{strategy.name}' whose {member} is not a callable " in error
        assert f"taking {wanted}" in error and "register_strategies.md" in error
    finally:
        pm.unregister("test-wrong")
