"""`zoo rank` end to end on tiny real models: one pass per backbone through the feature
cache a probe reuses, metrics from the plugin, the middle stage named, a subset chosen by
content; `--strategy auto` records its decision in the lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.finetune_helpers import make_images
from zoo.cli import run


def _import(tmp_path: Path, arch: str, name: str, *, scale: float = 1.0) -> str:
    from safetensors.torch import save_file

    from zoo.build import build_backbone
    from zoo.engine.seeding import seed_everything

    seed_everything(len(name))
    state = build_backbone(arch, pretrained=False).model.state_dict()
    weights = tmp_path / f"{name}.safetensors"
    save_file(
        {k: (v * scale if v.is_floating_point() else v).contiguous() for k, v in state.items()},
        str(weights),
    )
    assert run(["import", str(weights), "--arch", arch, "--license", "mit", "--name", name]) == 0
    return f"local:{name}"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_images(tmp_path / "data", classes=3, per_class=8, size=(36, 36))


def _rank(capsys, *args: str) -> dict:
    capsys.readouterr()
    code = run(["rank", *args, "--image-size", "32", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_rank_scores_every_backbone_best_first_and_a_probe_reuses_its_features(
    tmp_path: Path, data: Path, zoo_home: Path, capsys
) -> None:
    refs = [
        _import(tmp_path, "timm:test_resnet", "tiny-a"),
        _import(tmp_path, "timm:test_vit", "tiny-b"),
    ]
    doc = _rank(capsys, str(data), *refs)
    rows = doc["rows"]
    assert doc["metric"] == "logme" and {r["reference"] for r in rows} == set(refs)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(r["images"] == 24 and r["layer"] == "final" and r["feature_dim"] > 0 for r in rows)
    caches = sorted((zoo_home / "features").glob("*.safetensors"))
    assert len(caches) == 2
    capsys.readouterr()
    cmd = [
        "finetune",
        refs[0],
        str(data),
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--val-split",
        "0.2",
    ]
    assert run(cmd) == 0
    assert "extracting features" not in capsys.readouterr().err  # the rank's pass, reused
    assert sorted((zoo_home / "features").glob("*.safetensors")) == caches


def test_middle_stage_source_metrics_and_a_subset(tmp_path: Path, data: Path, capsys) -> None:
    ref = _import(tmp_path, "timm:test_resnet", "tiny-c")
    rows = _rank(capsys, str(data), ref, "--layers", "final,mid")["rows"]
    assert [r["layer"] for r in rows] == ["final", "layer2"]  # test_resnet: stem, layer1..4, head
    leep = _rank(capsys, str(data), ref, "--metric", "leep")["rows"][0]
    nce = _rank(capsys, str(data), ref, "--metric", "nce")["rows"][0]
    assert leep["score"] <= 0 and nce["score"] <= 0  # log-likelihoods through the source head
    subset = _rank(capsys, str(data), ref, "--max-images", "12")["rows"][0]
    assert subset["images"] == 12


def test_an_unknown_metric_is_one_line_naming_the_installed_ones(data: Path, capsys) -> None:
    assert run(["rank", str(data), "timm:test_resnet", "--metric", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no metric 'nope'" in err and "logme" in err and "Traceback" not in err


def test_auto_records_its_decision_and_evidence_in_the_lineage(tmp_path: Path, data: Path) -> None:
    ref = _import(tmp_path, "timm:test_resnet", "tiny-d")
    cmd = [
        "finetune",
        ref,
        str(data),
        "--strategy",
        "auto",
        "--image-size",
        "32",
        "--name",
        "auto-run",
    ]
    assert run(cmd) == 0
    from zoo.registry import get_version

    settings = get_version("models:/auto-run/1").lineage["strategy"]["settings"]
    assert settings["decision"] == "linear-probe"  # 6 images per class to train on
    assert settings["evidence"]["median_per_class"] == 6
    assert "logme_final" in settings["evidence"] and settings["reason"]
    assert torch.isfinite(torch.tensor(settings["evidence"]["logme_final"]))
