"""`zoo registry reproduce` (issue 25, docs/registry.md "Reproducing a version"): a version
trained in deterministic mode is trained again from its lineage to the same weights
SHA-256; data whose digest differs is refused in one line before anything trains; the
store keeps the same versions and the registered run's checkpoint folder is untouched.

Real SQLite store, timm's tiny test model from random weights, small generated images.
Two versions are trained once for the module: a linear probe and a two-phase lp-ft."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.finetune_helpers import make_images, module_home_env
from zoo.cli import run

RECIPE = "deterministic: true\nprecision: fp32\nworkers: 0\n"
TINY = ["--epochs", "2", "--image-size", "32", "--batch-size", "4", "--random-init"]


@dataclass(frozen=True)
class Store:
    root: Path  # holds the zoo home
    data: Path  # 2 classes x 8 images


def _env(mp: pytest.MonkeyPatch, root: Path) -> None:
    module_home_env(mp, root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("reproduce")
    data = make_images(root / "data", classes=2, per_class=8)
    config = root / "recipe.yaml"
    config.write_text(RECIPE, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, root)
        for name, extra in (("rp", []), ("rp-lpft", ["--strategy", "lp-ft", "--unfreeze", "1"])):
            args = ["timm:test_resnet", str(data), "--name", name, *TINY, *extra]
            assert run(["finetune", *args, "--config", str(config)]) == 0
    return Store(root, data)


@pytest.fixture
def store(trained: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    """This test's zoo home is the module's, where rp/1 and rp-lpft/1 are registered."""
    _env(monkeypatch, trained.root)
    return trained


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _versions(capsys: pytest.CaptureFixture[str]) -> list[tuple[str, int, str]]:
    """Every version in the store (listed as `zoo registry list` lists them), with its
    weights' hash."""
    from zoo.registry import get_version

    code, out, _ = _cli(capsys, "registry", "list", "--json")
    assert code == 0
    uris = [v["model_uri"] for v in json.loads(out)["versions"]]
    return sorted((u, 0, get_version(u).tags.get("zoo.weights_sha256", "")) for u in uris)


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the lock files aside) with its content's sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith("recipe.")
    }


def _registered_sha(uri: str) -> str:
    from zoo.registry import get_version

    return get_version(uri).tags["zoo.weights_sha256"]


@pytest.mark.parametrize("uri", ["models:/rp/1", "models:/rp-lpft/1"])
def test_deterministic_version_reproduces_to_the_same_weights_sha256(
    store: Store, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    home = store.root / "home"
    before, runs = _versions(capsys), _files(home / "runs")
    code, out, err = _cli(capsys, "registry", "reproduce", uri, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["kind"] == "registry_reproduce"
    assert report["weights_sha256"]["reproduced"] == _registered_sha(uri)
    assert report["identical"] is True and report["deterministic"] is True
    assert report["notes"] == []  # same libraries, device kind and process count: nothing said
    assert report["data"] == str(store.data.resolve())  # the recorded path, by default
    assert {m["name"] for m in report["metrics"]} >= {"val_accuracy", "val_loss"}
    assert all(m["difference"] == 0 for m in report["metrics"])
    # it trained (the epoch lines), from scratch in a folder of its own, since removed
    assert re.search(r"epoch \d+/\d+ \(\w+\): train loss", err) and "from scratch" in err
    assert not any((home / "reproduce").iterdir())
    # nothing registered, and the registered run's checkpoint folder is byte for byte as it was
    assert _versions(capsys) == before
    assert _files(home / "runs") == runs


def test_text_output_says_identical(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "registry", "reproduce", "models:/rp/1", str(store.data), "--check")
    assert code == 0
    sha = _registered_sha("models:/rp/1")
    assert out.strip().startswith("reproduced models:/rp/1: weights identical")
    assert sha in out


def test_changed_data_is_refused_in_one_line_before_training(
    store: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from PIL import Image

    changed = shutil.copytree(store.data, tmp_path / "changed")
    one = changed / "class0" / "img003.png"
    image = Image.open(one).convert("RGB")
    image.putpixel((0, 0), tuple(255 - c for c in image.getpixel((0, 0))))  # type: ignore[misc]
    image.save(one)
    home = store.root / "home"
    before, runs = _versions(capsys), _files(home / "runs")
    code, out, err = _cli(capsys, "registry", "reproduce", "models:/rp/1", str(changed))
    assert code == 2
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "is not the data models:/rp/1 was trained on" in errors[0]
    assert "Traceback" not in err and out == ""
    assert "epoch" not in err and "reproducing" not in err  # refused before any training
    assert _versions(capsys) == before
    assert _files(home / "runs") == runs
    assert not (home / "reproduce").exists() or not any((home / "reproduce").iterdir())


def test_the_lineage_records_what_reproduce_needs(store: Store) -> None:
    """The data's own path (a CSV manifest's folder would not do) and where it trained."""
    lineage = _lineage_of("models:/rp/1")
    assert lineage["dataset"]["path"] == str(store.data.resolve())
    assert lineage["strategy"]["settings"]["runtime"] == {"device": "cpu", "processes": 1}


def test_a_version_trained_from_a_csv_manifest_reproduces_from_it(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lineage's ``dataset.path`` is the manifest itself (``root`` is its folder)."""
    manifest = store.root / "manifest.csv"
    images = sorted(store.data.rglob("*.png"))
    rows = [f"data/{p.relative_to(store.data)},{p.parent.name}" for p in images]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n", "utf-8")
    args = ["timm:test_resnet", str(manifest), "--name", "rp-csv", *TINY]
    assert run(["finetune", *args, "--config", str(store.root / "recipe.yaml")]) == 0
    capsys.readouterr()
    code, out, err = _cli(capsys, "registry", "reproduce", "models:/rp-csv/1", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["data"] == str(manifest.resolve()) and report["identical"] is True
    assert report["weights_sha256"]["reproduced"] == _registered_sha("models:/rp-csv/1")


def test_a_version_without_a_recipe_is_refused_in_one_line(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """Registered through the library (as older zoo versions and other tools did): its
    lineage records no recipe, so there is nothing to train again."""
    _register_through_the_library("rp-library")
    before = _versions(capsys)
    code, out, err = _cli(capsys, "registry", "reproduce", "models:/rp-library/1")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "records no recipe" in err and "Traceback" not in err
    assert _versions(capsys) == before
    code, _, err = _cli(capsys, "registry", "reproduce", "models:/no-such/1")
    assert code == 3 and err.count("\n") == 1


def test_causes_for_other_bytes_are_said_and_the_metrics_compared(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version whose lineage says it trained elsewhere (other libraries, a GPU, two
    processes) and whose weights are not the ones this recipe gives: each cause is one
    line before the run, the metrics are set side by side, and --check exits 4."""
    from mlflow import MlflowClient

    version = _register_through_the_library("rp-elsewhere")
    lineage = _lineage_of("models:/rp/1")
    lineage["versions"]["torch"] = "1.0.0"
    lineage["strategy"]["settings"]["runtime"] = {"device": "cuda", "processes": 2}
    lineage["metrics"]["val_accuracy"] = 0.25
    MlflowClient().set_model_version_tag(
        version.name, str(version.version), "zoo.lineage", json.dumps(lineage)
    )
    code, out, err = _cli(capsys, "registry", "reproduce", version.model_uri, "--check")
    assert code == 4
    before_run = err.split("reproducing")[0]
    assert "library versions differ from the recorded ones (torch 1.0.0 -> " in before_run
    assert "was trained on cuda, reproduced on cpu" in before_run
    assert "was trained on 2 processes" in before_run
    assert "weights differ" in out
    row = next(line.split() for line in out.splitlines() if line.startswith("val_accuracy "))
    assert row[1] == "0.25" and float(row[3]) == pytest.approx(float(row[2]) - 0.25)
    assert err.strip().splitlines()[-1].startswith("zoo: error: the reproduced weights of")


def _register_through_the_library(name: str) -> Any:
    import torch

    from zoo import registry
    from zoo.catalog.index import provider_for
    from zoo.contract.refs import parse_ref

    ref = parse_ref("timm:test_resnet.r160_in1k")
    model = provider_for(ref).build(ref, num_classes=2, pretrained=False).model
    return registry.register_derivative(
        model,
        name=name,
        parent=str(ref),
        strategy="linear-probe",
        strategy_settings={"epochs": 1},
        dataset={"digest": "sha256:" + "0" * 64},
        metrics={"val_accuracy": 0.5},
        input_example=torch.zeros(2, 3, 32, 32),
        preprocessing=None,
        class_names=["a", "b"],
    )


def _lineage_of(uri: str) -> dict[str, Any]:
    from zoo.registry import get_version

    return dict(get_version(uri).lineage)
