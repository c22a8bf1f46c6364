"""`zoo rank` end to end on tiny real models: one pass per backbone through the feature
cache a probe reuses, metrics from the plugin, the middle stage named, a subset chosen by
content; `--strategy auto` records its decision in the lineage."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.finetune_helpers import make_images
from zoo.cli import run


def _import(tmp_path: Path, arch: str, name: str, *, scale: float = 1.0) -> str:
    from safetensors.torch import save_file

    from zoo.catalog.build import build_backbone
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
    # best first: a backbone whose features are all zero tells no class apart (k-NN near
    # chance, 1/3), so it comes last though it is given first
    blank = _import(tmp_path, "timm:test_resnet", "tiny-0", scale=0.0)
    ordered = _rank(capsys, str(data), blank, *refs, "--metric", "knn")["rows"]
    assert ordered[-1]["reference"] == blank and ordered[-1]["score"] < 0.5
    assert ordered[0]["score"] > ordered[-1]["score"]
    shutil.rmtree(zoo_home / "features")
    doc = _rank(capsys, str(data), *refs)
    rows = doc["rows"]
    assert doc["metric"] == "logme" and doc["metrics"] == ["logme", "knn"]  # side by side
    assert {r["reference"] for r in rows} == set(refs)
    assert all(set(r["scores"]) == {"logme", "knn"} for r in rows)
    assert all(r["score"] == r["scores"]["logme"] for r in rows)
    assert all(r["images"] == 24 and r["layer"] == "final" and r["feature_dim"] > 0 for r in rows)
    caches = sorted((zoo_home / "features").glob("*/rows.json"))
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
    assert sorted((zoo_home / "features").glob("*/rows.json")) == caches


def test_middle_stage_source_metrics_and_a_subset(tmp_path: Path, data: Path, capsys) -> None:
    ref = _import(tmp_path, "timm:test_resnet", "tiny-c")
    rows = _rank(capsys, str(data), ref, "--layers", "final,mid")["rows"]
    assert [r["layer"] for r in rows] == ["final", "layer2"]  # test_resnet: stem, layer1..4, head
    blank = _import(tmp_path, "timm:test_resnet", "tiny-c0", scale=0.0)
    leep = {
        r["reference"]: r["score"]
        for r in _rank(capsys, str(data), ref, blank, "--metric", "leep")["rows"]
    }
    nce = {
        r["reference"]: r["score"]
        for r in _rank(capsys, str(data), ref, blank, "--metric", "nce")["rows"]
    }
    # a backbone whose weights are all zero predicts the same source distribution for
    # every image: its labels tell nothing about the classes (3, balanced), so NCE is
    # -H(y) = -log 3 and LEEP log(1/3), exactly; a backbone that tells images apart
    # scores above both (NCE = -H(y | z) <= 0)
    assert math.isclose(nce[blank], -math.log(3), abs_tol=1e-6), nce
    assert math.isclose(leep[blank], -math.log(3), abs_tol=1e-6), leep
    assert -math.log(3) + 1e-3 < nce[ref] <= 0 and leep[ref] > leep[blank] + 1e-5
    subset = _rank(capsys, str(data), ref, "--max-images", "12")["rows"][0]
    assert subset["images"] == 12


def test_above_the_scoring_cap_every_image_is_cached_and_a_stratified_subsample_scored(
    tmp_path: Path, data: Path, zoo_home: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more images than the metrics score (SCORE_IMAGES, 12 here for 24 images),
    the forward pass caches all 24 and LogME scores the same 12 rows, 4 of each class,
    that k-NN's own subsample takes; the table says so."""
    import zoo
    from zoo.choose import rank as rank_mod
    from zoo.choose.transferability import stratified_subsample
    from zoo.engine.context import Dist
    from zoo.engine.rows import open_rows

    monkeypatch.setattr(rank_mod, "SCORE_IMAGES", 12)
    ref = _import(tmp_path, "timm:test_resnet", "tiny-cap")
    (row,) = _rank(capsys, str(data), ref, "--metric", "logme,knn")["rows"]
    assert row["images"] == 12 and row["of_images"] == 24
    (folder,) = (zoo_home / "features").iterdir()
    cached = open_rows(folder, Dist())
    assert cached is not None and len(cached["features"]) == 24  # every image cached
    labels = cached["labels"].load().numpy()
    keep = stratified_subsample(labels, 12)
    assert np.bincount(labels[keep]).tolist() == [4, 4, 4]
    x = cached["features"].load().numpy()
    assert row["scores"]["logme"] == pytest.approx(zoo.logme(x[keep], labels[keep]), rel=1e-9)
    assert row["scores"]["logme"] != pytest.approx(zoo.logme(x, labels), rel=1e-6)
    assert row["scores"]["knn"] == pytest.approx(zoo.knn_accuracy(x, labels, max_images=12))
    capsys.readouterr()
    assert run(["rank", str(data), ref, "--image-size", "32"]) == 0
    assert "scored on a stratified subsample of 12 of the 24 images" in capsys.readouterr().err


def test_the_data_is_checked_once_for_every_backbone_and_said_once(
    tmp_path: Path, data: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A duplicate and a file that is no image are found by one check (with the first
    backbone) and said once; the other backbones read the files it kept, and each
    backbone's bars name it. A reference given without its tag says which one it got."""
    from tests.hub_fixture import serving_timm_default

    shutil.copy(data / "class0" / "img000.png", data / "class0" / "copy.png")
    (data / "class1" / "notes.png").write_text("not an image")
    local = _import(tmp_path, "timm:test_vit", "tiny-f")
    with serving_timm_default(monkeypatch):
        capsys.readouterr()
        argv = ["rank", str(data), local, "timm:test_resnet", "--image-size", "32"]
        assert run([*argv, "--metric", "knn"]) == 0
    err = capsys.readouterr().err
    assert err.count("duplicate file(s) left out") == 1, err
    assert err.count("notes.png") == 1, err
    assert err.count("checking images: started (26 images)") == 1, err
    assert "zoo: timm:test_resnet: reading the checked images: started (24 images)" in err, err
    assert "zoo: local:tiny-f: extracting features: started (24 images)" in err, err
    assert "zoo: timm:test_resnet: extracting features: started (24 images)" in err, err
    assert (
        "zoo: timm:test_resnet resolved to timm:test_resnet.r160_in1k (timm's default "
        "pretrained tag)" in err
    ), err


def test_an_unknown_metric_is_one_line_naming_the_installed_ones(data: Path, capsys) -> None:
    assert run(["rank", str(data), "timm:test_resnet", "--metric", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no metric 'nope'" in err and "logme" in err and "Traceback" not in err


def test_auto_records_its_decision_and_evidence_in_the_lineage(tmp_path: Path, data: Path) -> None:
    ref = _import(tmp_path, "timm:test_resnet", "tiny-d")
    cmd = ["finetune", ref, str(data), "--strategy", "auto", "--image-size", "32"]
    assert run([*cmd, "--unfreeze", "0", "--name", "auto-run"]) == 0  # 0: frozen candidates
    from zoo.registry import get_version

    settings = get_version("models:/auto-run/1").lineage["strategy"]["settings"]
    # the decision the evidence recorded beside it says: the challenger only below alpha
    p = settings["evidence"]["p.stage-probe"]
    if p < 0.05:
        assert settings["decision"] == "stage-probe"
        assert settings["reason"].startswith("chosen by 5-fold CV repeated 10 times")
    else:
        assert settings["decision"] == "linear-probe"
        assert settings["reason"].startswith("the baseline, kept: no richer candidate beat it")
    assert "5-fold CV repeated 10 times on the 18 training images" in settings["reason"]
    assert [row["candidate"] for row in settings["search"]] == ["linear-probe", "stage-probe"]
    assert 0 <= settings["evidence"]["cv.linear-probe"] <= 1
    assert 0 <= settings["evidence"]["p.stage-probe"] <= 1  # what the challenger was tested by
    assert settings["evidence"]["alpha"] == 0.05  # one challenger: the whole level
    assert settings["evidence"]["train_images"] == 18


def test_a_registered_derivative_is_ranked_under_its_own_name(
    tmp_path: Path, data: Path, capsys
) -> None:
    ref = _import(tmp_path, "timm:test_resnet", "tiny-e")
    cmd = ["finetune", ref, str(data), "--image-size", "32", "--name", "derived"]
    assert run(cmd) == 0
    rows = _rank(capsys, str(data), "models:/derived/1", ref, "--metric", "knn")["rows"]
    assert sorted(row["reference"] for row in rows) == sorted(["models:/derived/1", ref])


# ------------------------------------------------------------------------------ k-NN


def _blobs(n_per_class: int, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(size=(classes, 16)) * 4
    return centres[y] + rng.normal(size=(len(y), 16)), y


def test_knn_tells_separable_labels_from_shuffled_ones() -> None:
    from zoo import knn_accuracy

    x, y = _blobs(30)
    separable = knn_accuracy(x, y)
    shuffled = knn_accuracy(x, np.random.default_rng(1).permutation(y))
    assert separable > 0.95 and shuffled < 0.45, (separable, shuffled)  # chance: 0.25


def test_knn_chunks_give_the_direct_leave_one_out_answer() -> None:
    from zoo.choose.transferability import knn_accuracy

    x, y = _blobs(10, classes=3, seed=2)
    x = x + np.random.default_rng(3).normal(size=x.shape) * 6  # overlapping: errors happen
    f = (x - x.mean(0)) / x.std(0)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    sims = f @ f.T  # the direct N x N computation
    np.fill_diagonal(sims, -np.inf)
    correct = 0
    for i in range(len(y)):
        near = np.argsort(-sims[i])[:5]
        votes = np.zeros(3)
        for j in near:
            votes[y[j]] += sims[i, j] + 1
        correct += int(votes.argmax() == y[i])
    direct = correct / len(y)
    assert 0.2 < direct < 1.0
    for chunk in (1, 7, 30, 1024):
        assert knn_accuracy(x, y, chunk=chunk) == direct, chunk


def test_knn_scores_a_stratified_capped_subsample() -> None:
    from zoo.choose.transferability import stratified_subsample

    y = np.repeat([0, 1, 2], [600, 300, 100])
    keep = stratified_subsample(y, 100, seed=0)
    assert len(keep) == 100 and len(set(keep.tolist())) == 100
    assert np.bincount(y[keep]).tolist() == [60, 30, 10]  # each class keeps its share
    assert not np.array_equal(keep, stratified_subsample(y, 100, seed=1))  # seeded draw
    assert np.array_equal(keep, stratified_subsample(y, 100, seed=0))
    rare = np.repeat([0, 1], [999, 1])
    assert np.bincount(rare[stratified_subsample(rare, 10)]).tolist() == [9, 1]
    assert len(stratified_subsample(y[:50], 100)) == 50  # under the cap: every image
