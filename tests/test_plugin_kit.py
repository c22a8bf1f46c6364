"""The plugin author's kit: `zoo plugins new` writes a package that installs, is listed by
zoo, and whose own tests (zoo.testing's fixtures and contract checks) pass as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from clihelp import run_zoo

ROOT = Path(__file__).parents[1]


def _env_for(tmp_path: Path) -> dict[str, str]:
    """The test's environment; where the installed transfer-zoo predates zoo's pytest
    plugin (a checkout whose install is stale), a dist-info declaring just that entry
    point stands in for it, so the template's tests get zoo.testing's fixtures."""
    env = dict(os.environ)
    plugins = metadata.entry_points(group="pytest11")
    if any(ep.value == "zoo.testing.pytest_plugin" for ep in plugins):
        return env
    shim = tmp_path / "shim"
    info = shim / "zoo_testing_shim-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-testing-shim\nVersion: 0\n")
    entry = "zoo.testing.pytest_plugin = zoo.testing.pytest_plugin"
    (info / "entry_points.txt").write_text(f"[pytest11]\n{entry}\n")
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def test_a_new_plugin_installs_is_listed_and_passes_its_own_tests(tmp_path: Path) -> None:
    env = _env_for(tmp_path)
    _run([sys.executable, "-m", "zoo", "plugins", "new", "demo"], tmp_path, env)
    demo = tmp_path / "demo"
    assert (demo / "zoo_demo" / "__init__.py").is_file() and (demo / "pyproject.toml").is_file()

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
         tmp_path, env)  # fmt: skip
    python = str(venv / ("Scripts" if os.name == "nt" else "bin") / "python")
    if sys.prefix != sys.base_prefix:  # we run in a venv: "system" would mean its base
        import site

        inner = _run([python, "-c", "import site; print(site.getsitepackages()[0])"], tmp_path, env)
        # addsitedir, not a bare path: the outer site's own .pth files (setuptools' editable
        # finder for a `pip install -e` zoo among them) must run in the inner venv too
        lines = [f"import site; site.addsitedir({d!r})" for d in site.getsitepackages()]
        Path(inner.stdout.strip(), "outer-site.pth").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )
    _run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", "./demo"],
         tmp_path, env)  # fmt: skip

    listed = _run([python, "-m", "zoo", "plugins", "--json"], tmp_path, env)
    rows = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert rows["demo"]["status"] == "ok", rows["demo"]
    assert rows["demo"]["distribution"] == "zoo-demo" and rows["demo"]["version"] == "0.1.0"
    assert rows["demo"]["registered"] == {"provider": ["demo"]}

    tests = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "demo"], tmp_path, env)
    assert "2 passed" in tests.stdout, tests.stdout

    # the shared interpreter does not see the throwaway venv's plugin
    outside = run_zoo("plugins", "--json")
    assert "demo" not in {p["name"] for p in json.loads(outside.stdout)["plugins"]}


@pytest.mark.parametrize("kind", ["strategy", "exporter"])
def test_every_kind_of_template_passes_its_contract_test(tmp_path: Path, kind: str) -> None:
    env = _env_for(tmp_path)
    _run([sys.executable, "-m", "zoo", "plugins", "new", f"my-{kind}", "--kind", kind],
         tmp_path, env)  # fmt: skip
    folder = tmp_path / f"my-{kind}"
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
    test = folder / "tests" / f"test_{kind}.py"
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                folder, env)  # fmt: skip
    assert "1 passed" in done.stdout


def test_plugins_new_refuses_a_bad_name_or_a_taken_folder(tmp_path: Path) -> None:
    bad = run_zoo("plugins", "new", "Not_A_Name", "--dir", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.startswith("zoo: error: 'Not_A_Name' is not a")
    (tmp_path / "taken").mkdir()
    taken = run_zoo("plugins", "new", "taken", "--dir", str(tmp_path))
    assert taken.returncode == 2 and "already exists" in taken.stderr
    assert list((tmp_path / "taken").iterdir()) == []


def test_zoo_testing_checks_catch_a_broken_plugin(tmp_path: Path) -> None:
    """The author's checks fail on what zoo would refuse (not only on what it accepts)."""
    from zoo import ModuleBackbone
    from zoo.contract.errors import PluginError
    from zoo.testing import check_exporter, check_strategy, tiny_backbone

    class NoPlan:
        name, summary = "no-plan", "forgot plan"

    with pytest.raises(PluginError, match="without `plan`"):
        check_strategy(NoPlan())

    class Lying:
        name, summary, precisions = "lying", "writes a file it never checks", ("fp32",)

        def export(self, module, example, options):  # type: ignore[no-untyped-def]
            from zoo import ExportResult

            path = Path(options.out_dir) / "model.lie"
            path.write_bytes(b"")
            return ExportResult(str(path), "lying", "fp32", "lie", {})

        def open(self, path, *, provider="auto"):  # type: ignore[no-untyped-def]
            class Zeros:
                def run(self, batch):  # type: ignore[no-untyped-def]
                    import numpy as np

                    return np.zeros((len(batch), 3), dtype=np.float32)

            return Zeros()

    with pytest.raises(AssertionError, match="runtime disagrees with the model"):
        check_exporter(Lying(), tmp_path / "out")

    good = tiny_backbone()
    half = ModuleBackbone(good.info, good.model, list(good.stages())[:-1])
    from zoo.contract.checks import check_backbone

    with pytest.raises(PluginError, match="do not partition the model"):
        check_backbone("mine", "tiny", "tiny:net", half)


def _kit_provider(tmp_path: Path, grammar: str) -> Path:
    """`zoo plugins new foo`'s provider with ``grammar`` declared, importable from the
    returned folder (a dist-info there declares its entry point, as an install would)."""
    from zoo.plugin_template import render_plugin

    folder = render_plugin("foo", parent=tmp_path)
    module = folder / "zoo_foo" / "__init__.py"
    text = module.read_text(encoding="utf-8")
    assert "    grammar = zoo.NameGrammar.simple()\n" in text  # the kit declares one
    module.write_text(text.replace("zoo.NameGrammar.simple()", grammar), encoding="utf-8")
    info = folder / "zoo_foo-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-foo\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[zoo]\nfoo = zoo_foo\n")
    return folder


def _parsed(text: str) -> tuple[str | None, ...]:
    from zoo.contract.errors import BadReferenceError
    from zoo.contract.refs import parse_ref

    try:
        ref = parse_ref(text)
    except BadReferenceError as exc:
        return ("refused", str(exc))
    return (str(ref), ref.arch, ref.tag, ref.revision)


def test_a_kit_provider_with_a_tagged_grammar_parses_and_resolves_like_timm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A third-party provider declares timm's shape of names (ARCH[.TAG][@REV]): its
    references split, pin revisions and are refused exactly as timm's, in parse_ref, at
    resolution and from the CLI (exit code 2), and a good one reaches its describe/build."""
    import sys

    import zoo
    from zoo.catalog.index import describe, provider_for
    from zoo.contract.errors import BadReferenceError
    from zoo.contract.plugins import reset_plugin_manager

    folder = _kit_provider(tmp_path, "zoo.NameGrammar.tagged()")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "zoo_foo", raising=False)
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "foo,timm")
    reset_plugin_manager()
    names = ["tiny", "tiny.v1", "tiny.v1.b", "tiny.v1@abc123", "tiny@main", "tiny@",
             "tiny@-x", "bad.name.", "bad/name", "bad name", "-bad", "org/repo@v1"]  # fmt: skip
    for name in names:
        as_timm, as_foo = _parsed(f"timm:{name}"), _parsed(f"foo:{name}")
        assert as_foo == tuple(v.replace("timm:", "foo:") if v else v for v in as_timm), name
    assert _parsed("foo:tiny.v1@abc123") == ("foo:tiny.v1@abc123", "tiny", "v1", "abc123")
    assert _parsed("foo:bad/name") == (
        "refused",
        "bad model reference 'foo:bad/name': expected an architecture and an optional tag; "
        "use foo:ARCH[.TAG]",
    )

    # resolution: a good name reaches the provider's describe and build ...
    assert describe("foo:tiny.v1").reference == "foo:tiny"
    built = zoo.build_backbone("foo:tiny.v1", num_classes=3, pretrained=False)
    assert [n for n, _ in built.stages()] == ["stem", "body", "head"]
    # ... and a Ref made in code is held to the grammar before the provider is asked
    with pytest.raises(BadReferenceError, match=r"'foo:bad\.name\.': expected an arch"):
        provider_for(zoo.Ref("foo", "bad.name."))

    # the CLI: the same line and exit code 2 as timm's, before anything is looked up
    env = {"ZOO_LOAD_PLUGINS": "foo,timm"}
    foo = run_zoo("info", "foo:bad.name.", plugin_paths=[folder], env=env)
    timm = run_zoo("info", "timm:bad.name.", plugin_paths=[folder], env=env)
    assert foo.returncode == timm.returncode == 2
    assert foo.stderr == timm.stderr.replace("timm:", "foo:")
    assert foo.stderr.startswith("zoo: error: bad model reference 'foo:bad.name.'")
    good = run_zoo("info", "foo:tiny.v1", "--json", plugin_paths=[folder], env=env)
    assert good.returncode == 0, good.stderr
    assert "foo:tiny" in good.stdout


def test_a_kit_provider_without_revisions_refuses_them_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from zoo.contract.plugins import reset_plugin_manager

    folder = _kit_provider(tmp_path, 'zoo.NameGrammar.tagged("ARCH[.WEIGHTS]", revisions=False)')
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "zoo_foo", raising=False)
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "foo")
    reset_plugin_manager()
    assert _parsed("foo:tiny.v1") == ("foo:tiny.v1", "tiny", "v1", None)
    assert _parsed("foo:tiny.v1@abc") == (
        "refused",
        "bad model reference 'foo:tiny.v1@abc': foo names have no revisions; "
        "use foo:ARCH[.WEIGHTS]",
    )
