"""A registering run imports what it needs later while its data is checked
(zoo/engine/warmup.py): on a thread started only once the check's worker processes run
(never by a check made in the process), ended before the run goes on, cut short by a
refusal; and the `zoo` command leaves the collector out of its exit (zoo/cli)."""

from __future__ import annotations

import gc
import multiprocessing
import sys
import threading
from pathlib import Path

import pytest

from tests.finetune_helpers import make_images
from zoo.data import check_listing, list_files
from zoo.engine import Recipe, finetune, warmup

PROBE = """
import threading
THREAD = threading.current_thread().name
"""


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Importable modules of the test's own, forgotten afterwards: ``make(name, code)``."""
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    made: list[str] = []

    def make(name: str, code: str = PROBE) -> str:
        (tmp_path / "mods").mkdir(exist_ok=True)
        (tmp_path / "mods" / f"{name}.py").write_text(code, encoding="utf-8")
        made.append(name)
        return name

    yield make
    for name in made:
        sys.modules.pop(name, None)


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_alongside_is_called_once_the_workers_run_and_never_for_a_check_in_process(tmp_path):
    data = make_images(tmp_path / "data", classes=2, per_class=30, size=(12, 12))
    seen: list[int] = []

    def alongside() -> None:
        seen.append(len(multiprocessing.active_children()))

    checked = check_listing(list_files(data), workers=2, alongside=alongside)
    assert len(checked.samples) == 60
    assert seen == [2]  # called once, both workers already forked
    seen.clear()
    check_listing(list_files(data), workers=1, cache=False, alongside=alongside)
    assert seen == []  # one process: nothing runs beside it


def test_the_modules_import_on_their_own_thread_and_stay_out_of_the_collector(modules, unfrozen):
    name = modules("zoo_warm_probe")
    warm = warmup.Warmup([name, "zoo_warm_missing_module"])  # a failing import is not fatal
    warm.join()  # not started: nothing to wait for
    assert name not in sys.modules
    assert gc.get_freeze_count() == 0
    warm.start()
    warm.start()  # once
    warm.join()
    assert sys.modules[name].THREAD == "zoo-warmup"
    assert gc.get_freeze_count() > 0
    assert gc.isenabled()
    assert not any(t.name == "zoo-warmup" for t in threading.enumerate())


def test_stop_leaves_the_modules_not_begun(modules, unfrozen):
    sync = modules("zoo_warm_sync", "import threading\nWARM = None\nSTARTED = threading.Event()\n")
    import zoo_warm_sync  # type: ignore[import-not-found]

    slow = modules(
        "zoo_warm_slow",
        "import zoo_warm_sync as s\ns.STARTED.set()\ns.WARM._stop.wait(30)\n",
    )
    after = modules("zoo_warm_after")
    warm = warmup.Warmup([slow, after])
    zoo_warm_sync.WARM = warm
    warm.start()
    assert zoo_warm_sync.STARTED.wait(30)
    warm.stop()  # the import under way ends; the next is not begun
    assert slow in sys.modules and after not in sys.modules
    assert sync in sys.modules


def test_a_registering_run_warms_up_during_its_check_and_waits_for_it(
    tmp_path, modules, unfrozen, monkeypatch
):
    name = modules("zoo_warm_run")
    monkeypatch.setattr(warmup, "LATER", (name,))

    def recipe(seed: int) -> Recipe:  # new images each time: a check with work to do
        data = make_images(
            tmp_path / f"data{seed}", classes=2, per_class=30, size=(12, 12), seed=seed
        )
        return Recipe(
            ref="timm:test_resnet",
            data=str(data),
            strategy="linear-probe",
            random_init=True,
            image_size=32,
            batch_size=8,
            workers=2,
            precision="fp32",
            epochs=1,
        )

    finetune(recipe(1), register=False)  # trains, registers nothing: nothing to warm
    assert name not in sys.modules
    finetune(recipe(2), register=True)
    assert sys.modules[name].THREAD == "zoo-warmup"
    assert not any(t.name == "zoo-warmup" for t in threading.enumerate())


def test_the_zoo_command_exits_without_a_collection_of_what_it_imported(unfrozen, monkeypatch):
    from zoo.cli import main

    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(sys, "argv", ["zoo", "--version"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 0
    assert gc.get_freeze_count() > 0
