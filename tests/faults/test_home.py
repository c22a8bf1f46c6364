"""The zoo home itself as the fault: a file where the folder should be, a read-only home,
and a home moved with `mv` (MLflow keeps absolute artifact locations)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from registry_backends import run_worker

from faults.helpers import expect_error, read_only, run_zoo, zoo_env


def test_zoo_home_pointing_at_a_file_is_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    for args in (["list"], ["registry", "list"], ["cache", "ls"]):
        proc = run_zoo(*args, env={"ZOO_HOME": str(afile)})
        expect_error(proc, 2, "ZOO_HOME", "is a file")
    proc = run_zoo("list", env={"ZOO_HOME": str(afile / "below")})
    expect_error(proc, 2, "ZOO_HOME", "inside a file")
    assert afile.read_text() == "x"


def test_read_only_home_degrades_list_and_refuses_export_in_one_line(tmp_path: Path) -> None:
    home = tmp_path / "ro-home"
    assert run_worker("register", "ro", env={"ZOO_HOME": str(home)}).returncode == 0
    before = sorted(p.name for p in home.iterdir())
    listed = read_only(home, "list", "test_res*", "--json")
    assert listed.returncode == 0, listed.stderr
    refs = [m["reference"] for m in json.loads(listed.stdout)["models"]]
    assert any(r.startswith("timm:test_resnet") for r in refs), refs
    assert sorted(p.name for p in home.iterdir()) == before  # no index cache written
    exported = read_only(home, "export", "ro", "--out", str(tmp_path / "out"))
    expect_error(exported, 2, "read-only", "ZOO_HOME")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_home_moved_with_mv_is_refused_then_zoo_home_move_repairs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "home-a"
    proc = run_worker("register", "moved", env={"ZOO_HOME": str(first)})
    assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""
    moved = tmp_path / "home-b"
    first.rename(moved)
    for args in (["registry", "list"], ["registry", "check"], ["export", "moved"]):
        refused = run_zoo(*args, env={"ZOO_HOME": str(moved)})
        expect_error(refused, 2, "zoo home move", str(first))
    assert not first.exists()  # nothing recreated at the old place

    fixed = run_zoo("home", "move", str(moved), env={"ZOO_HOME": str(moved)})
    assert fixed.returncode == 0, fixed.stderr
    check = run_zoo("registry", "check", "--verify", "--json", env={"ZOO_HOME": str(moved)})
    assert check.returncode == 0 and json.loads(check.stdout)["verified"] == 2, check.stderr

    # then a proper move to a third place, read back by a plain MLflow client
    third = tmp_path / "elsewhere" / "home-c"
    done = run_zoo("home", "move", str(third), "--json", env={"ZOO_HOME": str(moved)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rewritten"] >= 4
    assert not moved.exists() and (third / "mlflow" / "mlflow.db").is_file()
    plain = (
        "import sys, mlflow\n"
        "mlflow.set_tracking_uri(sys.argv[1])\n"
        "m = mlflow.pytorch.load_model('models:/moved/1')\n"
        "print(type(m).__name__)\n"
    )
    proc2 = subprocess.run(
        [sys.executable, "-c", plain, f"sqlite:///{third / 'mlflow' / 'mlflow.db'}"],
        env=zoo_env(MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc2.returncode == 0, proc2.stderr[-2000:]
    monkeypatch.setenv("ZOO_HOME", str(third))  # the invariant scan runs on the moved home


def test_home_move_refuses_a_non_empty_destination(tmp_path: Path, zoo_home: Path) -> None:
    (zoo_home / "catalog").mkdir(parents=True)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("x")
    proc = run_zoo("home", "move", str(full))
    expect_error(proc, 2, "not an empty folder")
    inside = run_zoo("home", "move", str(zoo_home / "sub"))
    expect_error(inside, 2, "inside the zoo home")
    assert (full / "keep").read_text() == "x" and (zoo_home / "catalog").is_dir()
