"""A run's split as its ``split.json`` record (format 1, docs/finetune.md "split.json"):
written, read back, refused when it is not one, and the held-out files read from it.

Issue 24: added when mutation testing (docs/testing.md) found zoo/data/split_record.py
exercised only by the slow leakage tests; tests/test_data.py, its home, is near 400 lines.
"""

from __future__ import annotations

import json
from pathlib import Path

from zoo.data.check import ImageDataset, Sample
from zoo.data.split import Split
from zoo.data.split_record import (
    SPLIT_FILE,
    held_out,
    read_split_record,
    relative_path,
    split_record,
    split_shas,
)

# samples are ordered by sha256, as the data check orders them
DATA = ImageDataset(
    root="/data/pets",
    kind="folder",
    classes=("cat", "dog"),
    samples=(
        Sample("/data/pets/cat/1.png", 0, "aa"),
        Sample("/data/pets/dog/7.png", 1, "bb"),
        Sample("/data/pets/cat/é.png", 0, "cc"),
        Sample("/elsewhere/dog/3.png", 1, "dd"),
    ),
    digest="sha256:data",
)
SPLIT = Split(train=(3, 0), val=(1,), test=(2,))  # a part listed out of order


def _entry(sha: str, cls: str, path: str) -> dict[str, str]:
    return {"sha256": sha, "class": cls, "path": path}


def test_the_record_is_the_documented_format_each_part_sorted_by_sha256() -> None:
    record = split_record(DATA, SPLIT, seed=7, val_fraction=0.25, test_fraction=0.25)
    assert record == {
        "format": 1,
        "dataset_digest": "sha256:data",
        "split_digest": SPLIT.digest(["aa", "bb", "cc", "dd"]),
        "seed": 7,
        "fractions": {"validation": 0.25, "test": 0.25},
        "classes": ["cat", "dog"],
        "splits": {
            # a file outside the data's folder keeps its path as it was
            "train": [
                _entry("aa", "cat", "cat/1.png"),
                _entry("dd", "dog", "/elsewhere/dog/3.png"),
            ],
            "validation": [_entry("bb", "dog", "dog/7.png")],
            "test": [_entry("cc", "cat", "cat/é.png")],
        },
    }
    assert [type(record[k]) for k in ("seed", "fractions")] == [int, dict]
    assert split_record(DATA, SPLIT, seed=7, val_fraction=0, test_fraction=0)["fractions"] == {
        "validation": 0.0,
        "test": 0.0,
    }


def test_a_written_record_reads_back_and_gives_the_held_out_files(tmp_path: Path) -> None:
    record = split_record(DATA, SPLIT, seed=0, val_fraction=0.25, test_fraction=0.25)
    path = tmp_path / SPLIT_FILE
    path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    assert read_split_record(path) == record
    expected = {"train": {"aa", "dd"}, "validation": {"bb"}, "test": {"cc"}}
    assert held_out(record) == expected == split_shas(DATA, SPLIT)


def test_what_is_not_a_format_1_record_reads_as_none(tmp_path: Path) -> None:
    parts = {"train": [], "validation": [], "test": []}
    path = tmp_path / SPLIT_FILE
    assert read_split_record(path) is None  # missing
    for text in (
        "{not json",
        "[1]",
        json.dumps({"format": 2, "splits": parts}),
        json.dumps({"splits": parts}),
        json.dumps({"format": 1}),
        json.dumps({"format": 1, "splits": [1, 2]}),
        json.dumps({"format": 1, "splits": {"train": [], "validation": []}}),
        json.dumps({"format": 1, "splits": {**parts, "test": {}}}),
    ):
        path.write_text(text, encoding="utf-8")
        assert read_split_record(path) is None, text
    path.write_text(json.dumps({"format": 1, "splits": parts}), encoding="utf-8")
    assert read_split_record(path) == {"format": 1, "splits": parts}


def test_held_out_reads_what_it_can_of_a_partial_record() -> None:
    empty = {"train": set(), "validation": set(), "test": set()}
    assert held_out({}) == empty
    assert held_out({"splits": None}) == empty
    record = {"splits": {"test": [{"sha256": 12}, "not an entry"], "validation": None}}
    assert held_out(record) == {**empty, "test": {"12"}}


def test_a_path_is_relative_to_the_data_folder_when_it_lies_inside() -> None:
    assert relative_path("/data/pets", "/data/pets/cat/1.png") == "cat/1.png"
    assert relative_path("/data/pets", "/data/other/1.png") == "/data/other/1.png"
