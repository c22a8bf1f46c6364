"""Plugins that misbehave, round two (issue 21): each is named, listed, and zoo keeps
working. The plugins are real entry points (tests/fixtures/plugins/round2/*: a module and
its dist-info folder put on PYTHONPATH), loaded by the real `zoo` command."""

from __future__ import annotations

import json
from pathlib import Path

from clihelp import EXAMPLE_PLUGINS
from faults.helpers import expect_error, registered, run_zoo, zoo_env

ROUND2 = EXAMPLE_PLUGINS / "round2"


def _plugins_json(*paths: Path, env: dict[str, str] | None = None) -> dict[str, dict]:
    done = run_zoo("plugins", "--json", plugin_paths=paths, env=zoo_env(**(env or {})))
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)  # the whole of stdout is the JSON document
    return {p["name"]: p for p in doc["plugins"]}


def test_a_strategy_whose_plan_raises_is_named_with_its_method(tmp_path: Path) -> None:
    from finetune_helpers import make_images

    data = make_images(tmp_path / "data", classes=2, per_class=4, size=(32, 32))
    done = run_zoo(
        "finetune", "timm:test_resnet", str(data), "--strategy", "zerodiv", "--random-init",
        "--epochs", "1", "--image-size", "32",
        plugin_paths=[ROUND2 / "zerodiv"], env=zoo_env(),
    )  # fmt: skip
    line = expect_error(done, 1, "plugin 'zerodiv'", "strategy.plan", "ZeroDivisionError")
    assert "division by zero" in line
    assert registered() == []
    debug = run_zoo(
        "--debug", "finetune", "timm:test_resnet", str(data), "--strategy", "zerodiv",
        "--random-init", "--epochs", "1", "--image-size", "32",
        plugin_paths=[ROUND2 / "zerodiv"], env=zoo_env(),
    )  # fmt: skip
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "zoo_zerodiv.py" in debug.stderr
