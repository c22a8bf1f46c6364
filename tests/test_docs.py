"""Docs stay true to the code: every hook spec documented under its own heading."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from zoo.contract.plugins import PluginManager

DOCS = Path(__file__).parents[1] / "docs"


def _hook_specs() -> dict[str, object]:
    pm = PluginManager(load_entry_points=False)
    specs = {
        name: caller.spec.function
        for name, caller in vars(pm.pm.hook).items()
        if not name.startswith("_") and getattr(caller, "spec", None) is not None
    }
    assert specs
    return specs


def test_every_hook_spec_has_its_own_page_with_its_signature_as_heading() -> None:
    overview = (DOCS / "plugins.md").read_text(encoding="utf-8")
    for name, function in _hook_specs().items():
        page = DOCS / "plugins" / f"{name}.md"
        assert page.exists(), f"docs/plugins/{name}.md is missing"
        text = page.read_text(encoding="utf-8")
        params = ", ".join(inspect.signature(function).parameters)  # type: ignore[arg-type]
        assert text.splitlines()[0] == f"# `{name}({params})`", f"{page}: heading"
        for section in ("## When it is called", "## Arguments", "## Returns", "## Example"):
            assert section in text, f"{page} lacks '{section}'"
        for param in inspect.signature(function).parameters:  # type: ignore[arg-type]
            assert f"- `{param}`" in text, f"{page} does not describe argument '{param}'"
        assert f"(plugins/{name}.md)" in overview, f"docs/plugins.md does not link {name}.md"


def test_the_tutorial_testing_page_and_second_exporter_are_linked() -> None:
    overview = (DOCS / "plugins.md").read_text(encoding="utf-8")
    for page in ("tutorial.md", "testing.md"):
        assert (DOCS / "plugins" / page).exists() and f"(plugins/{page})" in overview
    export = (DOCS / "export.md").read_text(encoding="utf-8")
    fixture = Path(__file__).parent / "fixtures" / "plugins" / "exporter" / "zoo_pt2.py"
    assert fixture.read_text(encoding="utf-8") in export, "docs/export.md's exporter drifted"


def test_the_tutorial_works_as_written(tmp_path: Path) -> None:
    """Write out the tutorial's files, check them with zoo.testing, run its tests."""
    import os
    import subprocess
    import sys

    text = (DOCS / "plugins" / "tutorial.md").read_text(encoding="utf-8")
    files = re.findall(r"<!-- file: (\S+) -->\n```\w+\n(.*?)```", text, flags=re.S)
    assert {name for name, _ in files} == {
        "zoo-shapes/pyproject.toml",
        "zoo-shapes/zoo_shapes/__init__.py",
        "zoo-shapes/tests/test_shapes.py",
    }
    for name, body in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body, encoding="utf-8")
    folder = tmp_path / "zoo-shapes"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "zoo.testing.pytest_plugin", "tests"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout


def test_docs_index_links_exist() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)]+\.md)\)", index):
        assert (DOCS / target).exists(), f"docs/index.md links to missing {target}"


def _json_kinds_in_code() -> set[str]:
    """The first argument of every emit_json(...) call in the CLI, read from its syntax tree."""
    import ast

    kinds: set[str] = set()
    for path in (Path(__file__).parents[1] / "zoo" / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "emit_json"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                kinds.add(str(node.args[0].value))
    return kinds


def test_every_json_document_kind_is_documented() -> None:
    kinds = _json_kinds_in_code()
    assert {"model_list", "model_info", "plugin_list"} <= kinds
    text = (DOCS / "json.md").read_text(encoding="utf-8")
    missing = sorted(k for k in kinds if f"`{k}`" not in text)
    assert not missing, f"docs/json.md does not document: {missing}"


def test_cli_reference_is_generated_from_the_code() -> None:
    from zoo.cli.reference import render

    page = (DOCS / "cli-reference.md").read_text(encoding="utf-8")
    assert page == render(), (
        "docs/cli-reference.md is stale: run `python -m zoo.cli.reference > docs/cli-reference.md`"
    )
