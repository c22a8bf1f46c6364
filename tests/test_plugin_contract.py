"""The plugin contract holds: broken registrations are refused in one line naming the
plugin and skipped, the other plugins register, and every build is checked.

The plugins are real entry points (tests/fixtures/plugins/contract/*.dist-info).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clihelp import EXAMPLE_PLUGINS, run_zoo
from zoo.contract.errors import PluginError
from zoo.contract.plugins import PluginManager

CONTRACT = EXAMPLE_PLUGINS / "contract"
HIJACK = EXAMPLE_PLUGINS / "hijack"


@pytest.fixture
def contract_pm(monkeypatch: pytest.MonkeyPatch) -> PluginManager:
    monkeypatch.syspath_prepend(str(CONTRACT))
    return PluginManager()


def _one_line(error: str | None) -> str:
    assert error is not None
    assert "\n" not in error
    return error


def test_a_strategy_without_plan_is_refused_and_the_others_register(contract_pm) -> None:
    strategies = contract_pm.strategies()
    assert "no-plan" not in strategies
    assert {"linear-probe", "full"} <= set(strategies)  # the built-in plugin registered
    error = _one_line(contract_pm.plugins["no-plan"].error)
    assert "registered strategy 'no-plan' without `plan`" in error
    assert contract_pm.plugins["strategies"].ok


def test_a_refusal_holds_even_when_the_plugin_swallows_the_error(contract_pm) -> None:
    contract_pm.strategies()
    assert "without `plan`" in _one_line(contract_pm.plugins["swallower"].error)


def test_an_exporter_without_export_is_refused(contract_pm) -> None:
    exporters = contract_pm.exporters()
    assert "no-export" not in exporters and "onnx" in exporters
    error = _one_line(contract_pm.plugins["no-export"].error)
    assert "registered exporter 'no-export' without `export`" in error


def test_an_exporter_whose_name_breaks_the_reference_grammar_is_refused(contract_pm) -> None:
    assert "has space" not in contract_pm.exporters()
    error = _one_line(contract_pm.plugins["bad-name"].error)
    assert "exporter 'has space' whose `name` is not a name of letters" in error


def test_a_hook_implementation_declaring_no_arguments_loads(contract_pm) -> None:
    info = contract_pm.plugins["no-args"]
    assert "register_providers" in info.hooks
    providers = contract_pm.providers()  # called with no arguments: nothing raises
    assert info.ok and info.registered.get("provider") is None
    assert "bad-stages" in providers and "timm" in providers


def test_a_plugin_needing_a_newer_api_is_refused_before_it_runs(contract_pm) -> None:
    import zoo

    error = _one_line(contract_pm.plugins["needs-api"].error)
    assert error.startswith(f"needs zoo plugin API 99, this zoo has {zoo.PLUGIN_API}")
    assert not contract_pm.plugins["needs-api"].hooks
    contract_pm.strategies()  # its hook would raise; it was never registered


def test_a_provider_whose_stages_do_not_partition_the_model_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zoo
    from zoo.contract.plugins import reset_plugin_manager

    monkeypatch.syspath_prepend(str(CONTRACT))
    reset_plugin_manager()
    with pytest.raises(PluginError) as err:
        zoo.build_backbone("bad-stages:tiny", pretrained=False)
    message = _one_line(str(err.value))
    assert message.startswith("plugin 'bad-stages': provider 'bad-stages' built 'bad-stages:tiny'")
    assert "do not partition the model: parameters in no stage: 3.weight, 3.bias" in message


def test_the_cli_refuses_the_bad_build_in_one_line(tmp_path: Path) -> None:
    done = run_zoo(
        "export", "bad-stages:tiny", "--out", str(tmp_path / "out"), plugin_paths=[CONTRACT]
    )
    assert done.returncode == 1
    said = done.stderr.strip().splitlines()
    lines = [line for line in said if not line.startswith("zoo: export: ")]  # its progress
    assert len(lines) == 2 and lines[0] == "zoo: loading bad-stages:tiny", said
    assert not any(line.startswith("zoo: export: done") for line in said), said
    assert lines[1].startswith("zoo: error: plugin 'bad-stages': provider 'bad-stages' built")
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_zoo_plugins_reports_each_refusal_and_what_the_rest_registered() -> None:
    done = run_zoo("plugins", "--json", plugin_paths=[CONTRACT])
    assert done.returncode == 0, done.stderr
    rows = {p["name"]: p for p in json.loads(done.stdout)["plugins"]}
    for name in ("no-plan", "no-export", "needs-api", "bad-name", "swallower"):
        assert rows[name]["status"] == "failed", rows[name]
        assert not rows[name]["error"].startswith("plugin '")  # the row names it already
    assert rows["no-args"]["status"] == "ok" and rows["no-args"]["registered"] == {}
    assert rows["timm"]["registered"] == {"provider": ["timm"]}
    assert rows["onnx"]["registered"] == {"exporter": ["onnx"]}
    assert "linear-probe" in rows["strategies"]["registered"]["strategy"]
    assert rows["bad-stages"]["registered"] == {"provider": ["bad-stages"]}

    only = run_zoo("plugins", "--hook", "register_exporters", "--json", plugin_paths=[CONTRACT])
    doc = json.loads(only.stdout)
    assert {p["name"] for p in doc["plugins"]} == {"onnx", "no-export", "bad-name"}
    (onnx,) = doc["exporters"]
    assert onnx["precisions"] == ["fp32", "fp16", "int8"] and onnx["plugin"] == "onnx"

    table = run_zoo("plugins", plugin_paths=[CONTRACT], env={"COLUMNS": "400"})
    assert "without `plan`" in table.stdout and "needs zoo plugin API 99" in table.stdout
    assert "exporter: onnx (fp32/fp16/int8)" in table.stdout


def test_zoo_plugins_hook_must_name_a_hook() -> None:
    done = run_zoo("plugins", "--hook", "register_providerz")
    assert done.returncode == 2
    assert done.stderr.startswith("zoo: error: no hook named 'register_providerz'")
    assert "register_providers" in done.stderr


def test_strict_mode_raises_the_first_refusal_naming_the_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(CONTRACT))
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "no-plan,strategies")
    pm = PluginManager()
    with pytest.raises(PluginError, match=r"^plugin 'no-plan' registered strategy 'no-plan' "):
        pm.strategies()


# ------------------------------------------------------------------ command conflicts


def test_a_plugin_replacing_builtin_commands_leaves_them_working() -> None:
    helptext = run_zoo("--help", plugin_paths=[HIJACK])
    assert helptext.returncode == 0, helptext.stderr
    assert "hijack-hello" in helptext.stdout and "every provider, one table" in helptext.stdout

    listing = run_zoo("list", "test_resnet*", "--provider", "timm", "--json", plugin_paths=[HIJACK])
    assert listing.returncode == 0, listing.stderr
    assert "hijacked" not in listing.stdout
    assert json.loads(listing.stdout)["kind"] == "model_list"

    plugins = run_zoo("plugins", "--json", plugin_paths=[HIJACK])
    assert plugins.returncode == 0, plugins.stderr
    row = {p["name"]: p for p in json.loads(plugins.stdout)["plugins"]}["hijack"]
    assert row["status"] == "conflict" and row["version"] == "2.0"
    assert any("replace the command 'zoo list'" in c for c in row["conflicts"])
    assert any("replace the command 'zoo plugins'" in c for c in row["conflicts"])
    assert row["registered"] == {"command": ["hijack-hello"]}

    table = run_zoo("plugins", plugin_paths=[HIJACK], env={"COLUMNS": "400"})
    assert "conflict" in table.stdout and "zoo list" in table.stdout

    hello = run_zoo("hijack-hello", plugin_paths=[HIJACK])
    assert hello.stdout.strip() == "hello from hijack"
