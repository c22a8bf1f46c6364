"""lora and bitfit refuse settings they cannot use, in one line naming the setting, the
value and what is allowed, before zoo reads any data (zoo asks the plan first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo import StrategySettings, UsageError

STAGES = ["stem", "blocks", "head"]

CASES = [
    ("lora", {"r": 0}, ("lora setting r", "0", "1 to 1024")),
    ("lora", {"r": -4}, ("lora setting r", "-4")),
    ("lora", {"r": "eight"}, ("lora setting r", "'eight'")),
    ("lora", {"r": True}, ("lora setting r", "True")),
    ("lora", {"alpha": float("nan")}, ("lora setting alpha", "nan", "positive finite")),
    ("lora", {"alpha": 0}, ("lora setting alpha", "0")),
    ("lora", {"dropout": 2}, ("lora setting dropout", "2", "[0, 1)")),
    ("lora", {"targets": "qkv"}, ("lora setting targets", "'qkv'")),
    ("lora", {"rank": 8}, ("lora has no setting 'rank'", "r, alpha, dropout")),
    ("bitfit", {"lr_bias": 1}, ("bitfit has no setting 'lr_bias'", "augment")),
    ("bitfit", {"r": 8}, ("bitfit has no setting 'r'",)),
]


def _strategy(name: str):  # type: ignore[no-untyped-def]
    from zoo.contract.plugins import get_plugin_manager

    return get_plugin_manager().strategies()[name]


@pytest.mark.parametrize(("name", "options", "words"), CASES, ids=[str(c[:2]) for c in CASES])
def test_a_bad_setting_is_refused_by_the_plan(name: str, options: dict, words: tuple) -> None:
    with pytest.raises(UsageError) as err:
        _strategy(name).plan(STAGES, StrategySettings(options=options))
    for word in words:
        assert word in str(err.value), str(err.value)


def test_good_settings_still_plan() -> None:
    plan = _strategy("lora").plan(
        STAGES, StrategySettings(options={"r": 4, "alpha": 8.5, "dropout": 0.1, "targets": ["qkv"]})
    )
    assert plan.settings["r"] == 4 and plan.settings["alpha"] == 8.5
    assert _strategy("bitfit").plan(STAGES, StrategySettings(options={"augment": True}))


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("lora", "r: 0", ("lora setting r: 0",)),
        ("lora", "alpha: .nan", ("lora setting alpha: nan",)),
        ("lora", "r: eight", ("lora setting r: 'eight'",)),
        ("bitfit", "unknown: 1", ("bitfit has no setting 'unknown'",)),
    ],
)
def test_the_cli_refuses_before_reading_the_data(
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    words: tuple,
) -> None:
    from zoo.cli import run

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"strategy: {name}\nstrategy_settings:\n  {text}\n", encoding="utf-8")
    capsys.readouterr()
    code = run(["finetune", "timm:test_vit", str(images), "--random-init", "--config", str(recipe)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "checking images" not in err and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("zoo: error:")]
    for word in words:
        assert word in line, line
