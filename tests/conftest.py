"""Shared fixtures: every test gets its own zoo home and Hugging Face cache, offline."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

gc.disable()  # until collection ends (pytest_collection_finish)

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # a dev dependency: only the property tests (test_properties_*) need it
    pass
else:
    # The property tests never flake (issue 24): the examples are derived from each test's
    # own name (derandomize), no example database carries failures from one run to the
    # next, and no deadline times an example on a loaded machine. too_slow is the one
    # health check that measures time (how long drawing the first examples took): under
    # load it fails a test whose inputs are fine, so it is off; every other check stays.
    settings.register_profile(
        "zoo",
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=75,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("zoo")
    # Hypothesis (6.131 on) also draws some values from the constants it finds in the
    # project's modules imported so far in the process: which those are depends on what
    # ran before (under xdist, on which modules a worker was given), so one test could get
    # other examples from one run to the next. No constants of ours: each test's examples
    # depend on the test alone. (A private hook: where it is gone, nothing is changed.)
    try:
        from hypothesis.internal.conjecture import providers as _providers

        _no_constants = _providers._local_constants
        _providers._get_local_constants = lambda: _no_constants
    except (ImportError, AttributeError):
        pass


@pytest.fixture(autouse=True)
def zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty ZOO_HOME and HF cache per test; nothing reaches a real hub."""
    home = tmp_path / "zoo-home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: no real hub
    monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    # mlflow.set_tracking_uri / set_registry_uri export these: an in-process zoo command
    # would point every later test (and its subprocesses, and the next module's fixtures)
    # at its store. Each test starts without them and leaves them as it found them.
    saved = {key: os.environ.pop(key, None) for key in _MLFLOW_URIS}
    from zoo.contract.plugins import reset_plugin_manager

    reset_plugin_manager()
    try:
        yield home
    finally:
        reset_plugin_manager()
        _restore(saved)


_MLFLOW_URIS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True, scope="module")
def _module_leaves_the_environment_as_it_found_it() -> Iterator[None]:
    """What a module-scoped fixture or an in-process zoo call exported (a store URI,
    HF_HUB_OFFLINE, HF_ENDPOINT) ends with the module: a later module on the same worker
    starts from the same environment whatever ran before it."""
    saved: dict[str, str | None] = dict(os.environ)
    yield
    _restore(dict.fromkeys(set(os.environ) - set(saved)) | saved)  # new ones removed


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the README's `-n 2`), each worker's torch and the processes it
    starts use one thread: two workers on two cores, not four threads fighting for them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"


# Seconds each test took (setup, call and teardown) in a run of the whole suite, written by
# `python -m pytest -n auto --dist loadgroup --record-durations tests/durations.json`: the
# groups are handed out longest first. A test it does not name counts as _UNTIMED seconds.
DURATIONS = Path(__file__).with_name("durations.json")
_UNTIMED = 2.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        metavar="PATH",
        help="write each test's seconds (setup + call + teardown) to PATH as JSON",
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups given here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Which tests run on one worker (``--dist loadgroup``): each module's tests together
    (they share module-scoped stores and fine-tunes, built once), and every test of the
    team server on PostgreSQL together (one server per session, started once).

    The groups are then ordered longest first, by the recorded durations: xdist hands
    them out in this order (``--no-loadscope-reorder``, in pyproject's addopts, keeps it
    from reordering them by test count), so the two-minute end-to-end tests start at once
    instead of running alone at the end while the other worker idles."""
    known = json.loads(DURATIONS.read_text(encoding="utf-8")) if DURATIONS.exists() else {}
    groups: dict[str, str] = {}
    seconds: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        group = "postgres" if item.get_closest_marker("postgres") else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))
        groups[item.nodeid] = group
        seconds[group] = seconds.get(group, 0.0) + known.get(item.nodeid, _UNTIMED)
        first.setdefault(group, i)
    items.sort(key=lambda item: (-seconds[groups[item.nodeid]], first[groups[item.nodeid]]))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The libraries the tests import live as long as the process: imported now, with
    what collection imported (no collection meanwhile: gc.disable() above), then one
    collection, and what is left is out of the collector's way from then on. A full
    collection walks every object it tracks: with torch, MLflow and timm in, 0.3-0.5 s
    each, every few seconds of a worker's run (docs/testing.md)."""
    import importlib

    from tests.prefork import PRELOAD
    from zoo.engine.warmup import LATER  # what a fine-tune imports after its data check

    for name in (*PRELOAD, *LATER):
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    gc.enable()


_recorded: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under xdist the controller receives every worker's reports: it adds them up."""
    _recorded[report.nodeid] = _recorded.get(report.nodeid, 0.0) + report.duration


def _without_group(nodeid: str) -> str:
    """xdist's loadgroup ends a node id with ``@GROUP`` (a module name or ``postgres``);
    a test id's own ``@`` (``[models:/x@champion]``) is followed by ``]`` or ``/``."""
    base, _, tail = nodeid.rpartition("@")
    return base if base and tail and not set(tail) & set("[]/:") else nodeid


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--record-durations")
    if path and not os.environ.get("PYTEST_XDIST_WORKER") and _recorded:
        timed = {_without_group(k): round(v, 1) for k, v in sorted(_recorded.items())}
        Path(path).write_text(json.dumps(timed, indent=0) + "\n", encoding="utf-8")
