"""`zoo home du` and `zoo home prune` on a home made by real runs (issue 22).

The home (built once per module, then restored at the same path for every test, so the
store's absolute artifact locations hold): models:/pets/1 fine-tuned from
``timm:test_resnet`` pulled from a local Hub (its lineage pins the pulled SHA-256), an
unfinished run (``timm:test_efficientnet``, random weights, stopped after its first
epoch: a checkpoint without ``result.json``), ``local:mine`` imported from a second
pulled model, and a third pulled model nothing refers to.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from faults.helpers import run_zoo_readonly, zoo_env

from tests.finetune_helpers import make_images
from tests.hub_fixture import running_hub
from zoo.cli import run

FINETUNE = ["--epochs", "1", "--image-size", "32", "--batch-size", "8"]
DAY = 86400.0


@dataclass
class Home:
    root: Path  # ZOO_HOME
    hf: Path  # HF_HUB_CACHE
    data: Path
    registered_run: Path  # runs/KEY of models:/pets/1
    unfinished_run: Path
    referenced: str  # the pulled reference models:/pets/1's lineage pins
    imported_from: str  # the pulled reference local:mine was imported from
    unreferenced: str  # a pulled reference nothing refers to


def _safetensors_of(arch: str, seed: int) -> bytes:
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    return save({k: v.contiguous() for k, v in model.state_dict().items()})


def _stop_after_first_epoch() -> Any:
    from zoo.engine import Callback

    class Stop(Callback):
        def on_epoch_end(self, state: Any, record: dict[str, Any]) -> None:
            raise KeyboardInterrupt

    return Stop()


def _build(base: Path, mp: pytest.MonkeyPatch) -> Home:
    from zoo.contract.errors import Interrupted
    from zoo.engine import Recipe, finetune
    from zoo.weights.cache import list_records

    root, hf = base / "home", base / "hf"
    data = make_images(base / "data", classes=2, per_class=8)
    with running_hub() as hub:
        mp.setenv("HF_ENDPOINT", hub.url)
        weights = {"model.safetensors": _safetensors_of("test_resnet", 0)}
        hub.add_repo("timm/test_resnet.r160_in1k", weights)
        card = b"---\nlicense: mit\n---\n"
        config = json.dumps({"architecture": "test_resnet", "num_classes": 1000}).encode()
        files = {"model.safetensors": _safetensors_of("test_resnet", 1), "README.md": card}
        hub.add_repo("acme/resnet-b", {**files, "config.json": config})
        files = {"model.safetensors": _safetensors_of("test_resnet", 2), "config.json": config}
        hub.add_repo("acme/tiny-net", files)
        assert run(["pull", "hf:acme/resnet-b"]) == 0
        assert run(["pull", "hf:acme/tiny-net"]) == 0
        args = ["finetune", "timm:test_resnet", str(data), *FINETUNE, "--name", "pets"]
        assert run([*args, "--strategy", "linear-probe"]) == 0
    mp.setenv("HF_HUB_OFFLINE", "1")  # undone with the fixture's MonkeyPatch
    by_name = {r.reference.split("@")[0]: r for r in list_records()}
    source = next(f.path for f in by_name["hf:acme/resnet-b"].files if f.name.endswith("tensors"))
    imported = ["import", source, "--arch", "timm:test_resnet", "--license", "mit"]
    assert run([*imported, "--name", "mine"]) == 0
    recipe = Recipe(
        ref="timm:test_efficientnet",
        data=str(data),
        strategy="linear-probe",
        epochs=2,
        image_size=32,
        random_init=True,
        name="unfinished",
    )
    with pytest.raises(Interrupted):
        finetune(recipe, callbacks=[_stop_after_first_epoch()])
    runs = {registered(p): p for p in (root / "runs").iterdir()}
    return Home(
        root=root,
        hf=hf,
        data=data,
        registered_run=runs["models:/pets/1"],
        unfinished_run=runs[None],
        referenced=next(r for r in by_name.values() if "test_resnet" in r.reference).reference,
        imported_from=by_name["hf:acme/resnet-b"].reference,
        unreferenced=by_name["hf:acme/tiny-net"].reference,
    )


def registered(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "result.json").read_text())["model_uri"]
    except OSError:
        return None


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    from zoo.contract.plugins import reset_plugin_manager

    base = tmp_path_factory.mktemp("prune")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_HOME", str(base / "home"))
        mp.setenv("HF_HUB_CACHE", str(base / "hf"))
        mp.setenv("HF_HOME", str(base / "hf-home"))
        mp.setenv("HF_HUB_DISABLE_XET", "1")
        mp.setenv("CI", "true")
        for name in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "MLFLOW_TRACKING_URI"):
            mp.delenv(name, raising=False)
        reset_plugin_manager()
        home = _build(base, mp)
    for folder in (home.root, home.hf):
        shutil.copytree(folder, folder.with_name(folder.name + ".template"), symlinks=True)
    yield home


@pytest.fixture
def home(template: Home, monkeypatch: pytest.MonkeyPatch) -> Home:
    """The template home, as it was built, at the path it was built at."""
    from zoo.disk.lock import release_caches

    release_caches()  # this process used the template's caches: let other processes prune
    for folder in (template.root, template.hf):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(folder.with_name(folder.name + ".template"), folder, symlinks=True)
    monkeypatch.setenv("ZOO_HOME", str(template.root))
    monkeypatch.setenv("HF_HUB_CACHE", str(template.hf))
    monkeypatch.setenv("HF_HOME", str(template.hf.with_name("hf-home")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CI", "true")
    return template


def _files(root: Path) -> dict[str, int]:
    """Every regular file under ``root`` (links not followed): relative path -> size."""
    out = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                out[str(path.relative_to(root))] = st.st_size
    return out


def _zoo(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _prune(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = _zoo(capsys, "home", "prune", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def _removed_paths(doc: dict[str, Any]) -> set[str]:
    return {p for item in doc["items"] for p in item["paths"]}


def _age(paths: list[Path], days: float) -> None:
    then = time.time() - days * DAY
    for path in paths:  # a cache folder (row shards) with every file in it
        for each in [*path.rglob("*"), path] if path.is_dir() else [path]:
            os.utime(each, (then, then))


def _caches(root: Path) -> list[Path]:
    found = [*root.glob("features/*"), *root.glob("prefix/*"), *root.glob("stage-features/*")]
    return sorted(found + list(root.glob("data/decoded/*/*")) + list(root.glob("data/verdicts/*")))


# ------------------------------------------------------------------------------ du


def test_du_counts_every_file_of_the_home_once_by_kind(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _zoo(capsys, "home", "du", "--json")
    assert code == 0, err
    doc = json.loads(out)
    on_disk = _files(home.root)
    assert doc["home"] == str(home.root)
    assert doc["files"] == len(on_disk) and doc["bytes"] == sum(on_disk.values())
    kinds = {k["kind"]: k for k in doc["kinds"]}
    assert sum(k["bytes"] for k in kinds.values()) == doc["bytes"]
    assert sum(k["files"] for k in kinds.values()) == doc["files"]

    def size(prefix: str, suffix: str = "") -> tuple[int, int]:
        chosen = [s for p, s in on_disk.items() if p.startswith(prefix) and p.endswith(suffix)]
        return len(chosen), sum(chosen)

    def figures(kind: str) -> tuple[int, int]:
        return kinds[kind]["files"], kinds[kind]["bytes"]

    registered_pt = size(f"runs/{home.registered_run.name}/", ".pt")
    assert registered_pt[0] == 3 and figures("checkpoints-registered") == registered_pt
    assert figures("checkpoints-unfinished") == size(f"runs/{home.unfinished_run.name}/", ".pt")
    assert figures("checkpoints-unfinished")[0] >= 1
    assert figures("artifacts") == size("mlflow/artifacts/")
    assert figures("decoded") == size("data/decoded/") and kinds["decoded"]["files"] == 2 * 16
    assert figures("verdicts") == size("data/verdicts/") and kinds["verdicts"]["files"] == 1
    assert figures("features") == size("features/") and kinds["features"]["files"] >= 1
    assert figures("imports") == size("local/") and figures("weights") == size("cache/")
    for kind in ("store", "run-records", "catalog"):
        assert kinds[kind]["files"] > 0, kind
    # the three pulled models' files are in the Hugging Face cache, outside the home
    assert doc["outside"]["models"] == 3
    blobs = [p for p in home.hf.rglob("blobs/*") if p.is_file()]
    assert doc["outside"]["bytes"] == sum(p.stat().st_size for p in blobs)

    code, out, err = _zoo(capsys, "home", "du")
    assert code == 0, err
    assert "checkpoints of registered runs" in out and "decoded images" in out
    assert "total" in out and "Hugging Face cache" in out
    assert "zoo home prune" in err


# ---------------------------------------------------------------------------- prune


def test_the_dry_run_removes_nothing_and_lists_exactly_what_the_removal_removes(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _files(home.root)
    hf_before = _files(home.hf)
    dry = _prune(capsys, "--older-than", "0d", "--unreferenced-weights")
    assert dry["dry_run"] is True
    assert _files(home.root) == before and _files(home.hf) == hf_before
    listed = _removed_paths(dry)
    # a cache entry is a folder of row shards, listed once and removed whole
    folders = {p for p in listed if Path(p).is_dir()}
    assert folders and all(Path(p).parent.name == "features" for p in folders)
    files = {str(f) for p in folders for f in Path(p).rglob("*") if f.is_file()}
    kinds = {"checkpoints", "features", "decoded", "verdicts", "weights"}
    assert {i["kind"] for i in dry["items"]} == kinds
    (store,) = [i for i in dry["items"] if i["kind"] == "verdicts"]
    assert store["what"].endswith(f"the image check's verdicts of {home.data}")
    assert dry["bytes"] == sum(i["bytes"] for i in dry["items"]) > 0

    done = _prune(capsys, "--older-than", "0d", "--unreferenced-weights", "--yes")
    assert done["dry_run"] is False and not done["failed"]
    assert _removed_paths(done) == listed and done["bytes"] == dry["bytes"]
    after = _files(home.root)
    gone = {str(home.root / p) for p in set(before) - set(after)}
    gone |= {str(home.hf / p) for p in set(hf_before) - set(_files(home.hf))}
    inside = {p for p in (listed - folders) | files if p.startswith(str(home.root))}
    assert inside <= gone  # every listed file of the home is gone...
    assert not any(Path(p).exists() for p in folders)
    assert {p for p in gone if not p.startswith(str(home.hf))} == inside  # ...and only them
    assert set(after) - set(before) <= {"locks/caches.lock"}
    assert not list(home.root.glob(".zoo-prune-*"))  # nothing left aside
    weights = [i for i in done["items"] if i["kind"] == "weights"]
    assert [i["reference"] for i in weights] == [home.unreferenced]
    assert not any(Path(p).exists() for p in weights[0]["paths"])

    again = _prune(capsys, "--older-than", "0d", "--unreferenced-weights")
    assert again["items"] == []  # nothing more to remove


def test_after_prune_the_same_finetune_prints_the_registered_version_and_trains_nothing(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _prune(capsys, "--yes")
    assert [i["kind"] for i in done["items"]] == ["checkpoints"]  # the caches are fresh
    assert not list(home.registered_run.glob("*.pt"))
    assert (home.registered_run / "result.json").is_file()
    assert list(home.unfinished_run.glob("*.pt"))  # an unfinished run's resume point stays

    args = ["finetune", "timm:test_resnet", str(home.data), *FINETUNE, "--name", "pets"]
    code, out, err = _zoo(capsys, *args, "--strategy", "linear-probe")
    assert code == 0, err
    assert "already registered models:/pets/1" in out + err
    assert "epoch" not in err and not list(home.registered_run.glob("*.pt"))
    from zoo.registry import list_versions

    assert [v.version for v in list_versions("pets")] == [1]


def test_registered_artifacts_and_referenced_weights_always_stay(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.weights.cache import list_records

    store = {p: s for p, s in _files(home.root).items() if p.startswith(("mlflow/", "local/"))}
    pulled = sorted(r.reference for r in list_records())
    done = _prune(capsys, "--older-than", "0d", "--yes")
    assert sorted(r.reference for r in list_records()) == pulled  # weights: only when asked
    assert any("--unreferenced-weights" in line for line in done["kept"])

    done = _prune(capsys, "--older-than", "0d", "--yes", "--unreferenced-weights")
    assert [i.get("reference") for i in done["items"]] == [home.unreferenced]
    left = sorted(r.reference for r in list_records())
    assert left == sorted([home.referenced, home.imported_from])
    kept = next(line for line in done["kept"] if line.startswith("pulled weights"))
    assert home.referenced in kept and home.imported_from in kept
    now = {p: s for p, s in _files(home.root).items() if p.startswith(("mlflow/", "local/"))}
    assert now == store
    assert _zoo(capsys, "cache", "verify")[0] == 0  # what stays is whole
    code, _out, err = _zoo(capsys, "registry", "check", "--verify")
    assert code == 0, err


def test_an_old_cache_survives_30d_and_goes_with_0d(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    caches = _caches(home.root)
    old, fresh = caches[:-1], caches[-1]
    _age(old, 10)
    done = _prune(capsys, "--older-than", "30d", "--yes")
    assert all(p.exists() for p in caches)
    assert {i["kind"] for i in done["items"]} == {"checkpoints"}

    done = _prune(capsys, "--yes")  # the default, 7d: the ten-day-old ones go
    assert not any(p.exists() for p in old) and fresh.exists()
    assert _removed_paths(done) == {str(p) for p in old}

    _prune(capsys, "--older-than", "0d", "--yes")
    assert not fresh.exists()


_HOLD_RECIPE_LOCK = """
import json, sys
from pathlib import Path
from zoo.engine.checkpoint import recipe_lock
from zoo.engine.recipe import Recipe
run = Path(sys.argv[1])
recipe = Recipe.from_dict(json.loads((run / "result.json").read_text())["recipe"])
assert recipe.key() == run.name
with recipe_lock(recipe):
    print("held", flush=True)
    sys.stdin.read()
"""

_PAUSED_RUN = """
import sys
from zoo.engine import Callback, Recipe, finetune

class Pause(Callback):
    def on_epoch_end(self, state, record):
        print("held", flush=True)
        sys.stdin.read()

recipe = Recipe(ref="timm:test_efficientnet", data=sys.argv[1], strategy="linear-probe",
                epochs=1, image_size=32, random_init=True, name="running")
finetune(recipe, callbacks=[Pause()])
"""


def _holding(script: str, *args: str) -> subprocess.Popen[str]:
    """A process running ``script``, once it says it holds what it holds."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=zoo_env(),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "held":
            return proc
    pytest.fail(f"the process ended ({proc.wait()}) before it held anything")


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(900) == 0  # a paused run registers once released: minutes when loaded


def test_a_running_runs_checkpoints_are_kept_and_the_output_names_it(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoints = sorted(home.registered_run.glob("*.pt"))
    proc = _holding(_HOLD_RECIPE_LOCK, str(home.registered_run))
    try:
        dry = _prune(capsys, "--older-than", "0d")
        code, _out, err = _zoo(capsys, "home", "prune", "--older-than", "0d", "--yes")
    finally:
        _release(proc)
    assert code == 0, err
    assert sorted(home.registered_run.glob("*.pt")) == checkpoints
    assert f"pid {proc.pid}" in err and "running" in err
    running = f"runs/{home.registered_run.name} (models:/pets/1)"
    assert [s["what"] for s in dry["skipped"]] == [running]
    assert not any(p.exists() for p in _caches(home.root))  # the rest went
    _prune(capsys, "--yes")
    assert not list(home.registered_run.glob("*.pt"))  # once it has finished, they go


def test_a_running_finetune_keeps_the_caches_and_its_checkpoint(
    home: Home, capsys: pytest.CaptureFixture[str]
) -> None:
    caches = _caches(home.root)
    runs = set((home.root / "runs").iterdir())
    proc = _holding(_PAUSED_RUN, str(home.data))  # a real run, paused after its epoch
    try:
        (running,) = set((home.root / "runs").iterdir()) - runs
        code, _out, err = _zoo(capsys, "home", "prune", "--older-than", "0d", "--yes")
        assert code == 0, err
        assert all(p.exists() for p in caches)
        assert f"in use by pid {proc.pid}" in err
        assert (running / "state.pt").is_file()  # unfinished, and running
        assert not list(home.registered_run.glob("*.pt"))  # the registered run's went
    finally:
        _release(proc)
    assert registered(running) == "models:/running/1"  # it finished undisturbed
    done = _prune(capsys, "--older-than", "0d", "--yes")
    assert not any(p.exists() for p in caches)
    assert str(running / "state.pt") in _removed_paths(done)


def test_an_error_half_way_removes_nothing(home: Home) -> None:
    before = _files(home.root)
    # the decoded images are listed after the checkpoints: those are moved aside first
    result = run_zoo_readonly(
        "home", "prune", "--older-than", "0d", "--yes", readonly=[home.root / "data"]
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("zoo: error: cannot remove") and "nothing was removed" in lines[-1]
    assert "Traceback" not in result.stderr
    after = _files(home.root)
    assert set(after) - set(before) <= {"locks/caches.lock"} and set(before) <= set(after)
    assert not list(home.root.glob(".zoo-prune-*"))


def test_a_read_only_or_missing_home_and_a_bad_age_get_one_line(
    home: Home, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _files(home.root)
    result = run_zoo_readonly("home", "prune", "--yes", readonly=[home.root])
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("zoo: error: ZOO_HOME") and "read-only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    dry = run_zoo_readonly("home", "prune", "--json", readonly=[home.root])
    assert dry.returncode == 0, dry.stderr
    assert {i["kind"] for i in json.loads(dry.stdout)["items"]} == {"checkpoints"}
    du = run_zoo_readonly("home", "du", "--json", readonly=[home.root])
    assert du.returncode == 0 and json.loads(du.stdout)["files"] == len(before)
    assert _files(home.root) == before

    code, _out, err = _zoo(capsys, "home", "prune", "--older-than", "7x")
    assert code == 2 and err.count("\n") == 1 and "7d, 12h, 0d" in err

    missing = tmp_path / "no-home"
    monkeypatch.setenv("ZOO_HOME", str(missing))
    for args in (["home", "du"], ["home", "prune", "--yes"]):
        code, _out, err = _zoo(capsys, *args)
        assert code == 3 and err.startswith("zoo: error: ZOO_HOME") and err.count("\n") == 1
        assert "does not exist" in err
    assert not missing.exists()
