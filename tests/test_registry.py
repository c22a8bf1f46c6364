"""The registry on both backends: chain lineage, licences, CLI, exports, deletes.

Every test here runs twice, on the embedded SQLite store and on a real `mlflow server`
backed by PostgreSQL (see registry_backends.py).
"""

from __future__ import annotations

import hashlib
import json
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

import zoo
from zoo import registry
from zoo.cli import run

BASE = "timm:test_resnet.r160_in1k"
CLASSES = ["cat", "dog", "fish"]


def _build(num_classes: int = 3) -> Any:
    import torch

    from zoo.catalog.index import provider_for

    torch.manual_seed(0)
    ref = zoo.parse_ref(BASE)
    return provider_for(ref).build(ref, num_classes=num_classes, pretrained=False).model


pytestmark = pytest.mark.usefixtures("use_backend")


@pytest.fixture(scope="module")
def parent_sha(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The base weights as a safetensors file, hashed the way a pull records them."""
    from safetensors.torch import save_model

    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_model(_build(1000), str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _register(model: Any, name: str, parent: str, **kw: Any) -> registry.RegisteredVersion:
    import torch

    args: dict[str, Any] = {
        "name": name,
        "parent": parent,
        "strategy": "linear-probe",
        "strategy_settings": {"epochs": 1, "lr": 0.01},
        "dataset": {
            "digest": "sha256:" + "0" * 64,
            "classes": CLASSES,
            "counts": {"cat": 4, "dog": 4, "fish": 2},
        },
        "metrics": {"val_accuracy": 0.75},
        "input_example": torch.zeros(2, 3, 32, 32),
        "preprocessing": {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3},
        "class_names": CLASSES,
    }
    args.update(kw)
    return registry.register_derivative(model, **args)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _make_chain(parent_sha: str) -> dict[str, Any]:
    """base -> v1 (apache-2.0, inherited) -> v2 registered from models:/NAME/1."""
    import torch

    name = unique_name()
    m1 = _build()
    v1 = _register(
        m1, name, f"{BASE}@0123abcd", parent_sha256=parent_sha, parent_license="apache-2.0"
    )
    m2 = _build()
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(0.01)
    v2 = _register(m2, name, v1.model_uri, strategy="full", license="cc-by-nc-4.0")
    return {"name": name, "v1": v1, "v2": v2, "m2": m2, "parent_sha": parent_sha}


@pytest.fixture(scope="module")
def chain(backend: Backend, parent_sha: str) -> dict[str, Any]:
    """One chain per backend, shared by the module's read-mostly tests."""
    with backend_env(backend):
        return _make_chain(parent_sha)


@pytest.fixture
def own_chain(parent_sha: str) -> dict[str, Any]:
    """A chain of the test's own, for tests that delete."""
    return _make_chain(parent_sha)


def test_chain_lineage_and_plain_mlflow_load_match_zoo_reload(
    chain: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    import torch

    name, v1, v2 = chain["name"], chain["v1"], chain["v2"]
    assert (v1.version, v2.version) == (1, 2)
    assert v1.parent == f"{BASE}@0123abcd" and v1.tags["zoo.parent_sha256"] == chain["parent_sha"]
    assert v2.parent == f"models:/{name}/1"
    assert v2.base == f"{BASE}@0123abcd"  # the root, found by walking parents
    assert v2.tags["zoo.parent_sha256"] == v1.tags["zoo.weights_sha256"]
    assert v2.lineage["chain"] == [f"{BASE}@0123abcd", f"models:/{name}/1"]
    assert v1.license == "apache-2.0" and v2.license == "cc-by-nc-4.0"
    # the parent's description lists its child, on this backend too (issue 25)
    from zoo.registry import get_version

    listed = get_version(v1.model_uri).description.partition("Derived from this version")[2]
    assert f"[models:/{name}/2](#/models/{name}/versions/2)" in listed

    code, out, _ = _cli(capsys, "registry", "lineage", name)
    assert code == 0
    lines = out.splitlines()
    root = next(i for i, line in enumerate(lines) if f"{BASE}@0123abcd" in line)
    i1 = next(i for i, line in enumerate(lines) if f"models:/{name}/1" in line)
    i2 = next(i for i, line in enumerate(lines) if f"models:/{name}/2" in line)
    assert root < i1 < i2
    assert "apache-2.0" in lines[root] and "apache-2.0" in lines[i1]
    assert "cc-by-nc-4.0" in lines[i2]
    # deeper indentation: v2 hangs under v1, which hangs under the base
    indent = [len(s) - len(s.lstrip(" │├└─")) for s in (lines[root], lines[i1], lines[i2])]
    assert indent[0] < indent[1] < indent[2]

    plain = mlflow.pytorch.load_model(f"models:/{name}/2")
    ours, version = registry.load_model(f"models:/{name}/2")
    assert version.version == 2 and version.class_names == tuple(CLASSES)
    torch.manual_seed(1)
    for batch in (1, 7):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            a, b = plain(x), ours(x)
        assert a.shape == (batch, 3)
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()
        assert torch.allclose(b, chain["m2"].eval()(x), atol=1e-5, rtol=0)


def test_every_version_carries_lineage_tags_json_record_and_model_card(
    chain: dict[str, Any], tmp_path: Path
) -> None:
    import yaml

    from zoo.registry.read import download_artifact

    v2 = chain["v2"]
    for tag in (
        "zoo.parent",
        "zoo.base",
        "zoo.strategy",
        "zoo.dataset_digest",
        "zoo.license",
        "zoo.weights_sha256",
        "zoo.zoo_version",
    ):
        assert v2.tags.get(tag), tag
    lin = v2.lineage
    assert lin["strategy"]["name"] == "full" and lin["strategy"]["settings"]["lr"] == 0.01
    assert lin["dataset"]["counts"] == {"cat": 4, "dog": 4, "fish": 2}
    assert lin["versions"]["torch"] and lin["versions"]["mlflow"] and lin["versions"]["zoo"]
    assert lin["metrics"] == {"val_accuracy": 0.75}
    record = download_artifact(v2, "lineage.json", tmp_path)
    assert json.loads(record.read_text())["parent"]["reference"] == f"models:/{chain['name']}/1"
    card = download_artifact(v2, "README.md", tmp_path).read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "cc-by-nc-4.0"
    assert front["base_model"] == f"{BASE}@0123abcd"
    assert front["base_model_relation"] == "finetune"
    assert front["datasets"] and front["model-index"][0]["results"][0]["metrics"]
    assert "## Intended use" in card
    # the description the MLflow UI shows links the parent's version page
    assert f"[models:/{chain['name']}/1](#/models/{chain['name']}/versions/1)" in v2.description
    assert "cc-by-nc-4.0" in v2.description and "sha256:" in v2.description


def test_tags_are_filterable_and_list_filters_by_licence_and_base(
    chain: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.registry import store

    name = chain["name"]
    mc = store.client()
    found = mc.search_model_versions(f"name = '{name}' AND tags.`zoo.license` = 'cc-by-nc-4.0'")
    assert [int(v.version) for v in found] == [2]
    code, out, _ = _cli(capsys, "registry", "list", "--license", "cc-by-nc-4.0", "--json")
    assert code == 0
    doc = json.loads(out)
    mine = [v for v in doc["versions"] if v["name"] == name]
    assert [v["version"] for v in mine] == [2] and doc["schema_version"] == 1
    code, out, _ = _cli(capsys, "registry", "list", "--base", BASE, "--json")
    mine = [v for v in json.loads(out)["versions"] if v["name"] == name]
    assert {1, 2} <= {v["version"] for v in mine}
    code, out, _ = _cli(capsys, "registry", "list", "--base", "timm:other.x", "--json")
    assert not [v for v in json.loads(out)["versions"] if v["name"] == name]


def test_show_alias_and_bare_name_resolution(
    chain: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.catalog.index import resolve

    name = chain["name"]
    assert _cli(capsys, "registry", "alias", name, "1", "champion")[0] == 0
    assert registry.get_version(f"models:/{name}@champion").version == 1
    assert registry.get_version(name).version == 2  # bare NAME: the latest version
    assert str(resolve(name)) == f"models:/{name}/latest"
    code, out, _ = _cli(capsys, "registry", "show", f"models:/{name}@champion", "--json")
    doc = json.loads(out)["version"]
    assert code == 0 and doc["version"] == 1 and doc["aliases"] == ["champion"]
    assert doc["license"] == "apache-2.0"
    code, out, _ = _cli(capsys, "registry", "show", f"models:/{name}/2")
    assert code == 0 and "cc-by-nc-4.0" in out and f"models:/{name}/1" in out
    code, _, err = _cli(capsys, "registry", "show", f"models:/{name}/9")
    assert code == 3 and "zoo registry list" in err


def test_incompatible_licence_refused_then_override_recorded(
    chain: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """A cc-by-nc-4.0 parent refuses apache-2.0 (exit 5, one line naming both licences);
    with --license-override the version is registered and carries the reason."""
    import click

    from zoo.contract.plugins import get_plugin_manager

    name, v2 = chain["name"], chain["v2"]

    class RegisterCommandPlugin:
        """A command defined by the test, registered the way a plugin adds one."""

        @zoo.hookimpl
        def register_commands(self, cli: click.Group) -> None:
            @cli.command("test-register")
            @click.option("--license", "license_")
            @click.option("--license-override")
            def test_register(license_: str | None, license_override: str | None) -> None:
                v = _register(
                    _build(),
                    name,
                    v2.model_uri,
                    license=license_,
                    license_override=license_override,
                )
                click.echo(v.model_uri)

    def invoke(*argv: str) -> tuple[int, str, str]:
        return _cli(capsys, "test-register", *argv)

    pm = get_plugin_manager()
    pm.register(RegisterCommandPlugin(), "test-register-plugin")
    try:
        code, out, err = invoke("--license", "apache-2.0")
        assert code == 5
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "apache-2.0" in lines[0] and "cc-by-nc-4.0" in lines[0]
        assert "--license-override" in lines[0]
        before = registry.list_versions(name)
        assert len(before) == 2  # nothing half-registered
        reason = "research-only internal evaluation, approved by legal"
        code, out, err = invoke("--license", "apache-2.0", "--license-override", reason)
        assert code == 0, err
        v3 = registry.get_version(out.strip())
        assert v3.license == "apache-2.0"
        assert v3.tags["zoo.license_override"] == reason
        assert v3.lineage["license"]["override"] == reason
        assert v3.lineage["license"]["parent"] == "cc-by-nc-4.0"
        assert reason in v3.description
    finally:
        pm.unregister("test-register-plugin")


def test_unknown_licence_is_inherited_and_warned_wherever_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = unique_name("mystery")
    _register(_build(), name, "local:someones-checkpoint", parent_sha256="f" * 64)
    v = registry.get_version(name)
    assert v.license == "unknown" and v.license_warning
    for argv in (
        ("registry", "show", name),
        ("registry", "list"),
        ("registry", "lineage", name),
    ):
        code, _, err = _cli(capsys, *argv)
        assert code == 0 and "licence 'unknown'" in err, argv
    with pytest.raises(zoo.LicenseError, match="unknown"):
        _register(_build(), name, v.model_uri, license="mit")


def test_delete_refuses_parent_unless_cascade_and_asks_first(
    own_chain: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = own_chain["name"]
    code, _, err = _cli(capsys, "registry", "delete", f"models:/{name}/1", "--yes")
    assert code == 2 and f"models:/{name}/2" in err and "--cascade" in err
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    code, _, err = _cli(capsys, "registry", "delete", f"models:/{name}/2")
    assert code != 0 and registry.get_version(f"models:/{name}/2").version == 2
    code, _, err = _cli(capsys, "registry", "delete", f"models:/{name}/1", "--yes", "--cascade")
    assert code == 0, err
    assert f"deleted models:/{name}/2" in err and f"deleted models:/{name}/1" in err
    assert registry.list_versions(name) == []
    report = registry.check()
    assert report.ok, report.problems


def test_export_is_registered_under_its_source_and_loads_with_plain_mlflow(
    chain: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    name, v2 = chain["name"], chain["v2"]
    # A real (tiny) ONNX graph: global average pool + a 3-way linear layer.
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel())
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = tmp_path / "parity.json"
    report.write_text('{"max_abs_diff": 0.0}')
    ev = registry.register_export(
        v2,
        path,
        fmt="onnx",
        input_example=np.zeros((2, 3, 32, 32), np.float32),
        files={"parity.json": report},
    )
    assert ev.name == f"{name}.onnx" and ev.version == 1
    assert ev.tags["zoo.derived_from"] == v2.model_uri and ev.relation == "export"
    assert ev.license == v2.license
    loaded = mlflow.onnx.load_model(f"models:/{name}.onnx/1")
    onnx.checker.check_model(loaded)
    code, out, _ = _cli(capsys, "registry", "lineage", name)
    lines = out.splitlines()
    i2 = next(i for i, line in enumerate(lines) if f"models:/{name}/2 " in line + " ")
    ie = next(i for i, line in enumerate(lines) if f"models:/{name}.onnx/1" in line)
    assert ie > i2 and "export" in lines[ie] and "cc-by-nc-4.0" in lines[ie]
    # an export cannot be deleted out from under: its source now has a child
    code, _, err = _cli(capsys, "registry", "delete", v2.model_uri, "--yes")
    assert code == 2 and f"models:/{name}.onnx/1" in err


def test_parent_sha256_must_match_a_registered_parent(chain: dict[str, Any]) -> None:
    with pytest.raises(zoo.IntegrityError, match="sha256"):
        _register(_build(), chain["name"], chain["v1"].model_uri, parent_sha256="0" * 64)


def test_chain_through_zoo_finetune_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """base -> v1 -> v2 made by `zoo finetune` (v2 fine-tunes models:/NAME/1): the lineage
    tree, licences, and plain MLflow's load of v2 against zoo's own reload."""
    import mlflow
    import torch
    from finetune_helpers import make_images

    monkeypatch.setenv("CI", "true")
    data = make_images(tmp_path / "data", classes=2, per_class=6)
    name = unique_name("ft-chain")
    common = ["--epochs", "1", "--image-size", "32", "--batch-size", "4", "--json"]
    first = ["finetune", "timm:test_resnet", str(data), "--random-init", "--name", name]
    code, out, err = _cli(capsys, *first, "--strategy", "partial", "--unfreeze", "1", *common)
    assert code == 0, err
    v1 = registry.get_version(json.loads(out)["model_uri"])
    code, out, err = _cli(
        capsys,
        "finetune",
        f"models:/{name}/1",
        str(data),
        "--name",
        name,
        "--strategy",
        "full",
        "--license",
        "cc-by-nc-4.0",
        *common,
    )
    assert code == 0, err
    v2 = registry.get_version(json.loads(out)["model_uri"])
    assert (v1.version, v2.version) == (1, 2)
    assert v2.parent == f"models:/{name}/1" and v2.base == v1.parent
    assert v1.license == "apache-2.0" and v2.license == "cc-by-nc-4.0"

    code, out, _ = _cli(capsys, "registry", "lineage", name)
    assert code == 0
    lines = out.splitlines()
    i1 = next(i for i, line in enumerate(lines) if f"models:/{name}/1" in line)
    i2 = next(i for i, line in enumerate(lines) if f"models:/{name}/2" in line)
    root = next(i for i, line in enumerate(lines) if v1.parent in line and i < i1)
    assert root < i1 < i2 and "cc-by-nc-4.0" in lines[i2] and "apache-2.0" in lines[i1]

    plain = mlflow.pytorch.load_model(f"models:/{name}/2")
    ours, _ = registry.load_model(f"models:/{name}/2")
    torch.manual_seed(2)
    for batch in (1, 7):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            a, b = plain(x), ours(x)
        assert a.shape == (batch, 2)
        assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()
