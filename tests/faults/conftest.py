"""The fault suite's invariant: after every case, `zoo registry check --verify` finds no
version pointing at missing or altered artifacts (tests/conftest.py's autouse
``zoo_home`` gives each test its own home; this runs after it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


def verify_store() -> None:
    """Run the invariant scan on whatever store the test left (if it made one)."""
    from zoo.registry import store

    uri = store.tracking_uri()
    if store.is_embedded(uri) and not store.embedded_exists():
        return
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return
    from zoo.registry import check

    report = check(verify=True)
    assert report.ok, report.problems + report.altered


@pytest.fixture(autouse=True)
def store_invariant(zoo_home: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    # (tests/conftest.py's zoo_home restores the MLflow URIs a case exported, after this)
    yield
    if request.node.get_closest_marker("no_invariant"):
        return
    home = Path(os.environ.get("ZOO_HOME", zoo_home))
    if home.is_dir() or os.environ.get("MLFLOW_TRACKING_URI"):
        verify_store()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "no_invariant: the case leaves a store the scan must refuse (it checks)"
    )
