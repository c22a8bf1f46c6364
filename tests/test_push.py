"""`zoo registry push` to the local Hub (tests/hub_fixture.py with its write half,
tests/hub_write.py) through the real huggingface_hub client, then `zoo pull`, `zoo info`
and `zoo finetune` of the pushed repo: the grandchild's lineage reaches the original base."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.finetune_helpers import make_images
from tests.hub_fixture import serving_timm_default
from tests.hub_write import TOKEN
from zoo.cli import run

BASE = "timm:test_resnet.r160_in1k"
COMMON = ["--epochs", "1", "--image-size", "32", "--batch-size", "4"]


def _out(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def test_bad_input_is_one_line_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, _, err = _out(capsys, "registry", "push", "pets", "hf:acme/pets")
    assert code == 2 and "models:/NAME/N" in err and len(err.strip().splitlines()) == 1
    for target in ("acme/pets", "hf:acme", "hf:acme/pets@v2", "timm:acme/pets"):
        code, _, err = _out(capsys, "registry", "push", "models:/pets/1", target)
        assert code == 2 and "hf:ORG/REPO" in err, (target, err)
    code, _, err = _out(capsys, "registry", "push", "models:/pets/1", "hf:acme/pets")
    assert code == 2 and "no Hugging Face token" in err and "HF_TOKEN" in err
    assert "Traceback" not in err


def test_push_pull_finetune_keeps_the_lineage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import ModelCard

    from zoo.registry import get_version

    data = make_images(tmp_path / "data", classes=2, per_class=6)
    with serving_timm_default(monkeypatch) as hub:
        assert run(["finetune", BASE, str(data), "--name", "pets", *COMMON]) == 0
        v1 = get_version("models:/pets/1")

        monkeypatch.setenv("HF_TOKEN", "hf_not_a_token_the_hub_knows")
        code, _, err = _out(capsys, "registry", "push", "models:/pets/1", "hf:acme/pets")
        assert code == 2 and "refused the token" in err, err
        assert "acme/pets" not in hub.repos  # nothing half-written

        monkeypatch.setenv("HF_TOKEN", TOKEN)
        hub.reset_requests()
        code, out, err = _out(
            capsys, "registry", "push", "models:/pets/1", "hf:acme/pets", "--json"
        )
        assert code == 0, err
        doc = json.loads(out)
        assert doc["kind"] == "registry_push" and doc["base_model"] == "timm/test_resnet.r160_in1k"
        repo = hub.repos["acme/pets"]
        assert doc["commit"] == repo.commit
        assert set(repo.files) == {"model.safetensors", "config.json", "README.md", "lineage.json"}
        # the client's own protocol: create, preupload, LFS batch + PUT + verify, NDJSON commit
        assert hub.count("POST", "/api/repos/create") == 1
        assert hub.count("POST", "/preupload/main") == 1
        assert hub.count("POST", ".git/info/lfs/objects/batch") == 1
        assert hub.count("PUT", "/lfs-upload/") == 1
        assert hub.count("POST", "/commit/main") == 1
        weights = repo.files["model.safetensors"]
        assert hashlib.sha256(weights).hexdigest() == v1.tags["zoo.weights_sha256"]

        config = json.loads(repo.files["config.json"])
        assert config["architecture"] == "test_resnet" and config["num_classes"] == 2
        assert config["label_names"] == list(v1.class_names)
        assert config["pretrained_cfg"]["num_classes"] == 2

        card = ModelCard(repo.files["README.md"].decode())
        assert card.data.base_model == "timm/test_resnet.r160_in1k"
        assert card.data.base_model_relation == "finetune"
        assert card.data.license == v1.license and card.data.library_name == "timm"
        assert card.data.datasets == [v1.lineage["dataset"]["digest"]]
        assert card.data.eval_results  # model-index metrics parse
        pushed = json.loads(repo.files["lineage.json"])
        assert pushed["pushed"]["from"] == "models:/pets/1"
        _timm_loads_it(hub.url, tmp_path, weights)

        # pull builds it; info shows where it comes from
        assert run(["pull", "hf:acme/pets"]) == 0
        code, out, err = _out(capsys, "info", "hf:acme/pets", "--json")
        assert code == 0, err
        info = json.loads(out)
        assert info["lineage"]["base"] == v1.base and info["lineage"]["pushed_from"] == v1.model_uri
        import zoo

        built = zoo.build_backbone("hf:acme/pets")
        assert built.model.get_classifier().out_features == 2

        # a fine-tune of the pulled repo: its lineage reaches the original base
        assert run(["finetune", "hf:acme/pets", str(data), "--name", "pets-grand", *COMMON]) == 0
        grand = get_version("models:/pets-grand/1")
        assert grand.parent == f"hf:acme/pets@{repo.commit}"
        assert grand.base == v1.base and grand.base.startswith(BASE)
        assert grand.lineage["chain"] == [v1.base, grand.parent]
        code, out, err = _out(capsys, "registry", "lineage", "pets-grand", "--json")
        assert code == 0, err
        (root,) = json.loads(out)["roots"]
        assert root["reference"] == v1.base
        via = {c["reference"]: c for c in root["children"]}
        assert grand.parent in via and v1.model_uri in via
        assert [c["reference"] for c in via[grand.parent]["children"]] == [grand.model_uri]
        code, out, _ = _out(capsys, "registry", "lineage", "pets-grand")
        assert code == 0 and "hf:acme/pets@" in out and "models:/pets-grand/1" in out

        # refused in one line, nothing sent: a module zoo composed, a licence forbidding it
        commits = len(hub.commits)
        _refuses_what_the_hub_cannot_describe(v1)
        nd = ["finetune", "models:/pets/1", str(data), "--name", "nd", "--license", "cc-by-nd-4.0"]
        assert run([*nd, *COMMON]) == 0
        code, _, err = _out(capsys, "registry", "push", "models:/nd/1", "hf:acme/nd")
        assert code == 5 and "forbids distributing derivatives" in err, err
        assert len(err.strip().splitlines()) == 1
        assert len(hub.commits) == commits and "acme/nd" not in hub.repos


def _refuses_what_the_hub_cannot_describe(version: Any) -> None:
    """A multi-stage probe's or a multi-backbone probe's record (the real version's, with
    the `architecture` or the second parent such a fine-tune records) is refused before
    any model is built or request sent."""
    from dataclasses import replace

    from zoo.contract.errors import UsageError
    from zoo.registry.push import _refuse_unpushable

    probe = {"kind": "stage-probe", "taps": ["layer1", "layer2"]}
    for lineage in (
        {**version.lineage, "architecture": probe},
        {**version.lineage, "parents": [version.lineage["parent"]] * 2},
    ):
        with pytest.raises(UsageError, match="cannot describe"):
            _refuse_unpushable(replace(version, lineage=lineage))
    _refuse_unpushable(version)  # the plain fine-tune passes


def _timm_loads_it(endpoint: str, tmp_path: Path, weights: bytes) -> None:
    """timm itself builds the pushed repo from its config.json and weights (a process of
    its own: huggingface_hub reads HF_ENDPOINT at import)."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load

    script = (
        "import json, timm; m = timm.create_model('hf-hub:acme/pets', pretrained=True); "
        "print(json.dumps({'classes': m.num_classes, "
        "'sum': float(m.get_classifier().weight.double().sum())}))"
    )
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(tmp_path / "timm-hf")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    fc = load(weights)["fc.weight"]
    assert got["classes"] == 2 and got["sum"] == pytest.approx(float(fc.double().sum()))
