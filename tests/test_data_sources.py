"""Data sources (register_data_sources, plugin API 4): WebDataset tar shards (zoo-webdataset)
and a Hugging Face dataset saved to disk or in Parquet (zoo-hfdatasets), built here from
the bytes of one folder of images, read as that folder is read: the same digest, class by
class, the same split, the same duplicates, the same skipped image, the same fine-tune.

The shards are written with webdataset's own ShardWriter, the datasets with ``datasets``;
both plugins are installed by the README's install command (entry points, as a user
installs them).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zoo
from tests.finetune_helpers import make_images
from zoo.cli import run

BROKEN = b"\x89PNG\r\n\x1a\n not really a png"


def _files(folder: Path) -> list[tuple[str, Path]]:
    return sorted((p.parent.name, p) for p in folder.rglob("*.png"))


def _shards(folder: Path, out: Path) -> Path:
    """Two or more shards; the first half labelled by KEY.cls, the rest by KEY.json."""
    import webdataset as wds

    out.mkdir()
    with wds.ShardWriter(str(out / "part-%04d.tar"), maxcount=14, verbose=0) as sink:
        for i, (label, path) in enumerate(_files(folder)):
            sample: dict[str, Any] = {"__key__": f"{label}-{path.stem}", "png": path.read_bytes()}
            sample.update({"cls": label} if i % 2 else {"json": {"label": label}})
            sink.write(sample)
    assert len(list(out.glob("*.tar"))) >= 2
    return out


def _hf(folder: Path, out: Path) -> tuple[Path, Path]:
    """The folder as one saved Dataset and as two Parquet files (ClassLabel names)."""
    import datasets

    files = _files(folder)
    names = sorted({label for label, _ in files})
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
    )
    rows = {
        "image": [{"bytes": p.read_bytes(), "path": p.name} for _, p in files],
        "label": [names.index(label) for label, _ in files],
    }
    dataset = datasets.Dataset.from_dict(rows, features=features)
    datasets.disable_progress_bars()
    dataset.save_to_disk(str(out / "saved"))
    (out / "parquet").mkdir()
    for i in range(2):
        dataset.shard(2, i).to_parquet(str(out / "parquet" / f"train-{i}.parquet"))
    return out / "saved", out / "parquet"


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One folder (3 classes, a duplicate, a corrupt PNG) and the same bytes as shards, a
    saved dataset and Parquet files."""
    root = tmp_path_factory.mktemp("sources")
    folder = make_images(root / "folder", classes=3, per_class=9, size=(20, 20))
    shutil.copy(folder / "class1" / "img000.png", folder / "class1" / "zcopy.png")
    whole = (folder / "class2" / "img000.png").read_bytes()
    (folder / "class0" / "broken.png").write_bytes(whole[: len(whole) // 2])  # truncated
    saved, parquet = _hf(folder, root)
    return {
        "folder": folder,
        "shards": _shards(folder, root / "shards"),
        "saved": saved,
        "parquet": parquet,
    }


def _by_class(data: Any, shas: set[str] | None = None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in data.classes}
    for s in data.samples:
        if shas is None or s.sha256 in shas:
            out[data.classes[s.label]].append(s.sha256)
    return {k: sorted(v) for k, v in out.items()}


def test_every_source_reads_as_the_folder_digest_split_duplicates_and_skipped(
    sets: dict[str, Path],
) -> None:
    from zoo.data import load_dataset, split_dataset

    read = {kind: load_dataset(path, resize=16) for kind, path in sets.items()}
    folder = read["folder"]
    assert len(folder.samples) == 27 and len(folder.duplicates) == 1 and len(folder.bad) == 1
    split = split_dataset(folder.labels, 0.2, 0, 0.2, folder.classes)

    def parts(data: Any) -> dict[str, dict[str, list[str]]]:
        s = split_dataset(data.labels, 0.2, 0, 0.2, data.classes)
        shas = [x.sha256 for x in data.samples]
        return {p: _by_class(data, {shas[i] for i in getattr(s, p)}) for p in ("train", "val")}

    kinds = {"shards": "webdataset", "saved": "hfdatasets", "parquet": "hfdatasets"}
    for kind, data in read.items():
        assert data.kind == kinds.get(kind, "folder")
        assert data.digest == folder.digest, kind
        assert data.classes == folder.classes and data.counts() == folder.counts(), kind
        assert _by_class(data) == _by_class(folder), kind
        shas = [s.sha256 for s in data.samples]
        assert split.digest(shas) == split.digest([s.sha256 for s in folder.samples]), kind
        assert parts(data) == parts(folder), kind
        kept = {s.path: s.sha256 for s in data.samples}
        assert [kept[d.same_as] for d in data.duplicates] == [
            {s.path: s.sha256 for s in folder.samples}[d.same_as] for d in folder.duplicates
        ], kind
        assert [b.reason for b in data.bad] == [b.reason for b in folder.bad], kind
        assert data.bad[0].reason.startswith("truncated or corrupt"), kind
    assert read["shards"].bad[0].path.endswith(".tar/class0-broken.png")
    assert read["parquet"].bad[0].path.split("/parquet/")[1].endswith("/broken.png")


def test_images_are_read_again_from_their_source_when_no_array_is_kept(
    sets: dict[str, Path],
) -> None:
    """cache=False keeps no decoded array: training reads each image back through the
    source's ``read`` (a seek into the shard, a Parquet row group, a saved row)."""
    import torch

    from zoo.data import ImageSamples, Preprocessing, load_dataset

    pre = Preprocessing(input_size=(3, 16, 16), crop_pct=1.0)  # resize 16
    folder = load_dataset(sets["folder"], resize=16, cache=False)
    order = {s.sha256: i for i, s in enumerate(folder.samples)}
    expected = ImageSamples(folder, range(len(folder.samples)), pre, train=False)
    for kind in ("shards", "saved", "parquet"):
        data = load_dataset(sets[kind], resize=16, cache=False)
        assert data.decoded_dir is None
        got = ImageSamples(data, range(len(data.samples)), pre, train=False)
        for i, sample in enumerate(data.samples):
            x, label, _ = got[i]
            y, folder_label, _ = expected[order[sample.sha256]]
            assert torch.equal(x, y) and label == folder_label, (kind, sample.path)


def _finetune(data: Path, name: str, capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    args = ["timm:test_resnet", str(data), "--random-init", "--strategy", "linear-probe"]
    args += ["--epochs", "2", "--lr", "0.05", "--image-size", "32", "--name", name, "--json"]
    code = run(["finetune", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def test_zoo_finetune_on_shards_and_parquet_gives_the_folders_result(
    sets: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    folder, _ = _finetune(sets["folder"], "folder", capsys)
    shards, said = _finetune(sets["shards"], "shards", capsys)
    parquet, counted = _finetune(sets["parquet"], "parquet", capsys)
    assert f"zoo: {sets['shards']}: read by the data source 'webdataset' (zoo-webdataset" in said
    assert "zoo: checking images: started (29 images)" in counted  # its count(): 29 rows
    assert folder["metrics"]["val_accuracy"] > 0.5  # it learned: equal figures say something
    figures = {k: v for k, v in folder["metrics"].items() if k != "train_seconds"}
    for result in (shards, parquet):
        assert {k: result["metrics"][k] for k in figures} == figures
        assert result["dataset_digest"] == folder["dataset_digest"]
        assert [s["reason"] for s in result["skipped"]] == [s["reason"] for s in folder["skipped"]]
    from zoo.registry import get_version

    dataset = get_version("models:/shards/1").lineage["dataset"]
    assert dataset["source"] == "webdataset" and dataset["path"] == str(sets["shards"])


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_class_indices_in_a_shard_are_named_by_classes_json(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    from zoo.data import load_dataset

    files = [p for _, p in _files(sets["folder"]) if p.name != "broken.png"]
    members = {}
    for i, path in enumerate(files[:6]):
        members[f"s{i}.png"] = path.read_bytes()
        members[f"s{i}.cls"] = str(i % 2).encode()
    one = _tar(tmp_path / "one.tar", members)
    (tmp_path / "classes.json").write_text('["cat", "dog"]')
    data = load_dataset(one, resize=16)  # DATA may be one shard; classes.json beside it
    assert data.kind == "webdataset" and data.counts() == {"cat": 3, "dog": 3}
    assert data.samples[0].path.startswith(f"{one}/s")


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run(["finetune", "timm:test_resnet", *args, "--random-init", "--dry-run"])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("zoo: error: ")]
    assert errors == lines[-1:] and "Traceback" not in lines, lines  # one line, the last
    return code, errors[0]


def test_bad_sources_are_one_line_and_exit_2(
    sets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import datasets

    png = next(iter(_files(sets["folder"])))[1].read_bytes()
    (tmp_path / "unlabelled").mkdir()
    _tar(tmp_path / "unlabelled" / "a.tar", {"k1.png": png, "k1.txt": b"a caption"})
    code, err = _error([str(tmp_path / "unlabelled")], capsys)
    assert code == 2 and "a.tar: sample 'k1' has an image but no class" in err
    assert "KEY.cls" in err  # the fix

    (tmp_path / "noimage").mkdir()
    rows = datasets.Dataset.from_dict({"picture": [png, png], "label": ["a", "b"]})
    rows.to_parquet(str(tmp_path / "noimage" / "x.parquet"))
    code, err = _error([str(tmp_path / "noimage")], capsys)
    assert code == 2 and "x.parquet has no image column (its columns: picture, label)" in err

    split = datasets.DatasetDict({"train": rows, "test": rows})
    split.save_to_disk(str(tmp_path / "splits"))
    code, err = _error([str(tmp_path / "splits")], capsys)
    assert code == 2 and "is a saved DatasetDict of splits (test, train)" in err

    (tmp_path / "notes.zip").write_bytes(b"PK")
    code, err = _error([str(tmp_path / "notes.zip")], capsys)
    assert code == 2 and "no installed data source reads it (installed: hfdatasets" in err


class _Claims:
    """A data source of this test's own: claims every path, yields what it is given."""

    summary = "a test's"

    def __init__(self, name: str, images: list[Any]) -> None:
        self.name, self._images = name, images

    def claims(self, path: Path) -> bool:
        return True

    def images(self, path: Path) -> Iterator[Any]:
        yield from self._images

    def read(self, path: Path, name: str) -> bytes:
        raise AssertionError("not read again")


class _Plugin:
    def __init__(self, source: _Claims) -> None:
        self.source = source

    @zoo.hookimpl
    def register_data_sources(self, register: Any) -> None:
        register(self.source)


def test_a_source_that_breaks_its_contract_is_named(sets: dict[str, Path], tmp_path: Path) -> None:
    from zoo.contract.errors import DataError, PluginError
    from zoo.contract.plugins import get_plugin_manager
    from zoo.data import load_dataset

    pm = get_plugin_manager()
    pm.register(_Plugin(_Claims("odd", [b"not a SourceImage"])), "odd")
    with pytest.raises(PluginError, match=r"plugin 'odd': data source 'odd' yielded bytes"):
        load_dataset(sets["folder"])
    twice = [zoo.SourceImage("a.png", "x", BROKEN)] * 2
    pm.unregister("odd")
    pm.register(_Plugin(_Claims("twice", twice)), "twice")
    with pytest.raises(PluginError, match=r"yielded two images named 'a.png'"):
        load_dataset(sets["folder"])
    pm.register(_Plugin(_Claims("greedy", [])), "greedy")
    with pytest.raises(DataError, match=r"claimed by the data sources 'greedy' .* and 'twice'"):
        load_dataset(sets["folder"])


def test_a_stream_without_a_total_shows_its_count_and_rate_every_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Shards have no cheap count: under CI the check still says how far it got."""
    import zoo.progress as progress

    clock = iter([0.0, 30.0, 61.0, 62.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = progress.LineProgress(out)
    bar.start("checking images", None, unit="images")
    bar.advance(500)  # 30 s: nothing yet
    bar.advance(1_500)  # 61 s
    bar.advance(10)  # 62 s: a second later, nothing
    assert out.getvalue().splitlines() == [
        "zoo: checking images: started",
        "zoo: checking images: 2,000 images (33 images/s)",
    ]
