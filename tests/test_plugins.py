"""The plugin manager, tested with real entry points (dist-info folders on sys.path).

Every hook spec must be exercised here through a plugin loaded from an entry point: the
table HOOK_CHECKS maps each spec name to the test that calls it, and a test fails when a
spec exists without an entry (collected from the plugin manager, not by grepping).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from clihelp import DUPLICATE_PLUGIN, EXAMPLE_PLUGINS, run_zoo
from zoo.contract.errors import PluginError
from zoo.contract.plugins import PluginManager


def hook_spec_names(pm: PluginManager) -> set[str]:
    """Hook specs as the plugin manager knows them."""
    return {
        name
        for name, caller in vars(pm.pm.hook).items()
        if not name.startswith("_") and getattr(caller, "spec", None) is not None
    }


@pytest.fixture
def example_pm(monkeypatch: pytest.MonkeyPatch) -> PluginManager:
    """A manager that loaded the built-in plugins plus the example and broken fixtures."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))
    return PluginManager()


# ----------------------------------------------------------- each hook, through an entry point


def check_register_providers(pm: PluginManager) -> None:
    providers = pm.providers()
    assert providers["example"].describe.__self__.name == "example"  # type: ignore[attr-defined]
    assert pm.owner("provider", "example") == "example"
    assert {"timm", "torchvision", "hf"} <= set(providers)


def check_register_strategies(pm: PluginManager) -> None:
    from zoo import StrategySettings

    strategy = pm.strategies()["example-strategy"]
    assert pm.owner("strategy", "example-strategy") == "example"
    plan = strategy.plan(["stem", "body", "head"], StrategySettings(epochs=2))
    assert plan.phases[0].trainable == ((2,),) and plan.epochs == 2
    assert pm.plugins["example"].registered["strategy"] == ["example-strategy"]


def check_register_exporters(pm: PluginManager) -> None:
    assert pm.exporters()["example-format"].summary.startswith("An example export format")
    assert pm.owner("exporter", "example-format") == "example"
    assert pm.exporters()["example-format"].precisions == ("fp32",)
    assert pm.plugins["example"].registered["exporter"] == ["example-format"]


def check_register_metrics(pm: PluginManager) -> None:
    import numpy as np

    metric = pm.metrics()["example-metric"]
    assert pm.owner("metric", "example-metric") == "example"
    assert metric.score(features=np.zeros((4, 2)), labels=np.array([0, 1, 1, 1])) == 0.5
    assert {"logme", "hscore", "nce", "leep"} <= set(pm.metrics())
    assert pm.plugins["example"].registered["metric"] == ["example-metric"]


def check_register_commands(pm: PluginManager) -> None:
    group = click.Group("zoo")
    pm.add_commands(group)
    assert "example-hello" in group.commands
    assert pm.plugins["example"].registered["command"] == ["example-hello"]


def check_register_data_sources(pm: PluginManager) -> None:
    import tempfile
    import zipfile

    source = pm.data_sources()["example-zip"]
    assert pm.owner("data_source", "example-zip") == "example"
    assert pm.plugins["example"].registered["data_source"] == ["example-zip"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pets.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("cat/1.png", b"a cat")
            archive.writestr("dog/2.png", b"a dog")
        assert source.claims(path) and not source.claims(Path(tmp))
        found = [(i.name, i.label, i.data) for i in source.images(path)]
        assert found == [("cat/1.png", "cat", b"a cat"), ("dog/2.png", "dog", b"a dog")]
        assert source.read(path, "dog/2.png") == b"a dog"


HOOK_CHECKS: dict[str, Callable[[PluginManager], None]] = {
    "register_providers": check_register_providers,
    "register_strategies": check_register_strategies,
    "register_exporters": check_register_exporters,
    "register_commands": check_register_commands,
    "register_metrics": check_register_metrics,
    "register_data_sources": check_register_data_sources,
}


def test_every_hook_spec_has_an_entry_point_test() -> None:
    specs = hook_spec_names(PluginManager(load_entry_points=False))
    assert specs, "no hook specs collected"
    assert specs == set(HOOK_CHECKS), f"hooks without a test: {specs - set(HOOK_CHECKS)}"


@pytest.mark.parametrize("hook", sorted(HOOK_CHECKS))
def test_hook_is_called_through_an_entry_point_plugin(example_pm: PluginManager, hook: str) -> None:
    info = example_pm.plugins["example"]
    assert info.ok and info.distribution == "zoo-example" and info.version == "1.0"
    assert hook in info.hooks
    HOOK_CHECKS[hook](example_pm)


# ------------------------------------------------------------------------------ isolation


def test_broken_plugins_are_reported_and_skipped(example_pm: PluginManager) -> None:
    broken = example_pm.plugins["broken-import"]
    assert not broken.ok
    assert "failed to import" in (broken.error or "")
    assert "not-installed-anywhere" in (broken.error or "")
    unknown = example_pm.plugins["unknown-hook"]
    assert not unknown.ok
    assert "unknown hook" in (unknown.error or "")
    assert "register_providerz" in (unknown.error or "")
    # the working plugins still work
    assert "timm" in example_pm.providers()


def test_strict_mode_reraises_with_the_plugin_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))
    monkeypatch.setenv("ZOO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'broken-import' failed to import"):
        PluginManager()


def test_load_plugins_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "timm,example")
    pm = PluginManager()
    assert set(pm.plugins) == {"timm", "example"}
    assert set(pm.providers()) == {"timm", "example"}
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "")
    assert PluginManager().plugins == {}


def test_a_third_party_provider_name_taken_by_zoo_is_a_conflict_zoo_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(DUPLICATE_PLUGIN))
    pm = PluginManager()
    assert pm.owner_info("provider", "timm").distribution == "transfer-zoo"  # type: ignore[union-attr]
    assert pm.plugins["duplicate"].status == "conflict"
    (conflict,) = pm.plugins["duplicate"].conflicts
    assert "provider 'timm', which zoo's own plugin 'timm' provides" in conflict


def test_duplicate_strategy_names_of_two_third_parties_use_neither() -> None:
    from zoo import hookimpl

    class Same:
        name = "same"
        summary = "a strategy two plugins both claim"

        def plan(self, stages, settings):  # type: ignore[no-untyped-def]
            raise AssertionError("not called")

    class Plugin:
        @hookimpl
        def register_strategies(self, register):  # type: ignore[no-untyped-def]
            register(Same())

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "plugin-a")
    pm.register(Plugin(), "plugin-b")
    assert "same" not in pm.strategies()
    assert pm.conflicted("strategy", "same") == ["plugin-a", "plugin-b"]
    assert "as does plugin 'plugin-b': neither is used" in pm.plugins["plugin-a"].conflicts[0]


def test_registration_without_the_protocol_is_refused_and_skipped() -> None:
    from zoo import hookimpl

    class NoMethods:
        name = "half"

    class Plugin:
        @hookimpl
        def register_providers(self, register):  # type: ignore[no-untyped-def]
            register(NoMethods())

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "half-plugin")
    assert pm.providers() == {}
    error = pm.plugins["half-plugin"].error or ""
    assert error.startswith("registered provider 'half' without `version`: implement zoo.Provider")


def test_a_provider_registered_with_a_non_scheme_name_is_refused() -> None:
    from zoo import hookimpl

    class Upper:
        name = "Not:AScheme"
        version = index = describe = pull = build = staticmethod(lambda *a, **k: None)

    class Plugin:
        @hookimpl
        def register_providers(self, register):  # type: ignore[no-untyped-def]
            register(Upper())

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "upper")
    assert pm.providers() == {}
    assert "whose `name` is not a reference scheme" in (pm.plugins["upper"].error or "")


def test_implementations_get_only_the_arguments_they_declare() -> None:
    from zoo import hookimpl

    seen: list[tuple[str, ...]] = []

    class Plugin:
        @hookimpl
        def register_commands(self):  # type: ignore[no-untyped-def]
            seen.append(())

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "quiet")
    pm.add_commands(click.Group("zoo"))
    assert seen == [()] and pm.plugins["quiet"].ok


def test_a_plugin_command_cannot_replace_a_builtin_command() -> None:
    from zoo import hookimpl

    class Plugin:
        @hookimpl
        def register_commands(self, cli):  # type: ignore[no-untyped-def]
            @cli.command("list")
            def hijack() -> None:
                pass

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "hijacker")
    group = click.Group("zoo")
    builtin = click.Command("list")
    group.add_command(builtin)
    pm.add_commands(group)
    assert group.commands["list"] is builtin
    (conflict,) = pm.plugins["hijacker"].conflicts
    assert "tried to replace the command 'zoo list'" in conflict
    assert pm.plugins["hijacker"].to_dict()["status"] == "conflict"


def test_a_plugin_raising_in_register_commands_leaves_no_command_behind() -> None:
    from zoo import hookimpl

    class Plugin:
        @hookimpl
        def register_commands(self, cli):  # type: ignore[no-untyped-def]
            cli.add_command(click.Command("half-added"))
            raise RuntimeError("boom")

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "raiser")
    group = click.Group("zoo")
    pm.add_commands(group)
    assert "half-added" not in group.commands
    assert pm.plugins["raiser"].error == "raised in register_commands: RuntimeError: boom"


# ----------------------------------------------------------------------- through the CLI


def test_cli_keeps_working_with_a_broken_plugin_installed() -> None:
    listing = run_zoo(
        "list", "tiny*", "--provider", "example", "--json", plugin_paths=[EXAMPLE_PLUGINS]
    )
    assert listing.returncode == 0, listing.stderr
    refs = [m["reference"] for m in json.loads(listing.stdout)["models"]]
    assert refs == ["example:tiny.v1", "example:tiny.v2"]

    plugins = run_zoo("plugins", "--json", plugin_paths=[EXAMPLE_PLUGINS])
    assert plugins.returncode == 0, plugins.stderr
    doc = json.loads(plugins.stdout)
    assert doc["schema_version"] == 1
    by_name = {p["name"]: p for p in doc["plugins"]}
    assert by_name["broken-import"]["status"] == "failed"
    assert "not-installed-anywhere" in by_name["broken-import"]["error"]
    assert by_name["example"]["status"] == "ok"
    assert by_name["timm"]["distribution"] == "transfer-zoo"

    table = run_zoo("plugins", plugin_paths=[EXAMPLE_PLUGINS])
    assert "failed" in table.stdout and "broken-import" in table.stdout

    unknown = run_zoo("info", "nope:x", plugin_paths=[EXAMPLE_PLUGINS])
    assert unknown.returncode == 3
    assert "plugins that failed to load: broken-import, unknown-hook" in unknown.stderr


def test_a_missing_strategy_names_the_plugins_that_failed_to_load(tmp_path: Path) -> None:
    from finetune_helpers import make_images

    data = make_images(tmp_path / "data", classes=2, per_class=3, size=(8, 8))
    args = ("finetune", "timm:test_resnet", str(data), "--strategy", "nope", "--dry-run")
    missing = run_zoo(*args, plugin_paths=[EXAMPLE_PLUGINS])
    assert missing.returncode == 2
    assert "no strategy 'nope'" in missing.stderr
    assert "plugins that failed to load: broken-import, unknown-hook" in missing.stderr
    assert "see `zoo plugins`" in missing.stderr
    assert "failed to load" not in run_zoo(*args).stderr  # nothing failed: not said


def test_cli_strict_mode_fails_in_one_line() -> None:
    result = run_zoo("plugins", plugin_paths=[EXAMPLE_PLUGINS], env={"ZOO_STRICT_PLUGINS": "1"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "plugin 'broken-import' failed to import" in lines[0]


def test_plugin_command_and_strategy_reach_the_cli() -> None:
    hello = run_zoo("example-hello", "you", plugin_paths=[EXAMPLE_PLUGINS])
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.strip() == "hello, you, from the example plugin"
    strategies = run_zoo("strategies", "--json", plugin_paths=[EXAMPLE_PLUGINS])
    rows = {r["name"]: r for r in json.loads(strategies.stdout)["strategies"]}
    assert rows["example-strategy"]["plugin"] == "example"


def test_example_plugin_file_is_the_documented_example() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert "zoo_example" in docs and "[project.entry-points.zoo]" in docs


# ------------------------------------------- a second exporter, end to end, then uninstalled

EXPORTER_PLUGIN = EXAMPLE_PLUGINS / "exporter"  # zoo_pt2: the example in docs/export.md
CLASSES = ["cat", "dog", "fish"]


def _register_tiny(name: str, strategy: str = "linear-probe") -> object:
    import torch

    from zoo.catalog.index import provider_for
    from zoo.contract.refs import parse_ref
    from zoo.data.preprocess import Preprocessing
    from zoo.registry import register_derivative

    ref = parse_ref("timm:test_resnet")
    torch.manual_seed(0)
    model = provider_for(ref).build(ref, num_classes=3, pretrained=False).model.eval()
    prep = Preprocessing(input_size=(3, 64, 64), mean=(0.5,) * 3, std=(0.5,) * 3)
    register_derivative(
        model,
        name=name,
        parent="timm:test_resnet",
        strategy=strategy,
        strategy_settings={},
        dataset={"digest": "sha256:0"},
        metrics={"val_accuracy": 0.5},
        input_example=torch.randn(2, 3, 64, 64),
        preprocessing=prep.to_dict(),
        class_names=CLASSES,
    )
    return model


@pytest.mark.slow
def test_a_second_exporter_registers_predicts_and_outlives_its_plugin(tmp_path: Path) -> None:
    import sklearn
    import torch

    from zoo.data.preprocess import Preprocessing
    from zoo.deploy.images import load_image

    model = _register_tiny("tiny")
    out = tmp_path / "pt2"
    done = run_zoo(
        "export", "models:/tiny/1", "--format", "pt2", "--out", str(out),
        plugin_paths=[EXPORTER_PLUGIN],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "parity: max |error|" in done.stdout and "registered: models:/tiny.pt2/1" in done.stdout
    assert (out / "model.pt2").is_file() and (out / "zoo-export.json").is_file()
    refused = run_zoo(
        "export", "models:/tiny/1", "--format", "pt2", "--precision", "int8",
        plugin_paths=[EXPORTER_PLUGIN],
    )  # fmt: skip
    assert refused.returncode == 2
    assert "the pt2 exporter supports --precision fp32, not int8" in refused.stderr

    photo = sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg"))[0]
    predicted = run_zoo(
        "predict", "tiny", str(photo), "--json", "--top-k", "1", plugin_paths=[EXPORTER_PLUGIN]
    )
    assert predicted.returncode == 0, predicted.stderr
    doc = json.loads(predicted.stdout)
    assert doc["provider"] == "torch.export (CPU)"
    prep = Preprocessing(input_size=(3, 64, 64), mean=(0.5,) * 3, std=(0.5,) * 3)
    with torch.no_grad():
        want = int(model(torch.from_numpy(load_image(photo, prep))[None]).argmax())
    assert doc["predictions"][0]["top"][0]["index"] == want
    assert len(doc["predictions"]) == 1

    # uninstalled: the plugin's folder is no longer on the path
    lineage = run_zoo("registry", "lineage", "tiny", "--json")
    assert lineage.returncode == 0, lineage.stderr
    (root,) = json.loads(lineage.stdout)["roots"]
    (version,) = root["children"]
    (export,) = version["children"]
    assert export["reference"] == "models:/tiny.pt2/1" and export["format"] == "pt2"
    table = run_zoo("registry", "lineage", "tiny", env={"COLUMNS": "200"})
    assert "models:/tiny.pt2/1" in table.stdout and "export (pt2)" in table.stdout

    shown = run_zoo("registry", "show", "models:/tiny.pt2/1", "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)["version"]
    assert record["tags"]["zoo.exporter_plugin"] == "zoo-pt2==1.0"
    assert record["lineage"]["exporter"] == {
        "name": "pt2", "plugin": "pt2", "distribution": "zoo-pt2", "version": "1.0",
    }  # fmt: skip
    assert record["lineage"]["required_files"] == ["model.pt2", "lineage.json", "README.md"]
    check = run_zoo("registry", "check", "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["problems"] == [], check.stdout

    orphaned = run_zoo("predict", "models:/tiny.pt2/1", str(photo))
    assert orphaned.returncode == 3
    assert orphaned.stderr.strip().splitlines() == [
        "zoo: error: model.pt2 is a 'pt2' export (made by zoo-pt2==1.0) and no installed "
        "exporter can run 'pt2' for zoo predict: install its plugin (see `zoo plugins`)"
    ]


@pytest.mark.slow
def test_a_derivative_outlives_the_strategy_plugin_that_made_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zoo.contract.plugins import reset_plugin_manager

    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))
    reset_plugin_manager()
    _register_tiny("by-example", strategy="example-strategy")
    code = (
        "from zoo.registry import load_model; from zoo.contract.plugins import get_plugin_manager;"
        "m, v = load_model('models:/by-example/1');"
        "assert 'example-strategy' not in get_plugin_manager().strategies();"
        "print(v.tags['zoo.strategy_plugin'], type(m).__name__)"
    )
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if "fixtures" not in p
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["zoo-example==1.0", "ResNet"]
    lineage = run_zoo("registry", "lineage", "by-example", "--json")
    (root,) = json.loads(lineage.stdout)["roots"]
    assert root["children"][0]["strategy"] == "example-strategy"


def test_zoo_plugins_reports_a_duplicate_name_and_keeps_listing() -> None:
    done = run_zoo("plugins", "--json", plugin_paths=[DUPLICATE_PLUGIN])
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    by_name = {p["name"]: p for p in doc["plugins"]}
    assert by_name["duplicate"]["status"] == "conflict" and by_name["timm"]["status"] == "ok"
