"""Four identical `zoo finetune` commands started together (issue 21): one recipe, one
checkpoint folder, four writers. One lock per recipe makes them one run: the first trains
and registers, the others wait ("already running (pid N)") and then print the version the
first registered, exit 0. Exactly one version exists afterwards and the store checks
clean. A second home on the same store (another host of a team) does not register the
recipe again either: the store is asked for a version tagged with the recipe's key.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

import pytest
from finetune_helpers import make_images

from faults.helpers import registered, zoo_env
from zoo.cli import run

TRAIN = ["--random-init", "--epochs", "1", "--image-size", "32", "--batch-size", "4"]

# Imports zoo's CLI (the slow part), says it is ready, waits for the start signal, runs zoo.
_AT_THE_BARRIER = """
import runpy, sys, time
from pathlib import Path
from typing import Any
import torch, zoo.cli  # noqa: F401
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
deadline = time.monotonic() + 600
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.02)
sys.argv = ["zoo", *sys.argv[3:]]
runpy.run_module("zoo", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def together(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Four identical commands released at once on one home and a team store (a SQLite
    URI, so that a second home can share it); their processes and outputs."""
    tmp = tmp_path_factory.mktemp("together")
    data = make_images(tmp / "data", classes=2, per_class=6, size=(32, 32))
    store = f"sqlite:///{tmp / 'team.db'}"
    argv = ["finetune", "timm:test_resnet", str(data), *TRAIN, "--name", "together"]
    env = zoo_env(ZOO_HOME=str(tmp / "host-a"), MLFLOW_TRACKING_URI=store)
    go = tmp / "go"
    ready = [tmp / f"ready{i}" for i in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _AT_THE_BARRIER, str(r), str(go), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for r in ready
    ]
    try:
        deadline = time.monotonic() + 600
        while not all(r.exists() for r in ready):
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            assert time.monotonic() < deadline, "the four commands never got ready"
            time.sleep(0.1)
        go.touch()
        outs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)
    return {"procs": procs, "outs": outs, "store": store, "argv": argv, "tmp": tmp}


def test_four_identical_finetunes_started_together_register_one_version(
    together: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    procs, outs = together["procs"], together["outs"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", together["store"])
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    versions = registered("together")
    assert versions == ["models:/together/1"], versions
    uri = versions[0]
    trained = [i for i, (out, _) in enumerate(outs) if out.startswith(f"registered {uri}:")]
    assert len(trained) == 1, [o for o, _ in outs]
    others = [i for i in range(4) if i not in trained]
    pids = {p.pid for p in procs}
    waited = 0
    for i in others:
        out, err = outs[i]
        assert out.startswith(f"already registered {uri}: this recipe finished"), out
        waits = re.findall(r"waiting for the same recipe, already running \(pid (\d+)\)", err)
        assert len(waits) <= 1, err
        if waits:
            assert int(waits[0]) in pids - {procs[i].pid}, (waits, pids)
            waited += 1
    assert waited >= 1  # started on one signal: they met at the lock
    assert run(["registry", "check"]) == 0  # (and conftest's --verify scan after the test)


def test_a_second_home_on_the_same_store_does_not_register_the_recipe_again(
    together: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another host of the team, same store, same data path: it trains (its home has no
    result) but finds the recipe's version in the store before registering."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", together["store"])
    monkeypatch.setenv("ZOO_HOME", str(together["tmp"] / "host-b"))
    capsys.readouterr()
    assert run(together["argv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("already registered models:/together/1:"), captured
    assert "epoch 1/1" in captured.err  # it did train: only the store could tell it
    assert registered("together") == ["models:/together/1"]
