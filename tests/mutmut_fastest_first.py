"""A pytest plugin for mutation testing only (``[tool.mutmut]`` in pyproject.toml loads it
with ``-p``; docs/testing.md): a mutant's tests run fastest first.

mutmut hands pytest the tests that call a mutated function as a set, in no fixed order,
and stops at the first failure (``-x``). A mutant that makes a command-line test go on to
fine-tune (a licence refusal mutated away) would then run into its timeout, or not,
depending on where that set put the test, though a unit test beside it fails in
milliseconds. Sorted by the durations mutmut's own clean run recorded
(``mutmut-stats.json``, in the directory mutmut runs pytest in), the verdicts do not
depend on the order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        stats = json.loads(Path("mutmut-stats.json").read_text(encoding="utf-8"))
        durations = {str(k): float(v) for k, v in stats["duration_by_test"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # mutmut's clean run, before any duration is known: pytest's order
    # a test without a recorded duration is new: last, after the ones known to be fast
    items.sort(key=lambda item: (durations.get(item.nodeid, float("inf")), item.nodeid))
