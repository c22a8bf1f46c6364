"""SIGKILL at each write. A killed import or export leaves nothing visible (no local:NAME,
no --out folder, no version); the staging folder it leaves is removed by the next run
of the same command, or by `zoo registry check --clean`, and never one a live process
is still writing. (Registration: tests/test_registry_robustness.py; a training
checkpoint: tests/test_engine_resume.py and test_resume.py here.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults.helpers import kill_at_pause, registered, run_zoo, zoo_env


def _checkpoint(tmp_path: Path) -> Path:
    import timm
    from safetensors.torch import save_file

    ckpt = tmp_path / "mine.safetensors"
    save_file(timm.create_model("test_resnet", pretrained=False).state_dict(), ckpt)
    return ckpt


def _staging(folder: Path, prefix: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"{prefix}*") if p.is_dir())


def test_killed_import_leaves_nothing_visible_and_the_next_import_cleans_up(
    tmp_path: Path, zoo_home: Path
) -> None:
    ckpt = _checkpoint(tmp_path)
    kill_at_pause(["import", str(tmp_path / "paused"), str(ckpt), "first"], tmp_path / "paused")
    local = zoo_home / "local"
    (left,) = _staging(local, ".zoo-import-")
    assert (left / "model.safetensors").is_file()  # killed with the weights half-placed
    assert not (local / "first").exists()
    # an empty folder an older zoo left when killed (no staging lock inside)
    legacy = local / ".first.abc123xy"
    legacy.mkdir()
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    listed = run_zoo("list", "--provider", "local", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)["models"] == []

    args = ["--arch", "timm:test_resnet", "--license", "mit"]
    again = run_zoo("import", str(ckpt), *args, "--name", "second")
    assert again.returncode == 0, again.stderr
    assert _staging(local, ".") == []
    assert sorted(p.name for p in local.iterdir()) == ["second"]


def test_registry_check_clean_removes_a_killed_imports_staging_but_not_a_live_one(
    tmp_path: Path, zoo_home: Path
) -> None:
    ckpt = _checkpoint(tmp_path)
    # a live import, paused in its staging folder while the others run
    live = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("worker.py")), "import",
         str(tmp_path / "live"), str(ckpt), "live"],
        env=zoo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "live").exists():
            assert live.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        # this import's own clean-up leaves the live staging alone; then it is killed
        kill_at_pause(["import", str(tmp_path / "dead"), str(ckpt), "dead"], tmp_path / "dead")
        assert len(_staging(zoo_home / "local", ".zoo-import-")) == 2
        proc = run_zoo("registry", "check", "--clean")
        assert proc.returncode == 0, proc.stderr
        assert "removed leftover staging folder" in proc.stderr
        (kept,) = _staging(zoo_home / "local", ".zoo-import-")
        assert (kept / "model.safetensors").is_file()  # the live one is untouched
    finally:
        live.kill()
        live.wait(30)


@pytest.mark.slow
def test_killed_export_leaves_no_out_folder_and_the_next_export_cleans_up(
    tmp_path: Path,
) -> None:
    ckpt = _checkpoint(tmp_path)
    args = ["--arch", "timm:test_resnet", "--license", "mit", "--name", "base"]
    assert run_zoo("import", str(ckpt), *args).returncode == 0
    exports = tmp_path / "exports"
    out = exports / "first"
    kill_at_pause(["export", str(tmp_path / "paused"), "local:base", str(out)], tmp_path / "paused")
    (left,) = _staging(exports, ".zoo-export-")
    assert (left / "zoo-export.json").is_file()
    assert not out.exists()
    assert registered() == []

    second = exports / "second"
    proc = run_zoo("export", "local:base", "--out", str(second), "--no-benchmark")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in exports.iterdir()) == ["second"]
    assert (second / "model.onnx").is_file()


def test_registry_check_clean_removes_export_staging_under_zoo_home(zoo_home: Path) -> None:
    """An export killed while writing to the default --out ($ZOO_HOME/exports)."""
    exports = zoo_home / "exports"
    dead = exports / ".zoo-export-deadbeef"
    dead.mkdir(parents=True)
    (dead / ".zoo-staging.lock").write_text("12345\n")  # no process holds its lock
    (dead / "model.onnx").write_bytes(b"half")
    proc = run_zoo("registry", "check", "--clean", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["staging_removed"] == [str(dead)]
    assert not dead.exists()


def test_killed_pull_leaves_no_partial_file_and_the_next_pull_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_pull import REPO, _repo_dir, _tiny_repo

    from tests.hub_fixture import running_hub

    with running_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # set where CI runs
        _tiny_repo(hub, n_floats=2**20)
        hub.stall[(REPO, "model.safetensors")] = 120.0  # the download hangs mid-way
        proc = subprocess.Popen(
            [sys.executable, "-m", "zoo", "pull", f"hf:{REPO}"],
            # a generous metadata timeout: on a loaded machine the fixture hub answers slowly
            env=zoo_env(HF_ENDPOINT=hub.url, HF_HUB_ETAG_TIMEOUT="120"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        while hub.count("GET", "model.safetensors") == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    f"exit {proc.wait()} before the download: {proc.stderr.read()}"
                )  # type: ignore[union-attr]
            time.sleep(0.1)
        proc.kill()
        proc.wait(30)
        from zoo.weights.cache import list_records

        assert list_records() == []  # nothing recorded as pulled
        hub.stall.clear()
        again = run_zoo("pull", f"hf:{REPO}", env={"HF_ENDPOINT": hub.url})
        assert again.returncode == 0, again.stderr
        # what the snapshot serves is whole (huggingface_hub may keep its own
        # *.incomplete partial of the killed process in blobs/: never linked)
        (served,) = _repo_dir().glob("snapshots/*/model.safetensors")
        assert not served.resolve().name.endswith(".incomplete")
        verify = run_zoo("cache", "verify", env={"HF_ENDPOINT": hub.url})
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_nothing_is_served_from_a_staged_import(tmp_path: Path, zoo_home: Path) -> None:
    """The local provider ignores staging folders even when they hold a whole import's
    files (a copy of a finished one), and lists the finished import beside them."""
    from zoo.cli import run
    from zoo.weights.local import local_models

    ckpt = _checkpoint(tmp_path)
    args = ["import", str(ckpt), "--arch", "timm:test_resnet", "--license", "mit"]
    assert run([*args, "--name", "done"]) == 0
    staged = zoo_home / "local" / ".zoo-import-x1y2z3"
    shutil.copytree(zoo_home / "local" / "done", staged)
    assert [m.name for m in local_models()] == ["done"]
