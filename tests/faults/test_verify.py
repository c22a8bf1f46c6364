"""Artifacts altered behind zoo's back: `zoo registry check --verify` re-hashes each
version's weights and lineage.json against what was recorded at registration (exit 4,
naming the version and the file); plain `check` only proves the files are there."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from registry_backends import run_worker

from faults.helpers import expect_error_in_process


def _file_of(ref: str, inner: str) -> Path:
    from zoo import registry
    from zoo.registry.read import artifact_uri

    v = registry.get_version(ref)
    return Path(unquote(urlparse(artifact_uri(v, inner)).path))


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One registered version for the module (each test restores what it alters)."""
    home = tmp_path_factory.mktemp("verify-home")
    proc = run_worker("register", "verified", env={"ZOO_HOME": str(home)})
    assert proc.returncode == 0, proc.stdout.read() if proc.stdout else ""
    return home


@pytest.fixture
def version(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ZOO_HOME", str(shared_home))
    return "models:/verified/1"


def test_weights_replaced_by_other_valid_safetensors_are_reported(
    version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    weights = _file_of(version, "weights/model.safetensors")
    original = weights.read_bytes()
    from zoo.cli import run

    assert run(["registry", "check", "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verified"] == 2
    other = {k: torch.randn_like(v) for k, v in load_file(weights).items()}
    save_file(other, weights)  # valid file, same names and shapes, other numbers
    try:
        assert run(["registry", "check"]) == 0  # present: the cheap scan passes
        argv = ["registry", "check", "--verify"]
        expect_error_in_process(argv, capsys, 4, version, "weights/model.safetensors", "altered")
    finally:
        weights.write_bytes(original)


def test_an_edited_lineage_json_is_reported(
    version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lineage = _file_of(version, "lineage.json")
    original = lineage.read_text()
    record = json.loads(original)
    record["license"]["id"] = "mit-but-edited"
    lineage.write_text(json.dumps(record))
    try:
        argv = ["registry", "check", "--verify"]
        expect_error_in_process(argv, capsys, 4, version, "lineage.json")
    finally:
        lineage.write_text(original)


def test_a_deleted_weights_file_is_reported_without_verify(
    version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _file_of(version, "weights/model.safetensors")
    original = weights.read_bytes()
    weights.unlink()
    try:
        expect_error_in_process(["registry", "check", "--verify"], capsys, 4, version, "missing")
    finally:
        weights.write_bytes(original)
