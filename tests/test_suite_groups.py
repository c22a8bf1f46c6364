"""The suite's own scheduling (tests/conftest.py): under the README's command
(pytest-xdist, ``--dist loadgroup``) each test reaches xdist with its group, its module's
name, so a module's tests run on one worker and its module-scoped fixtures (stores,
fine-tunes, servers) are built once."""

from __future__ import annotations

import os

import pytest


def test_this_test_reaches_xdist_in_its_modules_group(request: pytest.FixtureRequest) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER") or not request.config.getvalue("loadgroup"):
        pytest.skip("only under pytest-xdist with --dist loadgroup (the README's test command)")
    # xdist's loadgroup schedules by the "@GROUP" it appends to the node id
    assert request.node.nodeid.endswith(f"@{request.module.__name__}"), request.node.nodeid
