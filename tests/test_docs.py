"""Docs stay true to the code: every hook spec documented under its own heading."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from zoo.plugins import PluginManager

DOCS = Path(__file__).parents[1] / "docs"


def test_every_hook_spec_is_documented_with_its_signature() -> None:
    pm = PluginManager(load_entry_points=False)
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("#")]
    specs = {
        name: caller.spec.function
        for name, caller in vars(pm.pm.hook).items()
        if not name.startswith("_") and getattr(caller, "spec", None) is not None
    }
    assert specs
    for name, function in specs.items():
        params = ", ".join(inspect.signature(function).parameters)
        expected = f"`{name}({params})`"
        assert any(expected in h for h in headings), f"docs/plugins.md lacks a heading {expected}"


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
