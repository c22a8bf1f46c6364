"""DDP under torchrun on CPU (gloo), as real processes: `--nproc-per-node 2`, two "nodes"
on loopback (`--nnodes 2 --rdzv-endpoint 127.0.0.1:PORT`, separate zoo homes, one shared
tracking store), a process killed mid-epoch, a refusal on rank 0 alone.

The CUDA path (NCCL, one process per GPU) is tests/test_distributed_gpu.py."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import prefork
from tests.finetune_helpers import make_images
from tests.registry_backends import free_port

FAULTS = Path(__file__).parent / "fixtures" / "engine" / "ddp"  # a plugin + its dist-info
COMMON = [
    "timm:test_resnet",
    "--random-init",
    "--image-size",
    "32",
    "--batch-size",
    "8",
    "--device",
    "cpu",
    "--json",
]


def _env(home: Path, **extra: str) -> dict[str, str]:
    """The commands' environment; torchrun's workers are forked from tests/prefork.py's
    preloaded interpreter too (its ``PYTHON_EXEC`` stand-in), not started afresh."""
    env = dict(os.environ, CI="true", ZOO_HOME=str(home), PYTHONUNBUFFERED="1")
    env.update(prefork.torchrun_env())
    env["PYTHONPATH"] = os.pathsep.join([str(FAULTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _zoo(data: Path, *args: str, env: dict[str, str], session: bool = False) -> Any:
    """The launching ``zoo finetune``: forked from tests/prefork.py's preloaded
    interpreter, in a process group of its own, as a terminal's job is; without prefork,
    a Popen (its own group only with ``session``)."""
    argv = ["-m", "zoo", "finetune", COMMON[0], str(data), *COMMON[1:], *args]
    if prefork.enabled():
        return prefork.spawn(argv, env=env)
    return subprocess.Popen(
        [sys.executable, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=session,  # its own process group, as a terminal's job
    )


def _done(proc: Any, timeout: float = 900) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else {}), err


def _finetune(data: Path, home: Path, name: str, *extra: str) -> dict:
    code, result, err = _done(_zoo(data, *RECIPE, "--name", name, *extra, env=_env(home)))
    assert code == 0, err[-3000:]
    return result


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("zoo: error:")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


RECIPE = ["--strategy", "full", "--epochs", "4", "--lr", "0.003"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The data both DDP comparisons use, and what one process makes of it (RECIPE),
    trained once for the module."""
    root = tmp_path_factory.mktemp("one-process")
    data = make_images(root / "data", classes=3, per_class=40)
    code, result, err = _done(_zoo(data, *RECIPE, "--name", "single", env=_env(root / "home")))
    assert code == 0, err[-3000:]
    assert result["world_size"] == 1 and result["metrics"]["num_val"] == 24
    return data, result


@pytest.mark.slow
def test_two_processes_split_the_data_and_match_one(
    one_process: tuple[Path, dict], zoo_home: Path
) -> None:
    data, single = one_process
    double = _finetune(data, zoo_home, "double", "--nproc-per-node", "2")

    assert single["world_size"] == 1
    assert double["world_size"] == 2
    n_train = single["metrics"]["num_train"]
    last_epoch = double["ranks"]  # gathered in the last epoch
    assert sorted(r["rank"] for r in last_epoch) == [0, 1]
    half = -(-int(n_train) // 2)
    for record in last_epoch:
        assert record["seen"] == half  # each process saw half of the training samples
    covered = set(last_epoch[0]["distinct"]) | set(last_epoch[1]["distinct"])
    assert len(covered) == n_train  # and together all of them
    # the same global batches, so the same model up to the order floats are summed in
    # (the all-reduce's mean against one process's): at most one borderline validation
    # image may fall the other way, as in the two-node test below
    assert single["metrics"]["num_val"] == 24
    gap = abs(single["metrics"]["val_accuracy"] - double["metrics"]["val_accuracy"])
    assert gap <= 1 / single["metrics"]["num_val"] + 1e-9, (single["metrics"], double["metrics"])
    assert double["model_uri"] == "models:/double/1"
    # each process's throughput is a metric of the one run
    last = double["history"][-1]
    assert last["images_per_second.rank0"] > 0 and last["images_per_second.rank1"] > 0


def test_a_worker_started_from_a_forkserver_ends_when_its_starter_is_killed() -> None:
    """Once a process avoids fork (a DDP process in its group) its workers start from a
    forkserver, whose children torch's own watch does not tie to it: `die_with` does.
    Here a stand-in starter (a sleeping process, not the worker's parent) is SIGKILLed
    and the worker watching it exits at once."""
    code = (
        "from zoo.data import workers\n"
        "from zoo.engine.batches import worker_start\n"
        "assert workers.pool_context().get_start_method() == 'fork'\n"
        "assert worker_start(2) is None and workers.forks()\n"
        "workers.avoid_fork()\n"
        "assert workers.pool_context().get_start_method() == 'forkserver'\n"
        "assert worker_start(2).get_start_method() == 'forkserver'\n"
        "assert worker_start(0) is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    starter = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    watch = (
        "import time\n"
        "from zoo.data.workers import die_with\n"
        f"die_with({starter.pid})\n"
        "print('watching', flush=True)\n"
        "time.sleep(600)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", watch], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        ready, _, _ = select.select([worker.stdout], [], [], 120)  # a hung start fails, not waits
        assert ready and worker.stdout.readline() == "watching\n"
        assert worker.poll() is None  # alive while its starter is
        starter.kill()
        starter.wait()
        assert worker.wait(timeout=60) == 1
    finally:
        for proc in (starter, worker):
            if proc.poll() is None:
                proc.kill()


def test_dist_fills_a_row_cache_and_sends_rank_0s_error_to_every_process(
    tmp_path: Path,
) -> None:
    """zoo's Dist on 2 gloo processes: a row cache each fills with its share of 7 rows
    reads back whole on both (float32 and bfloat16), in one home and in a home each (two
    "nodes": each receives the other's shard); rank 0's value and rank 0's refusal (class
    and message) reach rank 1, and a failure on rank 1 alone reaches rank 0."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(FAULTS / "dist_probe.py"),
            str(tmp_path),
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1", **prefork.torchrun_env()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    whole = [[float(i), float(i) * 10] for i in range(7)]
    homes = ("one-home", "own-home")
    assert sorted(p.name for p in (tmp_path / "one-home" / "features" / "key").iterdir()) == [
        f"{name}.{r}-of-2.bin" for name in ("bf16", "f32") for r in (0, 1)
    ] + ["rows.json"]
    for r in (0, 1):  # each "node" home holds both shards: its own and the one it received
        assert len(list((tmp_path / f"own-home-{r}" / "features" / "key").glob("*.bin"))) == 4
    refusal = ["LicenseError", "licence refused on rank 0: pass --license-override REASON"]
    for got in seen:
        assert got["rows"] == {home: {"f32": whole, "bf16": whole} for home in homes}
        assert got["sum"] == [2.0, 1.0]
        assert got["shared"] == {"run_id": "abc", "rank": 0}
        assert got["error"] == refusal
    assert seen[1]["agree"] == ["ZeroDivisionError", "division by zero"]
    assert seen[0]["agree"][0] == "ZooError" and "ZeroDivisionError" in seen[0]["agree"][1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--nnodes", "2"], "needs --rdzv-endpoint HOST:PORT"),
        (["--nnodes", "2", "--rdzv-endpoint", "nodeone"], "is not HOST:PORT"),
        (["--nnodes", "0", "--rdzv-endpoint", "127.0.0.1:29400"], "--nnodes must be at least 1"),
        (
            ["--nnodes", "3", "--rdzv-endpoint", "127.0.0.1:29400"],
            "--batch-size 8 does not split evenly over 3 processes",
        ),
        (["--nnodes", "2", "--rdzv-endpoint", "h:1", "--rdzv-id", "a/b"], "--rdzv-id 'a/b'"),
    ],
)
def test_bad_multi_node_options_are_one_line_usage_errors(
    tmp_path: Path, zoo_home: Path, args: list[str], needle: str
) -> None:
    data = make_images(tmp_path / "data", classes=2, per_class=3)
    code, _, err = _done(_zoo(data, *args, env=_env(zoo_home)), timeout=120)
    assert code == 2, err
    assert needle in _error_line(err)


def _two_nodes(
    data: Path, homes: list[Path], store: str, *args: str, **extra: str
) -> list[tuple[int, dict, str]]:
    """The same command on two "nodes" (one process each), started at once. The
    rendezvous port is free when chosen, but another process may take it before torchrun
    binds it: then both start again on a fresh port (at most three tries)."""
    for _ in range(3):
        port = free_port()
        nodes = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{port}"]
        procs = [
            _zoo(data, *args, *nodes, env=_env(home, MLFLOW_TRACKING_URI=store, **extra))
            for home in homes
        ]
        results = [_done(p) for p in procs]
        if not any("address already in use" in err.lower() for _, _, err in results):
            break
    return results


def test_the_launch_says_how_many_processes_on_how_many_nodes() -> None:
    from zoo.engine import Recipe
    from zoo.engine.distributed import Nodes, launch_line

    two = Recipe(ref="timm:test_resnet", data="data", nproc_per_node=2)
    assert launch_line(two, Nodes()) == (
        "torchrun: starting 2 processes on this machine (DDP, one node)"
    )
    assert launch_line(two, Nodes(nnodes=3, rdzv_endpoint="node1:29400")) == (
        "torchrun: starting 2 processes on this node, 6 in all on 3 nodes "
        "(DDP; rendezvous at node1:29400)"
    )


@pytest.mark.slow
def test_two_nodes_with_separate_homes_make_one_run_one_version_and_match_one_process(
    one_process: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two torchrun invocations on loopback, each with its own ZOO_HOME, one SQLite
    tracking store: one MLflow run, one registered version, the checkpoints in rank 0's
    home only, a decoded-image cache in each home, and the accuracy of one process.

    Tolerance: the two runs see the same 8 samples in every step (DDP takes positions
    0, 2, 4, ... and 1, 3, 5, ... of the same permutation, and averages the gradients);
    they differ only in BatchNorm's batch statistics (over 4 images per process, not 8)
    and in rounding, so the validation accuracy may differ by one of its 24 images."""
    data, single = one_process
    store = f"sqlite:///{tmp_path / 'shared-store' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    homes = [tmp_path / "node-a", tmp_path / "node-b"]
    results = _two_nodes(data, homes, store, *RECIPE, "--name", "two")
    for code, _, err in results:
        assert code == 0, err[-3000:]
        assert "zoo: torchrun: starting 1 process on this node, 2 in all on 2 nodes" in err
    (_, a, _), (_, b, _) = results
    assert a["model_uri"] == b["model_uri"] == "models:/two/1"  # each node's command says so
    assert a["run_id"] == b["run_id"] and a["world_size"] == 2

    from zoo.registry import store as zoo_store

    client = zoo_store.client()
    versions = client.search_model_versions("name = 'two'")
    assert [int(v.version) for v in versions] == [1]
    runs = client.search_runs([zoo_store.experiment_id("zoo")], filter_string="params.name = 'two'")
    assert [r.info.run_id for r in runs] == [a["run_id"]]  # one run for the job
    metrics = runs[0].data.metrics
    assert metrics["images_per_second.rank0"] > 0 and metrics["images_per_second.rank1"] > 0

    checkpoints = [h for h in homes if list(h.glob("runs/*/state.pt"))]
    assert len(checkpoints) == 1  # rank 0's home, whichever node the rendezvous made rank 0
    for home in homes:  # each node read the data into its own home
        assert any((home / "data" / "decoded").rglob("*"))

    # as in the one-node test: at most one borderline validation image apart
    assert single["metrics"]["num_val"] == 24
    gap = abs(single["metrics"]["val_accuracy"] - a["metrics"]["val_accuracy"])
    assert gap <= 1 / single["metrics"]["num_val"] + 1e-9, (single["metrics"], a["metrics"])


@pytest.mark.slow
def test_a_refusal_on_rank_0_alone_reaches_the_other_node_with_its_message(
    tmp_path: Path,
) -> None:
    """Rank 0 alone registers; when that fails (here the strategy's finalize_model
    refuses) the other node's command exits with the same line and code at once, not
    after a collective timeout, and nothing is registered."""
    data = make_images(tmp_path / "data", classes=2, per_class=10)
    store = f"sqlite:///{tmp_path / 'shared-store' / 'mlflow.db'}"
    homes = [tmp_path / "node-a", tmp_path / "node-b"]
    results = _two_nodes(
        data,
        homes,
        store,
        "--strategy",
        "refuse",
        "--name",
        "refused",
        ZOO_DIST_TIMEOUT="600",
        ZOO_DIST_WAIT="600",
    )
    lines = {_error_line(err) for _, _, err in results}
    assert lines == {"zoo: error: zoo-test: the registry refused this model (rank 0 only)"}
    assert [code for code, _, _ in results] == [5, 5]


@pytest.mark.slow
def test_killing_rank_1_mid_epoch_stops_both_with_130_and_the_same_command_resumes(
    tmp_path: Path, zoo_home: Path
) -> None:
    """Rank 1 stops in the middle of epoch 3's first step (the `stall` test strategy)
    and is SIGKILLed there: rank 0, waiting in DDP's all-reduce, ends too (gloo sees the
    peer go; torchrun stops it) well within ZOO_DIST_TIMEOUT, with exit code 130 and
    epoch 2's checkpoint; the same command then resumes from it."""
    data = make_images(tmp_path / "data", classes=2, per_class=20)
    args = ["--strategy", "stall", "--epochs", "4", "--nproc-per-node", "2", "--name", "killed"]
    timeout = 120
    proc = _zoo(
        data, *args, env=_env(zoo_home, ZOO_TEST_STALL_RANK="1", ZOO_DIST_TIMEOUT=str(timeout))
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "zoo-test: rank 1 pid" in line:
            os.kill(int(line.split(" pid ")[1].split()[0]), signal.SIGKILL)
            break
    _out, err = proc.communicate(timeout=timeout + 120)  # "no hang": far below 30 minutes
    err = "".join(seen) + err
    assert proc.returncode == 130, err[-3000:]
    line = _error_line(err)
    assert "epoch 3/4" in line and "the checkpoint of epoch 2 is saved" in line, line
    from zoo.registry import store

    (killed,) = store.client().search_runs(
        [store.experiment_id("zoo")], filter_string="params.name = 'killed'"
    )
    assert killed.info.status == "KILLED"

    code, result, err = _done(_zoo(data, *args, env=_env(zoo_home)))
    assert code == 0, err[-3000:]
    assert "resuming from the checkpoint of epoch 2" in err
    assert result["resumed_from"] == 2 and result["model_uri"] == "models:/killed/1"
    assert result["run_id"] == killed.info.run_id  # the job's one run, continued


def test_a_worker_that_never_ends_is_stopped_once_another_has_reported(
    tmp_path: Path, zoo_home: Path
) -> None:
    """Rank 1 stalls mid-epoch 3 and stays there (nobody kills it): rank 0 gives up in
    DDP's all-reduce after ZOO_DIST_TIMEOUT and reports; rank 1, stuck outside any
    collective, would keep torchrun waiting for good. The launcher gives it the same
    timeout, then stops torchrun, which stops it: the command ends with 130."""
    data = make_images(tmp_path / "data", classes=2, per_class=20)
    args = ["--strategy", "stall", "--epochs", "4", "--nproc-per-node", "2", "--name", "stuck"]
    timeout = 20
    proc = _zoo(
        data, *args, env=_env(zoo_home, ZOO_TEST_STALL_RANK="1", ZOO_DIST_TIMEOUT=str(timeout))
    )
    _out, err = proc.communicate(timeout=600)  # without the launcher's stop: no end
    assert proc.returncode == 130, err[-3000:]
    assert "have not ended: stopping them" in err, err[-3000:]
    stalled = [line for line in err.splitlines() if "zoo-test: rank 1 pid" in line]
    pid = int(stalled[0].split(" pid ")[1].split()[0])
    assert not Path(f"/proc/{pid}").exists()  # the stuck worker is gone too


@pytest.mark.slow
def test_two_processes_fill_the_feature_cache_together_with_the_rows_of_one(
    tmp_path: Path,
) -> None:
    """A linear probe under `--nproc-per-node 2`: each process extracts the features of
    half of the images (rank 0's progress counts 60 of 120) and writes them to its own
    shard, and the cache reads back, in the dataset's order, what one process computes
    alone."""
    from zoo.engine.context import Dist
    from zoo.engine.rows import open_rows

    data = make_images(tmp_path / "data", classes=3, per_class=40)
    config = tmp_path / "recipe.yaml"
    config.write_text("precision: fp32\n", encoding="utf-8")
    homes = {1: tmp_path / "one", 2: tmp_path / "two"}
    for procs, home in homes.items():
        code, _result, err = _done(
            _zoo(data, "--strategy", "linear-probe", "--nproc-per-node", str(procs),
                 "--name", f"probe{procs}", "--config", str(config), env=_env(home))
        )  # fmt: skip
        assert code == 0, err[-3000:]
        if procs == 2:
            assert "extracting features: started (60 images)" in err
            assert "zoo: torchrun: starting 2 processes on this machine (DDP, one node)" in err
        else:
            assert "torchrun" not in err
    (one,) = (homes[1] / "features").iterdir()
    (two,) = (homes[2] / "features").iterdir()
    assert one.name == two.name  # the same key: same weights, data, preprocessing
    assert sorted(p.name for p in two.glob("features.*")) == [
        f"features.{r}-of-2.bin" for r in (0, 1)
    ]
    rows = [open_rows(folder, Dist()) for folder in (one, two)]
    assert rows[0] is not None and rows[1] is not None
    a, b = rows[0]["features"].load(), rows[1]["features"].load()
    assert a.shape == b.shape == (120, a.shape[1])
    assert (a - b).abs().max() <= 1e-4 * a.abs().max()


@pytest.mark.slow
def test_rank_in_two_processes_scores_what_one_process_does(tmp_path: Path, zoo_home: Path) -> None:
    """`zoo rank --nproc-per-node 2`: each process extracts the features of half of the
    images (rank 0's progress counts 15 of 30) into its own shard of the feature cache,
    and every backbone's scores are one process's."""
    from tests.test_rank import _import

    data = make_images(tmp_path / "data", classes=3, per_class=10, size=(36, 36))
    refs = [_import(tmp_path, f"timm:{arch}", arch) for arch in ("test_resnet", "test_vit")]

    def ranked(*extra: str) -> tuple[dict, str]:
        argv = ["-m", "zoo", "rank", str(data), *refs, "--image-size", "32", "--json", *extra]
        env = _env(zoo_home)
        if prefork.enabled():
            proc = prefork.spawn(argv, env=env)
        else:
            proc = subprocess.Popen(
                [sys.executable, *argv], env=env, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        code, doc, err = _done(proc)
        assert code == 0, err[-3000:]
        return doc, err

    one, _ = ranked()
    shutil.rmtree(zoo_home / "features")
    two, err = ranked("--nproc-per-node", "2")
    assert "zoo: torchrun: starting 2 processes on this machine (ranking, one node)" in err
    assert "extracting features: started (15 images)" in err
    shards = sorted(p.name for p in (zoo_home / "features").glob("*/features.*"))
    assert shards == ["features.0-of-2.bin"] * 2 + ["features.1-of-2.bin"] * 2
    assert [r["reference"] for r in two["rows"]] == [r["reference"] for r in one["rows"]]
    for a, b in zip(one["rows"], two["rows"], strict=True):
        assert a["images"] == b["images"] == 30 and a["feature_dim"] == b["feature_dim"]
        assert b["scores"]["knn"] == a["scores"]["knn"]
        assert b["scores"]["logme"] == pytest.approx(a["scores"]["logme"], rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_a_failure_of_rank_1_alone_is_what_the_command_reports(
    tmp_path: Path, zoo_home: Path
) -> None:
    """Rank 1 fails by itself when phase two starts; rank 0 then sees its peer go. The
    command reports rank 1's error (and its exit code), not only that a process stopped."""
    data = make_images(tmp_path / "data", classes=2, per_class=20)
    args = ["--strategy", "stall", "--epochs", "4", "--nproc-per-node", "2", "--name", "alone"]
    code, _, err = _done(_zoo(data, *args, env=_env(zoo_home, ZOO_TEST_FAIL_RANK="1")))
    assert _error_line(err) == "zoo: error: rank 1: zoo-test: rank 1 failed by itself"
    assert code == 1, err[-3000:]


@pytest.mark.slow
def test_ctrl_c_stops_every_process_with_130_and_the_last_checkpoint(
    tmp_path: Path, zoo_home: Path
) -> None:
    """Ctrl-C as a terminal sends it (SIGINT to the command's whole process group: zoo,
    torchrun and both workers) while rank 1 is stopped mid-epoch 3: the job ends with
    exit code 130 and epoch 2's checkpoint, and --resume continues from it."""
    data = make_images(tmp_path / "data", classes=2, per_class=20)
    args = ["--strategy", "stall", "--epochs", "4", "--nproc-per-node", "2", "--name", "ctrl-c"]
    proc = _zoo(data, *args, env=_env(zoo_home, ZOO_TEST_STALL_RANK="1"), session=True)
    assert proc.stderr is not None
    seen = []
    # a job that never reaches the stall is killed after 600 s, so the failure shows
    # what it printed rather than pytest-timeout's stack of this process
    deadline = threading.Timer(600, os.killpg, (proc.pid, signal.SIGKILL))
    deadline.start()
    try:
        for line in proc.stderr:
            seen.append(line)
            if "zoo-test: rank 1 pid" in line:
                os.killpg(proc.pid, signal.SIGINT)
                break
        _out, err = proc.communicate(timeout=300)
    finally:
        deadline.cancel()
    err = "".join(seen) + err
    assert any("zoo-test: rank 1 pid" in line for line in seen), err[-3000:]
    assert proc.returncode == 130, err[-3000:]
    assert "the checkpoint of epoch 2 is saved" in _error_line(err)

    code, result, err = _done(_zoo(data, *args, "--resume", env=_env(zoo_home)))
    assert code == 0, err[-3000:]
    assert result["resumed_from"] == 2


@pytest.mark.slow
def test_nodes_whose_copies_of_the_data_differ_are_refused_on_every_node(
    tmp_path: Path,
) -> None:
    """Each node reads its own copy of DATA; when the copies differ (here: the same
    relative path from two working directories), both commands refuse with one line."""
    for node, per_class in (("a", 6), ("b", 7)):
        make_images(tmp_path / node / "pets", classes=2, per_class=per_class)
    for _ in range(3):  # a rendezvous port taken before torchrun binds it: a fresh one
        port = free_port()
        procs = []
        for node in ("a", "b"):
            cmd = [
                "-m", "zoo", "finetune", "timm:test_resnet", "pets", *COMMON[1:],
                "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "pets",
            ]  # fmt: skip
            procs.append(
                prefork.start(cmd, env=_env(tmp_path / node / "home"), cwd=tmp_path / node)
            )
        results = [_done(proc, timeout=600) for proc in procs]
        if not any("address already in use" in err.lower() for _, _, err in results):
            break
    for code, _, err in results:
        assert code == 2, err[-3000:]
        assert "the data differs between the processes of the job" in _error_line(err)
