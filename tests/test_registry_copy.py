"""`zoo registry copy`: a version and its ancestors into another store, lineage intact.

One source store per module (the embedded SQLite store of its own ZOO_HOME) holding
base -> models:/N/2 -> models:/N/3, where N/3 is fine-tuned from N/2 and N/1 is an
unrelated fine-tune of the base: copying N/3 copies N/2 too, and on a fresh destination
they become N/1 and N/2, so every re-pointed reference is tested. Destinations: a second
SQLite store and the PostgreSQL-backed `mlflow server` (registry_backends.py).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from registry_backends import (  # noqa: F401 - fixtures
    free_port,
    pg_server_fixture,
    unique_name,
)

from zoo.cli import run
from zoo.registry.store import client

COMMON = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--json"]
ARCHIVE = Path(__file__).parent / "fixtures" / "compat-home.tar.gz"


def _hash_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = _cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from finetune_helpers import make_images

    root = tmp_path_factory.mktemp("copy-source")
    data = make_images(root / "data", classes=2, per_class=6)
    name = unique_name("copy")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZOO_HOME", str(root / "home"))
        mp.setenv("CI", "true")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        base = ["finetune", "timm:test_resnet", str(data), "--random-init", "--name", name]
        for seed in ("1", "2"):  # N/1, an unrelated fine-tune of the base; N/2, the parent
            assert run([*base, "--strategy", "linear-probe", "--seed", seed, *COMMON]) == 0
        child = ["finetune", f"models:/{name}/2", str(data), "--name", name]
        assert (
            run([*child, "--strategy", "linear-probe", "--license", "cc-by-nc-4.0", *COMMON]) == 0
        )
        yield {"home": root / "home", "name": name, "root": root}


def _register_two_parent_version(name: str) -> str:
    """models:/N/4 with parents N/1 and N/2 (as a multi-backbone version records them)."""
    import torch

    from zoo import registry
    from zoo.registry.lineage import Pin

    model, parent = registry.load_model(f"models:/{name}/2")
    v = registry.register_derivative(
        model,
        name=name,
        parents=[Pin(f"models:/{name}/1"), Pin(f"models:/{name}/2")],
        strategy="linear-probe",
        strategy_settings={},
        dataset=None,
        metrics=None,
        input_example=torch.zeros(2, 3, 32, 32),
        preprocessing=parent.preprocessing,
        class_names=list(parent.class_names),
    )
    return v.model_uri


def _source_env(mp: pytest.MonkeyPatch, source: dict[str, Any]) -> None:
    mp.setenv("ZOO_HOME", str(source["home"]))
    mp.setenv("CI", "true")
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)


def _edges(tree: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(parent, child, licence) of every node of a `registry lineage --json` document."""
    out = set()

    def walk(node: dict[str, Any]) -> None:
        for child in node["children"]:
            out.add((node["reference"], child["reference"], child["license"]))
            walk(child)

    for root in tree["roots"]:
        walk(root)
    return out


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def copied(
    request: pytest.FixtureRequest,
    source: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """N/3 copied to the destination once; the source's files hashed around the copy."""
    if request.param == "sqlite":
        dest = f"sqlite:///{tmp_path_factory.mktemp('copy-dest') / 'dest.db'}"
    else:
        dest = request.getfixturevalue("pg_server").uri
    name = source["name"]
    with pytest.MonkeyPatch.context() as mp:
        _source_env(mp, source)
        before = _hash_tree(source["home"] / "mlflow")
        code = run(["registry", "copy", f"models:/{name}/3", "--to", dest, "--json"])
        after = _hash_tree(source["home"] / "mlflow")
    assert code == 0
    return {"dest": dest, "name": name, "before": before, "after": after}


def test_copy_keeps_lineage_licences_and_weights(
    copied: dict[str, Any],
    source: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, dest = copied["name"], copied["dest"]
    _source_env(monkeypatch, source)
    # the copy's report, from a second run: a no-op naming where each version is
    again = _json(capsys, "registry", "copy", f"models:/{name}/3", "--to", dest)
    assert [v["source"] for v in again["versions"]] == [f"models:/{name}/2", f"models:/{name}/3"]
    assert not any(v["copied"] for v in again["versions"])
    mapping = {v["source"]: v["destination"] for v in again["versions"]}
    assert mapping == {
        f"models:/{name}/2": f"models:/{name}/1",
        f"models:/{name}/3": f"models:/{name}/2",
    }
    src_tree = _json(capsys, "registry", "lineage", name)
    src = {ref: _json(capsys, "registry", "show", ref)["version"] for ref in mapping}

    monkeypatch.setenv("MLFLOW_TRACKING_URI", dest)
    listed = _json(capsys, "registry", "list")["versions"]
    assert sorted(v["model_uri"] for v in listed if v["name"] == name) == sorted(mapping.values())
    dst_tree = _json(capsys, "registry", "lineage", name)
    wanted = {
        (mapping.get(p, p), mapping[c], lic) for p, c, lic in _edges(src_tree) if c in mapping
    }
    # (a shared server holds other modules' fine-tunes of the same base: not this chain's)
    assert {e for e in _edges(dst_tree) if e[1].startswith(f"models:/{name}/")} == wanted
    for ref, there in mapping.items():
        got = _json(capsys, "registry", "show", there)["version"]
        have = src[ref]
        assert got["license"] == have["license"]
        assert got["tags"]["zoo.weights_sha256"] == have["tags"]["zoo.weights_sha256"]
        assert got["tags"].get("zoo.parent_sha256") == have["tags"].get("zoo.parent_sha256")
        assert got["parent"] == mapping.get(have["parent"], have["parent"])
        assert got["lineage"]["license"]["ancestors"] == [
            {**a, "reference": mapping.get(a["reference"], a["reference"])}
            for a in have["lineage"]["license"]["ancestors"]
        ]
        assert got["lineage"]["chain"] == [mapping.get(c, c) for c in have["lineage"]["chain"]]
        stamp = json.loads(got["tags"]["zoo.copied_from"])
        assert stamp["version"] == ref
        assert stamp["sha256"] == have["tags"]["zoo.weights_sha256"]
    child = _json(capsys, "registry", "show", mapping[f"models:/{name}/3"])["version"]
    assert child["parent"] == f"models:/{name}/1" and child["license"] == "cc-by-nc-4.0"
    # the parent's pin stays: the same bytes, now under another number
    assert (
        child["tags"]["zoo.parent_sha256"] == src[f"models:/{name}/2"]["tags"]["zoo.weights_sha256"]
    )
    # the lineage picture is drawn again with the destination's numbers
    from zoo.registry.read import download_artifact, get_version

    folder = source["home"].parent / f"svg-{len(dest)}-{dest[:5].strip(':/')}"
    there = get_version(mapping[f"models:/{name}/3"])
    svg = download_artifact(there, "lineage.svg", folder).read_text("utf-8")
    assert f"models:/{name}/1" in svg and f"models:/{name}/2" not in svg
    # files, weights and lineage.json re-hashed against the (re-pointed) records
    report = _json(capsys, "registry", "check", "--verify")
    assert report["ok"] and not report["orphans"] and report["verified"] >= 4


def test_copy_carries_the_run_and_leaves_the_source_untouched(
    copied: dict[str, Any],
    source: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    assert copied["after"] == copied["before"]  # every file of the source store
    _source_env(monkeypatch, source)
    from zoo import registry

    src = registry.get_version(f"models:/{copied['name']}/3")
    smc = MlflowClient(tracking_uri=f"sqlite:///{source['home'] / 'mlflow' / 'mlflow.db'}")
    dmc = MlflowClient(tracking_uri=copied["dest"], registry_uri=copied["dest"])
    there = dmc.get_model_version(copied["name"], "2")
    s_run, d_run = smc.get_run(src.run_id), dmc.get_run(there.run_id)
    assert d_run.info.status == "FINISHED"
    assert d_run.data.metrics == s_run.data.metrics and d_run.data.metrics
    for key in s_run.data.metrics:
        history = [(m.step, m.value) for m in smc.get_metric_history(src.run_id, key)]
        assert [(m.step, m.value) for m in dmc.get_metric_history(there.run_id, key)] == history
    params = {
        k: v.replace(f"models:/{copied['name']}/2", f"models:/{copied['name']}/1")
        for k, v in s_run.data.params.items()
    }
    assert d_run.data.params == params
    digests = [(d.dataset.name, d.dataset.digest) for d in s_run.inputs.dataset_inputs]
    assert [(d.dataset.name, d.dataset.digest) for d in d_run.inputs.dataset_inputs] == digests
    import mlflow
    import yaml

    location = dmc.get_logged_model(there.tags["zoo.model_id"]).artifact_location
    mlmodel = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location}/MLmodel", tracking_uri=copied["dest"], dst_path=str(tmp_path)
    )
    points = yaml.safe_load(Path(mlmodel).read_text(encoding="utf-8"))
    assert (points["run_id"], points["model_id"]) == (there.run_id, there.tags["zoo.model_id"])
    run_files = {f.path for f in smc.list_artifacts(src.run_id)}
    assert run_files and {f.path for f in dmc.list_artifacts(there.run_id)} == run_files


def test_interrupted_copy_leaves_no_version_and_a_rerun_completes_it(
    source: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zoo.registry import copy_write

    name = source["name"]
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    _source_env(monkeypatch, source)
    real = copy_write.create_version
    calls: list[str] = []

    def interrupted(dmc: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["name"])
        if len(calls) == 2:  # the parent is copied; Ctrl-C before the child's version
            raise KeyboardInterrupt
        return real(dmc, **kwargs)

    monkeypatch.setattr(copy_write, "create_version", interrupted)
    code, _, err = _cli(capsys, "registry", "copy", f"models:/{name}/3", "--to", dest)
    assert code == 130, err
    monkeypatch.setattr(copy_write, "create_version", real)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dest)
    listed = _json(capsys, "registry", "list")["versions"]
    assert [v["model_uri"] for v in listed] == [f"models:/{name}/1"]  # N/2: no half version
    assert len(_json(capsys, "registry", "check")["orphans"]) == 1
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    done = _json(capsys, "registry", "copy", f"models:/{name}/3", "--to", dest)
    assert [v["copied"] for v in done["versions"]] == [False, True]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dest)
    report = _json(capsys, "registry", "check", "--verify")
    assert report["ok"] and report["orphans"] == [] and report["versions"] == 2


def test_bad_input_is_one_line_and_writes_nothing(
    source: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _source_env(monkeypatch, source)
    monkeypatch.setenv("ZOO_STORE_TIMEOUT", "3")
    name = source["name"]
    dest = tmp_path / "dest.db"
    own = f"sqlite:///{source['home'] / 'mlflow' / 'mlflow.db'}"
    cases = [
        ([f"models:/{name}/9", "--to", f"sqlite:///{dest}"], 3, "no registered version"),
        ([f"models:/{name}/3", "--to", own], 2, "the store being copied from"),
        ([f"models:/{name}/3", "--to", "ftp://example.org/x"], 2, "not an MLflow tracking URI"),
        ([f"models:/{name}/3", "--to", f"sqlite:///{tmp_path}/no/such/d.db"], 2, "does not exist"),
        ([f"models:/{name}/3", "--to", f"http://127.0.0.1:{free_port()}"], 3, "127.0.0.1"),
    ]
    before = _hash_tree(source["home"] / "mlflow")
    for argv, exit_code, words in cases:
        code, out, err = _cli(capsys, "registry", "copy", *argv)
        assert code == exit_code, (argv, err)
        assert words in err and "Traceback" not in err and out == ""
        assert len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
    assert _hash_tree(source["home"] / "mlflow") == before


def test_a_store_written_by_the_previous_release_copies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/fixtures/compat-home.tar.gz (test_compat_home.py): compat/1 and its ONNX
    export, copied with --with-exports; their versions have no datasets or pictures."""
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    home = tmp_path / "home"
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert run(["home", "move", str(home)]) == 0  # the home landed elsewhere (see there)
    capsys.readouterr()
    src = {
        r: _json(capsys, "registry", "show", r)["version"]
        for r in ("models:/compat/1", "models:/compat.onnx/1")
    }
    # the first MLflow client to open a store another MLflow release wrote brings its
    # schema up to its own (MLflow's doing, on any read through it): the copy's reads
    # change nothing after that
    client().search_experiments()
    client().search_model_versions("name = 'compat'")
    before = _hash_tree(home / "mlflow")
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    alone = _json(capsys, "registry", "copy", "models:/compat/1", "--to", dest)
    assert [v["source"] for v in alone["versions"]] == ["models:/compat/1"]  # no export
    done = _json(capsys, "registry", "copy", "models:/compat/1", "--to", dest, "--with-exports")
    assert _hash_tree(home / "mlflow") == before
    assert [(v["source"], v["destination"], v["copied"]) for v in done["versions"]] == [
        ("models:/compat/1", "models:/compat/1", False),
        ("models:/compat.onnx/1", "models:/compat.onnx/1", True),
    ]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dest)
    for ref, have in src.items():
        got = _json(capsys, "registry", "show", ref)["version"]
        assert got["tags"]["zoo.weights_sha256"] == have["tags"]["zoo.weights_sha256"]
        assert (
            got["license"] == have["license"]
            and got["lineage"]["parents"] == have["lineage"]["parents"]
        )
    assert "compat.onnx" in json.dumps(_json(capsys, "registry", "lineage", "compat"))
    report = _json(capsys, "registry", "check", "--verify")
    assert report["ok"] and report["versions"] == 2


def test_every_parent_of_a_version_of_several_is_copied_and_re_pointed(
    source: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """N/4 has parents N/1 and N/2. N/3's copy came first (N/2 -> 1, N/3 -> 2): N/4's
    copy reuses N/2's, copies N/1 (-> 3), and its parent tag names both re-pointed."""
    name = source["name"]
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    _source_env(monkeypatch, source)
    four = _register_two_parent_version(name)
    capsys.readouterr()
    _json(capsys, "registry", "copy", f"models:/{name}/3", "--to", dest)
    done = _json(capsys, "registry", "copy", four, "--to", dest)
    assert [(v["source"], v["destination"], v["copied"]) for v in done["versions"]] == [
        (f"models:/{name}/1", f"models:/{name}/3", True),
        (f"models:/{name}/2", f"models:/{name}/1", False),
        (four, f"models:/{name}/4", True),
    ]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dest)
    got = _json(capsys, "registry", "show", f"models:/{name}/4")["version"]
    assert got["parent"] == f"models:/{name}/3,models:/{name}/1"
    assert [p["reference"] for p in got["lineage"]["parents"]] == [
        f"models:/{name}/3",
        f"models:/{name}/1",
    ]
    assert _json(capsys, "registry", "check", "--verify")["ok"]


def test_the_licence_is_decided_again_on_the_destination(
    source: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The destination's copy of the parent says no derivatives: the child (declared
    cc-by-nc-4.0) is refused there in one line, exit 5, and no version is made."""
    from mlflow import MlflowClient

    name = source["name"]
    dest = f"sqlite:///{tmp_path / 'dest.db'}"
    _source_env(monkeypatch, source)
    _json(capsys, "registry", "copy", f"models:/{name}/2", "--to", dest)
    MlflowClient(tracking_uri=dest, registry_uri=dest).set_model_version_tag(
        name, "1", "zoo.license", "cc-by-nc-nd-4.0"
    )
    code, out, err = _cli(capsys, "registry", "copy", f"models:/{name}/3", "--to", dest)
    assert code == 5 and out == "", err
    assert "cc-by-nc-nd-4.0" in err and len(err.strip().splitlines()) == 1, err
    assert "--license-override" not in err  # a fine-tune's fix, not a copy's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dest)
    listed = _json(capsys, "registry", "list")["versions"]
    assert [v["model_uri"] for v in listed] == [f"models:/{name}/1"]
