"""Lineage-aware leakage (docs/finetune.md, "Leakage across a lineage"): every fine-tuned
version records its split as ``split.json``; fine-tuning a registered version says when
the new training split holds images an ancestor held out, and when its validation or test
split holds images an ancestor trained on (``--strict``: refuses, exit 2, nothing
registered; ``zoo registry show`` notes an optimistic test accuracy); a version without
the record is checked by recomputing its split when the data is the same, and "unknown"
is said when it is not.

Real SQLite store, timm's tiny test model, small generated images. One version (lk/1,
test 0.25 and validation 0.25 of each class) is trained once for the module."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.clihelp import show_rows
from tests.finetune_helpers import make_images, module_home_env
from zoo.cli import run

V1 = "models:/lk/1"
SPLIT = ["--val-split", "0.25", "--test-split", "0.25", "--seed", "0"]
TINY = ["--epochs", "1", "--image-size", "32", "--batch-size", "4"]


@dataclass(frozen=True)
class Lineage:
    root: Path  # holds the zoo home
    data: Path  # 2 classes x 8 images


def _env(mp: pytest.MonkeyPatch, root: Path) -> None:
    module_home_env(mp, root)


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> Lineage:
    root = tmp_path_factory.mktemp("leakage")
    data = make_images(root / "data", classes=2, per_class=8)
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, root)
        args = ["timm:test_resnet", str(data), "--random-init", "--name", "lk", *TINY, *SPLIT]
        code = run(["finetune", *args])
    assert code == 0
    return Lineage(root, data)


@pytest.fixture
def store(v1: Lineage, monkeypatch: pytest.MonkeyPatch) -> Lineage:
    """This test's zoo home is the module's, where lk/1 is registered."""
    _env(monkeypatch, v1.root)
    return v1


def _split_json(ref: str, where: Path) -> dict[str, Any]:
    from zoo.registry.read import download_artifact, get_version

    path = download_artifact(get_version(ref), "split.json", where)
    return json.loads(path.read_text(encoding="utf-8"))


def _copy(data: Path, dst: Path, keep: set[str] | None = None, prefix: str = "copy-") -> Path:
    """The files of ``data`` (those whose sha256 is in ``keep``) under new names."""
    for path in sorted(data.rglob("*.png")):
        if keep is not None and hashlib.sha256(path.read_bytes()).hexdigest() not in keep:
            continue
        target = dst / path.parent.name / f"{prefix}{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return dst


def _lines(err: str, start: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(start)]


def _runs(store: Lineage) -> set[str]:
    return {p.name for p in (store.root / "home" / "runs").iterdir()}


def test_split_json_lists_exactly_the_files_of_each_split(store: Lineage, tmp_path: Path) -> None:
    from zoo.data import load_dataset, split_dataset
    from zoo.registry import get_version

    record = _split_json(V1, tmp_path)
    lineage = get_version(V1).lineage
    dataset = lineage["dataset"]
    assert record["format"] == 1
    assert record["seed"] == 0
    assert record["fractions"] == {"validation": 0.25, "test": 0.25}
    assert record["dataset_digest"] == dataset["digest"]
    assert record["split_digest"] == dataset["split"]["digest"]
    assert dataset["split"]["record"] == "split.json"
    assert record["classes"] == ["class0", "class1"]
    splits = record["splits"]
    assert set(splits) == {"train", "validation", "test"}

    # every file, hashed here: each sits in exactly one part, under its own path and class
    on_disk = {
        p.relative_to(store.data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in store.data.rglob("*.png")
    }
    listed = [e for part in splits.values() for e in part]
    assert sorted(e["sha256"] for e in listed) == sorted(on_disk.values())
    for entry in listed:
        assert on_disk[entry["path"]] == entry["sha256"]
        assert entry["path"].split("/")[0] == entry["class"]
    for part in splits.values():
        assert [e["sha256"] for e in part] == sorted(e["sha256"] for e in part)

    # the sizes the run registered, and the split zoo makes of these files
    metrics = lineage["metrics"]
    sizes = {part: len(entries) for part, entries in splits.items()}
    assert sizes == {"train": 8, "validation": 4, "test": 4}
    assert sizes["train"] == metrics["num_train"] and sizes["validation"] == metrics["num_val"]
    assert sizes["test"] == metrics["num_test"]
    data = load_dataset(store.data, cache=False)
    split = split_dataset(data.labels, 0.25, 0, 0.25, data.classes)
    for part, indices in (("train", split.train), ("validation", split.val), ("test", split.test)):
        assert {e["sha256"] for e in splits[part]} == {data.samples[i].sha256 for i in indices}


def test_training_on_v1s_held_out_images_warns_and_strict_refuses(
    store: Lineage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.registry import has_model

    renamed = _copy(store.data, tmp_path / "renamed")  # same bytes, other names
    leaky = ["finetune", V1, str(renamed), "--val-split", "0", "--name", "lk-leaky", *TINY]
    capsys.readouterr()

    assert run([*leaky, "--dry-run"]) == 0
    err = capsys.readouterr().err
    warned = _lines(err, "zoo: warning: leakage:")
    assert len(warned) == 1, err
    assert "8 training image(s) were held out by models:/lk/1" in warned[0]
    assert "4 in its test split, 4 in its validation split, per its split.json" in warned[0]
    assert "e.g. class0/copy-img" in warned[0]  # the files as named now
    assert "add --strict to refuse" in warned[0]
    assert "--seed 0 --val-split 0.25 --test-split 0.25" in warned[0]

    runs = _runs(store)
    for dry in ([], ["--dry-run"]):
        assert run([*leaky, "--strict", *dry]) == 2
        err = capsys.readouterr().err
        errors = _lines(err, "zoo: error:")
        assert len(errors) == 1 and "Traceback" not in err, err
        assert errors[0].startswith("zoo: error: leakage: 8 training image(s) were held out by")
        assert "--strict refuses to train on them, nothing was trained or registered" in err
        assert not _lines(err, "zoo: warning:")
    assert not has_model("lk-leaky")
    assert _runs(store) == runs  # no checkpoint folder either

    # the fix the warning gives: v1's own seed and fractions give v1's split, no leak
    assert run([*leaky[:3], *SPLIT, "--name", "lk-leaky", *TINY, "--strict", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert not _lines(err, "zoo: warning: leakage"), err
    assert _lines(err, "zoo: leakage check: none of the 8 images models:/lk/1 held out")


def test_v2_on_v1s_training_files_only_trains_on_nothing_held_out_but_validates_on_seen_images(
    store: Lineage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.registry import get_version

    first = _split_json(V1, tmp_path / "v1")
    train = {e["sha256"] for e in first["splits"]["train"]}
    subset = _copy(store.data, tmp_path / "v1-train", keep=train, prefix="t-")
    capsys.readouterr()
    # a registered NAME resolves to its latest version (lk/1), pinned in the lineage
    code = run(["finetune", "lk", str(subset), "--val-split", "0.25", "--name", "lk-clean", *TINY])
    err = capsys.readouterr().err
    assert code == 0, err
    # nothing v1 held out is trained on ...
    checked = _lines(err, "zoo: leakage check:")
    assert checked == [
        "zoo: leakage check: none of the 8 images models:/lk/1 held out (test 4, validation "
        "4; its split.json) are in this training split"
    ]
    # ... but every validation image is one v1 trained on: val_accuracy is optimistic
    warned = _lines(err, "zoo: warning: leakage")
    assert len(warned) == 1, err
    assert warned[0].startswith(
        "zoo: warning: leakage: the validation accuracy of this version is optimistic: 2 of "
        "its 2 validation images were seen in training by models:/lk/1 (per its split.json; "
        "e.g. class0/t-img"
    ), warned
    assert warned[0].endswith(
        ": add --strict to refuse, or fine-tune on a folder of images no ancestor trained "
        "on, or --val-split 0 and an external check on such images"
    ), warned

    v2 = get_version("models:/lk-clean/1")
    assert v2.lineage["parent"]["reference"] == V1
    recorded = v2.lineage["dataset"]["split"]["leakage"]
    assert recorded == [
        {
            "ancestor": V1,
            "checked_with": "split.json",
            "result": "leak",
            "in_training": {"test": 0, "validation": 0},
            "held_out": {"test": 4, "validation": 4},
            "seen_in_training": {"test": 0, "validation": 2},
            "evaluated": {"test": 0, "validation": 2},
            "line": checked[0].removeprefix("zoo: "),
            "seen_line": warned[0].removeprefix("zoo: warning: "),
        }
    ]
    second = _split_json("models:/lk-clean/1", tmp_path / "v2")
    assert {e["sha256"] for e in second["splits"]["train"]} < train
    assert {e["sha256"] for part in second["splits"].values() for e in part} == train


def _seen_data(store: Lineage, where: Path) -> Path:
    """v1's 8 training files under new names, and 8 images v1 never saw."""
    first = _split_json(V1, where / "v1")
    train = {e["sha256"] for e in first["splits"]["train"]}
    data = _copy(store.data, where / "seen", keep=train, prefix="t-")
    fresh = make_images(where / "fresh", classes=2, per_class=4, seed=7)
    return _copy(fresh, data, prefix="new-")


def test_v2s_test_split_holding_v1s_training_images_warns_records_and_show_notes_it(
    store: Lineage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.data import load_dataset, split_dataset
    from zoo.registry import get_version, has_model

    data = _seen_data(store, tmp_path)
    trained = {e["sha256"] for e in _split_json(V1, tmp_path / "v1")["splits"]["train"]}
    loaded = load_dataset(data, cache=False)
    split = split_dataset(loaded.labels, 0.0, 3, 0.25, loaded.classes)
    test = [loaded.samples[i].sha256 for i in split.test]
    seen = sum(sha in trained for sha in test)
    assert len(test) == 4 and 0 < seen < 4  # partly seen (seed 3 makes it so)

    args = ["finetune", V1, str(data), "--val-split", "0", "--test-split", "0.25", "--seed", "3"]
    args += ["--name", "lk-seen", *TINY]
    capsys.readouterr()

    # --strict refuses before anything is trained or written, dry run or not
    runs = _runs(store)
    for dry in ([], ["--dry-run"]):
        assert run([*args, "--strict", *dry]) == 2
        err = capsys.readouterr().err
        errors = _lines(err, "zoo: error:")
        assert len(errors) == 1 and "Traceback" not in err, err
        assert errors[0].startswith(
            f"zoo: error: leakage: the test accuracy of this version is optimistic: {seen} "
            "of its 4 test images were seen in training by models:/lk/1"
        ), err
        assert "--strict refuses to evaluate on them, nothing was trained or registered" in err
        assert "--test-split 0 and an external check" in err
        assert not _lines(err, "zoo: warning:")
    assert not has_model("lk-seen")
    assert _runs(store) == runs

    # without it: one warning line, and the run goes on
    assert run(args) == 0
    err = capsys.readouterr().err
    warned = _lines(err, "zoo: warning: leakage")
    assert len(warned) == 1, err
    assert warned[0].startswith(
        f"zoo: warning: leakage: the test accuracy of this version is optimistic: {seen} of "
        "its 4 test images were seen in training by models:/lk/1 (per its split.json; e.g. "
        "class"
    ), warned
    assert "/t-img" in warned[0] and "/new-img" not in warned[0]  # the seen files, named now
    assert warned[0].endswith(
        ": add --strict to refuse, or fine-tune on a folder of images no ancestor trained "
        "on, or --test-split 0 and an external check on such images"
    ), warned
    # nothing v1 held out is in the training split (its training files and new ones)
    assert _lines(err, "zoo: leakage check:") == [
        "zoo: leakage check: none of the 8 images models:/lk/1 held out (test 4, validation "
        "4; its split.json) are in this training split"
    ]

    (found,) = get_version("models:/lk-seen/1").lineage["dataset"]["split"]["leakage"]
    assert found["result"] == "leak"
    assert found["in_training"] == {"test": 0, "validation": 0}
    assert found["seen_in_training"] == {"test": seen, "validation": 0}
    assert found["evaluated"] == {"test": 4, "validation": 0}
    assert found["seen_line"] == warned[0].removeprefix("zoo: warning: ")

    shown = show_rows(capsys, "models:/lk-seen/1")
    assert "test_accuracy=" in shown["metrics"]
    assert shown["leakage"] == (
        f"test_accuracy is optimistic: {seen} of its 4 test images were seen in training by "
        "models:/lk/1"
    )
    assert "leakage" not in show_rows(capsys, V1)  # no registered ancestor: no note


def test_a_test_and_validation_split_of_images_no_ancestor_saw_is_clean(
    store: Lineage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = make_images(tmp_path / "fresh", classes=2, per_class=8, seed=11)
    capsys.readouterr()
    args = ["finetune", V1, str(fresh), *SPLIT, "--name", "lk-fresh", *TINY, "--dry-run"]
    assert run([*args, "--strict"]) == 0
    err = capsys.readouterr().err
    assert not _lines(err, "zoo: warning:"), err
    assert _lines(err, "zoo: leakage check:") == [
        "zoo: leakage check: none of the 8 images models:/lk/1 held out (test 4, validation "
        "4; its split.json) are in this training split, and none of the 8 images it trained "
        "on are in this validation or test split"
    ]


def test_records_written_before_the_seen_direction_still_read() -> None:
    from zoo.registry.leakage_finding import leakage_text, seen_note

    old = {
        "ancestor": V1,
        "checked_with": "split.json",
        "result": "clean",
        "in_training": {"test": 0, "validation": 0},
        "held_out": {"test": 4, "validation": 4},
        "line": "leakage check: none of the 8 images models:/lk/1 held out ...",
    }
    lineage = {"dataset": {"split": {"leakage": [old]}}}
    assert seen_note(lineage) == ""
    assert leakage_text(lineage) == old["line"]
    assert seen_note({}) == "" and seen_note({"dataset": {"split": {}}}) == ""
    # an unknown ancestor records no counts in either direction
    unknown = {"ancestor": V1, "result": "unknown", "seen_in_training": None, "line": "..."}
    assert seen_note({"dataset": {"split": {"leakage": [unknown]}}}) == ""


@pytest.fixture
def old_v1(store: Lineage) -> Iterator[Lineage]:
    """lk/1 as versions registered before split.json look: no artifact, no mention of it
    in the lineage. Restored afterwards (other tests read it)."""
    from urllib.parse import unquote, urlparse

    from zoo.registry import get_version
    from zoo.registry.read import artifact_uri
    from zoo.registry.records import TAG
    from zoo.registry.store import client

    version = get_version(V1)
    path = Path(unquote(urlparse(artifact_uri(version, "split.json")).path))
    saved, tag = path.read_bytes(), json.dumps(dict(version.lineage), sort_keys=True)
    old = json.loads(tag)
    for key in ("record", "leakage"):
        old["dataset"]["split"].pop(key, None)
    path.unlink()
    client().set_model_version_tag("lk", "1", TAG.LINEAGE, json.dumps(old, sort_keys=True))
    try:
        yield store
    finally:
        path.write_bytes(saved)
        client().set_model_version_tag("lk", "1", TAG.LINEAGE, tag)


def test_a_version_without_split_json_is_recomputed_on_the_same_data_else_unknown(
    old_v1: Lineage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = _copy(old_v1.data, tmp_path / "renamed")
    capsys.readouterr()
    args = ["--val-split", "0", "--name", "lk-old", *TINY, "--dry-run"]
    assert run(["finetune", V1, str(renamed), *args]) == 0
    err = capsys.readouterr().err
    warned = _lines(err, "zoo: warning: leakage:")
    assert len(warned) == 1, err
    assert "4 in its test split, 4 in its validation split, per its recomputed split" in warned[0]
    assert "split.json" not in warned[0]  # none to point at

    # a version whose lineage names its split.json, gone from the store: recomputed too
    from dataclasses import replace

    from zoo.data import load_dataset, split_dataset
    from zoo.registry import get_version
    from zoo.registry.leakage import check_ancestors

    old = get_version(V1)
    named = json.loads(json.dumps(dict(old.lineage)))
    named["dataset"]["split"]["record"] = "split.json"
    data = load_dataset(renamed, cache=False)
    everything = split_dataset(data.labels, 0.0, 0, 0.0, data.classes)
    (found,) = check_ancestors(replace(old, lineage=named), data, everything)
    assert (found.checked_with, found.in_training) == ("recomputed", {"test": 4, "validation": 4})

    # one more image: other data, and no record to compare file by file
    extra = tmp_path / "renamed" / "class0" / "extra.png"
    make_images(tmp_path / "more", classes=1, per_class=1, seed=7)
    shutil.copyfile(tmp_path / "more" / "class0" / "img000.png", extra)
    assert run(["finetune", V1, str(renamed), *args]) == 0
    err = capsys.readouterr().err
    assert not _lines(err, "zoo: warning: leakage"), err
    assert _lines(err, "zoo: leakage unknown:") == [
        "zoo: leakage unknown: models:/lk/1 has no split record and was trained on other data"
    ]
