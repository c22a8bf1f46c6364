"""Fine-tunes' data as MLflow datasets (issue 25), on the embedded SQLite store and on the
PostgreSQL-backed `mlflow server`: plain MLflow clients find the runs and logged models
trained on a data set by its digest, and `zoo registry list --dataset` answers the same.

One module-scoped set-up per backend: two fine-tunes on data set A, one on data set B.
Each data set is drawn with its own random seed, so no other module's runs on the shared
server share its digest.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from registry_backends import (  # noqa: F401 - fixtures
    Backend,
    backend_env,
    backend_fixture,
    pg_server_fixture,
    unique_name,
    use_backend_fixture,
)

from zoo.cli import run

on_both_backends = pytest.mark.usefixtures("use_backend")

COMMON = ["--random-init", "--epochs", "1", "--image-size", "32", "--batch-size", "4"]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _finetune(data: Path, name: str) -> dict[str, Any]:
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = run(["finetune", "timm:test_resnet", str(data), "--name", name, *COMMON, "--json"])
    assert code == 0
    return dict(json.loads(buf.getvalue()))


@pytest.fixture(scope="module")
def trained(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A: two versions (two names), B: one; both data folders are named 'pets'."""
    from finetune_helpers import make_images

    from zoo import registry

    root = tmp_path_factory.mktemp("datasets")
    seeds = random.Random().sample(range(10**6), 2)
    data = {
        key: make_images(root / key / "pets", classes=2, per_class=6, seed=seed)
        for key, seed in zip("AB", seeds, strict=True)
    }
    with backend_env(backend), pytest.MonkeyPatch.context() as mp:
        mp.setenv("CI", "true")
        done: dict[str, list[Any]] = {"A": [], "B": []}
        for key, prefix in (("A", "ds-a"), ("B", "ds-b"), ("A", "ds-a2")):
            out = _finetune(data[key], unique_name(prefix))
            done[key].append(registry.get_version(out["model_uri"]))
    digests = {k: vs[0].tags["zoo.dataset_digest"] for k, vs in done.items()}
    assert digests["A"] != digests["B"]
    assert {v.tags["zoo.dataset_digest"] for v in done["A"]} == {digests["A"]}
    return {"data": data, "versions": done, "digests": digests}


def _experiment() -> str:
    import mlflow

    from zoo.registry.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name("zoo")
    assert exp is not None
    return str(exp.experiment_id)


@on_both_backends
def test_plain_mlflow_search_runs_by_dataset_digest(trained: dict[str, Any]) -> None:
    import mlflow

    exp = _experiment()
    for key, versions in trained["versions"].items():
        digest32 = trained["digests"][key].split(":", 1)[1][:32]
        runs = mlflow.search_runs(
            [exp], filter_string=f"dataset.digest = '{digest32}'", output_format="list"
        )
        assert {r.info.run_id for r in runs} == {v.run_id for v in versions}
        both = mlflow.search_runs(
            [exp],
            filter_string=f"dataset.digest = '{digest32}' AND dataset.context = 'training'",
            output_format="list",
        )
        assert {r.info.run_id for r in both} == {v.run_id for v in versions}


@on_both_backends
def test_the_dataset_entity_carries_digest_source_profile_and_split(
    trained: dict[str, Any],
) -> None:
    from mlflow import MlflowClient

    _experiment()
    for key, versions in trained["versions"].items():
        full = trained["digests"][key]
        for v in versions:
            inputs = MlflowClient().get_run(v.run_id).inputs.dataset_inputs
            assert len(inputs) == 1
            ds, tags = inputs[0].dataset, {t.key: t.value for t in inputs[0].tags}
            assert ds.name == "pets" and ds.digest == full.split(":", 1)[1][:32]
            assert len(ds.digest) <= 36  # MLflow's column; PostgreSQL enforces it
            assert json.loads(ds.source)["uri"] == str(trained["data"][key].resolve())
            profile = json.loads(ds.profile)
            assert profile["zoo.dataset_digest"] == full
            assert profile["classes"] == ["class0", "class1"]
            assert profile["counts"] == {"class0": 6, "class1": 6}
            assert profile["duplicates_left_out"] == 0
            assert tags["mlflow.data.context"] == "training"
            assert tags["zoo.dataset_digest"] == full
            parts = [int(tags[f"zoo.split.{p}"]) for p in ("train", "validation", "test")]
            assert sum(parts) == profile["num_images"] == 12 and parts[1] > 0
            split = v.lineage["dataset"]["split"]
            assert (parts[0], parts[1], parts[2]) == (split["train"], split["val"], split["test"])
            assert tags["zoo.split_digest"] == split["digest"]


@on_both_backends
def test_plain_mlflow_search_logged_models_by_dataset(trained: dict[str, Any]) -> None:
    import mlflow
    from mlflow import MlflowClient

    exp = _experiment()
    for key, versions in trained["versions"].items():
        digest32 = trained["digests"][key].split(":", 1)[1][:32]
        models = mlflow.search_logged_models(
            experiment_ids=[exp],
            datasets=[{"dataset_name": "pets", "dataset_digest": digest32}],
            output_format="list",
        )
        assert {m.model_id for m in models} == {v.tags["zoo.model_id"] for v in versions}
        # with a metric filter too: the registered epoch's accuracy on that dataset
        scored = mlflow.search_logged_models(
            experiment_ids=[exp],
            filter_string="metrics.`final.val_accuracy` >= 0",
            datasets=[{"dataset_name": "pets", "dataset_digest": digest32}],
            output_format="list",
        )
        assert {m.model_id for m in scored} == {v.tags["zoo.model_id"] for v in versions}
        for v in versions:  # logged once: the run's history has one final point
            history = MlflowClient().get_metric_history(v.run_id, "final.val_accuracy")
            assert len(history) == 1


def _listed(capsys: pytest.CaptureFixture[str], query: str) -> tuple[str, set[str]]:
    code, out, err = _cli(capsys, "registry", "list", "--dataset", query, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["count"] == len(doc["versions"])
    return doc["dataset"]["digest"], {v["model_uri"] for v in doc["versions"]}


@on_both_backends
def test_zoo_registry_list_by_digest_prefix_and_path(
    trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for key, versions in trained["versions"].items():
        full = trained["digests"][key]
        want = {v.model_uri for v in versions}
        hex_ = full.split(":", 1)[1]
        other = trained["digests"]["B" if key == "A" else "A"].split(":", 1)[1]
        unique = next(n for n in range(4, 65) if hex_[:n] != other[:n])
        for query in (full, hex_[:32], hex_[:unique], f"sha256:{hex_[:unique]}"):
            assert _listed(capsys, query) == (full, want), query
        assert _listed(capsys, str(trained["data"][key])) == (full, want)
        code, out, _ = _cli(capsys, "registry", "list", "--dataset", hex_[:32])
        count = f"{len(want)} version{'s' if len(want) != 1 else ''}"
        assert code == 0 and out.rstrip().endswith(f"{count} trained on {full}")


@on_both_backends
def test_zoo_registry_list_refuses_what_is_neither_digest_nor_data(
    trained: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for query in ("not-a-digest", "abc", str(tmp_path / "missing")):
        code, out, err = _cli(capsys, "registry", "list", "--dataset", query)
        assert code == 2 and out == ""
        assert "neither a data set's digest" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


@on_both_backends
def test_zoo_registry_show_lists_the_datasets(
    trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    v = trained["versions"]["B"][0]
    code, out, err = _cli(capsys, "registry", "show", v.model_uri)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.strip().startswith("datasets"))
    digest32 = trained["digests"]["B"].split(":", 1)[1][:32]
    assert "pets (training)" in line and digest32 in line and "none recorded" not in line


def test_an_ambiguous_prefix_is_refused_in_one_line() -> None:
    from zoo.contract.errors import UsageError
    from zoo.registry.datasets import resolve_digest

    known = ["sha256:" + "abcd1" + "0" * 59, "sha256:" + "abcd2" + "0" * 59]
    with pytest.raises(UsageError, match="names 2 data sets"):
        resolve_digest("abcd", known, digest_of=None)
    with pytest.raises(UsageError, match="names 2 data sets"):
        resolve_digest("sha256:ABCD", known + known, digest_of=None)
    assert resolve_digest("abcd2", known, digest_of=None) == known[1]


@pytest.mark.slow
def test_a_store_of_the_previous_release_lists_and_shows_without_datasets(
    tmp_path: Path,
) -> None:
    """tests/fixtures/compat-home.tar.gz (tests/test_compat_home.py): its fine-tune has a
    dataset digest tag and no MLflow dataset: --dataset finds it by the tag, show says
    the datasets are absent."""
    archive = Path(__file__).parent / "fixtures" / "compat-home.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    env = {**os.environ, "ZOO_HOME": str(home), "CI": "true", "NO_COLOR": "1", "COLUMNS": "300"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("ZOO_TRACKING_URI", None)

    def zoo(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "zoo", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)

    assert zoo("home", "move", str(home)).returncode == 0
    listed = zoo("registry", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    old = next(v for v in json.loads(listed.stdout)["versions"] if v["name"] == "compat")
    shown = zoo("registry", "show", "models:/compat/1", "--json")
    digest = json.loads(shown.stdout)["version"]["tags"]["zoo.dataset_digest"]
    found = zoo("registry", "list", "--dataset", digest.split(":", 1)[1][:12], "--json")
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)
    assert doc["dataset"]["digest"] == digest
    assert old["model_uri"] in {v["model_uri"] for v in doc["versions"]}
    text = zoo("registry", "show", "models:/compat/1")
    assert text.returncode == 0, text.stderr
    assert any(
        line.split()[:1] == ["datasets"] and "none recorded" in line
        for line in text.stdout.splitlines()
    )
