"""Options refused at the command line, round two (issue 21): each bad value is one line
naming the option (or the recipe file and key) with the value's repr, the documented exit
code, no traceback, nothing written under ZOO_HOME, and no data read (the image check
never starts: its "checking images" line is missing and the home stays empty)."""

from __future__ import annotations

from pathlib import Path

import pytest

BASE = ["--random-init", "--epochs", "1", "--image-size", "32"]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    from finetune_helpers import make_images

    return make_images(tmp_path / "data", classes=2, per_class=4, size=(32, 32))


def _written(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")) if home.exists() else []


def _refused(
    argv: list[str], capsys: pytest.CaptureFixture[str], home: Path, code: int, *words: str
) -> str:
    from zoo.cli import run

    capsys.readouterr()
    got = run(argv)
    err = capsys.readouterr().err
    assert got == code, (got, err[-3000:])
    assert "checking images" not in err, err[-3000:]  # refused before the data was read
    assert _written(home) == [], _written(home)
    return expect_error_line(err, words)


def expect_error_line(err: str, words: tuple[str, ...]) -> str:
    assert "Traceback" not in err, err[-3000:]
    (line,) = [x for x in err.splitlines() if x.startswith("zoo: error:")]
    assert "unexpected" not in line, line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    return line


FINETUNE_CASES = [
    (["--seed", "-1"], ("'--seed'", "-1")),
    (["--seed", str(2**32)], ("'--seed'", "4294967296")),
    (["--epochs", "99999999999999999999"], ("'--epochs'", "100000")),
    (["--lr", "1e400"], ("'--lr'", "positive finite")),
    (["--val-split", "nan"], ("'--val-split'", "nan")),
    (["--unfreeze", "2", "--strategy", "linear-probe"], ("--unfreeze 2", "'linear-probe'")),
    (["--unfreeze", "-1", "--strategy", "partial"], ("'--unfreeze'", "-1")),
    (["--license", ""], ("'--license'", "''", "empty")),
    (["--license", "  "], ("'--license'", "empty")),
    (["--license-override", ""], ("'--license-override'", "empty")),
    (["--name", "a/b"], ("'--name'", "'a/b'", "letters, digits")),
    (["--name", "a\nb"], ("'a\\nb'", "control character")),
    (["--name", "x\x1b[31m"], ("control character", "'\\x1b'")),
    (["--nproc-per-node", "2", "--batch-size", "2"], ("--batch-size 2", "BatchNorm")),
    (["--nproc-per-node", "0"], ("'--nproc-per-node'",)),
]


@pytest.mark.parametrize(
    ("extra", "words"),
    FINETUNE_CASES,
    ids=[" ".join(c[0]).replace("\n", "NL") for c in FINETUNE_CASES],
)
def test_bad_finetune_option_is_refused_before_the_data_is_read(
    data: Path,
    zoo_home: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: tuple[str, ...],
) -> None:
    _refused(
        ["finetune", "timm:test_resnet", str(data), *BASE, *extra], capsys, zoo_home, 2, *words
    )


RECIPE_CASES = [
    ("lr: abc\n", ("recipe.yaml", "'lr'", "'abc'")),
    ("epochs: 1.0e+20\n", ("recipe.yaml", "'epochs'")),
    ("epochs: 2.5\n", ("recipe.yaml", "'epochs'", "2.5")),
    ("seed: -1\n", ("recipe.yaml", "'seed'", "-1")),
    ("name: a/b\n", ("recipe.yaml", "'name'", "'a/b'")),
    ("license: ''\n", ("recipe.yaml", "'license'", "empty")),
    ("weight_decay: abc\n", ("recipe.yaml", "'weight_decay'", "'abc'")),
    ("workers: -3\n", ("recipe.yaml", "'workers'", "-3")),
    ("deterministic: maybe\n", ("recipe.yaml", "'deterministic'", "'maybe'")),
    ("optimizer: 3\n", ("recipe.yaml", "'optimizer'", "3")),
    ("strategy_settings: [1, 2]\n", ("recipe.yaml", "'strategy_settings'")),
]


@pytest.mark.parametrize(("text", "words"), RECIPE_CASES, ids=[c[0].strip() for c in RECIPE_CASES])
def test_bad_recipe_file_setting_names_the_file_and_key(
    data: Path,
    tmp_path: Path,
    zoo_home: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    words: tuple[str, ...],
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text, encoding="utf-8")
    argv = ["finetune", "timm:test_resnet", str(data), *BASE, "--config", str(recipe)]
    _refused(argv, capsys, zoo_home, 2, *words)


def test_a_default_name_that_is_no_model_name_is_refused_before_the_data(
    tmp_path: Path, zoo_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune_helpers import make_images

    data = make_images(tmp_path / "pets (2024)", classes=2, per_class=4, size=(32, 32))
    argv = ["finetune", "timm:test_resnet", str(data), *BASE]
    _refused(argv, capsys, zoo_home, 2, "default name", "'pets (2024)-linear-probe'", "--name")


OTHER_CASES = [
    (["list", "--timeout", "-1"], ("'--timeout'", "'-1'")),
    (["list", "--timeout", "inf"], ("'--timeout'",)),
    (["export", "timm:test_resnet", "--opset", "1"], ("'--opset'", "1 is outside", "7 to")),
    (["export", "timm:test_resnet", "--opset", "9999"], ("'--opset'", "9999")),
    (["predict", "x", ".", "--top-k", "0"], ("'--top-k'",)),
    (["info", "timm:a\nb"], ("'timm:a\\nb'", "control character")),
]


@pytest.mark.parametrize(("argv", "words"), OTHER_CASES, ids=[" ".join(c[0]) for c in OTHER_CASES])
def test_bad_option_of_other_commands_is_refused_up_front(
    zoo_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: tuple[str, ...]
) -> None:
    _refused(argv, capsys, zoo_home, 2, *words)


def test_the_proof_of_no_data_read_sees_a_data_read(
    data: Path, zoo_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control for the cases above: valid options do read the data (the line shows,
    the home fills), so their absence above means the refusal came first."""
    from zoo.cli import run

    capsys.readouterr()
    got = run(["finetune", "timm:test_resnet", str(data), *BASE, "--dry-run"])
    err = capsys.readouterr().err
    assert got == 0, err[-3000:]
    assert "checking images" in err
    assert _written(zoo_home) != []
