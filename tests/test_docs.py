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
