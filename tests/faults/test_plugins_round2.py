"""Plugins that misbehave, round two (issue 21): each is named, listed, and zoo keeps
working. The plugins are real entry points (tests/fixtures/plugins/round2/*: a module and
its dist-info folder put on PYTHONPATH), loaded by the real `zoo` command."""

from __future__ import annotations

import json
from pathlib import Path

from clihelp import DUPLICATE_PLUGIN, EXAMPLE_PLUGINS
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


def test_a_plugin_needing_a_newer_api_is_refused_before_its_module_runs(tmp_path: Path) -> None:
    marker = tmp_path / "module-ran"
    by_name = _plugins_json(ROUND2 / "api99", env={"ZOO_TEST_MARKER": str(marker)})
    assert by_name["api99"]["status"] == "failed"
    assert "needs zoo plugin API 99" in by_name["api99"]["error"]
    assert by_name["api99"]["api"] == 99
    assert not marker.exists(), "the plugin's module ran before its API was checked"


def test_a_plugin_printing_while_loading_leaves_json_intact() -> None:
    by_name = _plugins_json(ROUND2 / "printer")  # json.loads of the whole stdout
    assert by_name["printer"]["status"] == "ok"
    assert "hello from zoo_printer" not in json.dumps(by_name)
    table = run_zoo("plugins", plugin_paths=[ROUND2 / "printer"], env=zoo_env())
    assert table.returncode == 0, table.stderr
    assert "hello from zoo_printer" not in table.stdout
    assert "plugin 'printer' printed 3 line(s)" in table.stderr
    assert "hello from zoo_printer at import" in table.stderr


def test_a_plugin_calling_sys_exit_at_import_is_listed_failed() -> None:
    by_name = _plugins_json(ROUND2 / "exiter")
    assert by_name["exiter"]["status"] == "failed"
    assert by_name["exiter"]["error"] == "called sys.exit(3) while imported"
    assert by_name["timm"]["status"] == "ok"


def test_a_third_party_provider_named_timm_is_a_conflict_and_zoo_keeps_timm() -> None:
    by_name = _plugins_json(DUPLICATE_PLUGIN)
    assert by_name["timm"]["status"] == "ok"
    assert by_name["duplicate"]["status"] == "conflict"
    (conflict,) = by_name["duplicate"]["conflicts"]
    assert "provider 'timm', which zoo's own plugin 'timm' provides" in conflict
    info = run_zoo(
        "info", "timm:test_resnet", "--json", plugin_paths=[DUPLICATE_PLUGIN], env=zoo_env()
    )
    assert info.returncode == 0, info.stderr[-3000:]
    assert json.loads(info.stdout)["model"]["provider"] == "timm"


def test_two_third_parties_with_one_provider_name_are_both_conflicts() -> None:
    by_name = _plugins_json(ROUND2 / "twins")
    for name, other in (("twin-a", "twin-b"), ("twin-b", "twin-a")):
        assert by_name[name]["status"] == "conflict"
        (conflict,) = by_name[name]["conflicts"]
        assert f"provider 'twin', as does plugin '{other}': neither is used" in conflict
    paths = [ROUND2 / "twins"]
    neither = run_zoo("info", "twin:anything", plugin_paths=paths, env=zoo_env())
    expect_error(neither, 3, "'twin-a'", "'twin-b'", "neither is used")
    info = run_zoo("info", "timm:test_resnet", "--json", plugin_paths=paths, env=zoo_env())
    assert info.returncode == 0, info.stderr[-3000:]
