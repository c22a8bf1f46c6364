"""A run's split as a record: which files, by content, trained, validated and tested it.

Every fine-tuned version carries this record as its ``split.json`` artifact (format 1,
docs/finetune.md "What a version held out"). It reuses the SHA-256 the data check
computed for every file (``ImageDataset.samples``); nothing is hashed again.

    {"format": 1, "dataset_digest": "sha256:...", "split_digest": "sha256:...",
     "seed": 0, "fractions": {"validation": 0.2, "test": 0.1},
     "classes": ["cat", "dog"],
     "splits": {"train": [{"sha256": "...", "class": "cat", "path": "cat/1.png"}, ...],
                "validation": [...], "test": [...]}}

Each list is sorted by sha256; ``path`` is where the file was, relative to the data's
folder (or the CSV's), for people: the file's identity is its ``sha256``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.data.check import ImageDataset
from zoo.data.split import Split

__all__ = [
    "SPLIT_FILE",
    "SPLIT_FORMAT",
    "SPLIT_PARTS",
    "held_out",
    "read_split_record",
    "relative_path",
    "split_record",
    "split_shas",
]

SPLIT_FILE = "split.json"
SPLIT_FORMAT = 1
# the record's names for the parts, and Split's attribute for each
SPLIT_PARTS = {"train": "train", "validation": "val", "test": "test"}


def relative_path(root: str, path: str) -> str:
    """``path`` relative to ``root`` (as posix), or as it is when it lies outside."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def split_shas(data: ImageDataset, split: Split) -> dict[str, set[str]]:
    """``{"train": {sha256, ...}, "validation": ..., "test": ...}`` of a split of ``data``."""
    return {
        part: {data.samples[i].sha256 for i in getattr(split, attr)}
        for part, attr in SPLIT_PARTS.items()
    }


def split_record(
    data: ImageDataset,
    split: Split,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> dict[str, Any]:
    """The ``split.json`` record of ``split`` (indices into ``data.samples``)."""
    shas = [s.sha256 for s in data.samples]

    def entry(index: int) -> dict[str, str]:
        sample = data.samples[index]
        return {
            "sha256": sample.sha256,
            "class": data.classes[sample.label],
            "path": relative_path(data.root, sample.path),
        }

    return {
        "format": SPLIT_FORMAT,
        "dataset_digest": data.digest,
        "split_digest": split.digest(shas),
        "seed": int(seed),
        "fractions": {"validation": float(val_fraction), "test": float(test_fraction)},
        "classes": list(data.classes),
        "splits": {
            part: sorted((entry(i) for i in getattr(split, attr)), key=lambda e: e["sha256"])
            for part, attr in SPLIT_PARTS.items()
        },
    }


def read_split_record(path: Path) -> dict[str, Any] | None:
    """A ``split.json`` this zoo reads (format 1), or None (unreadable, another format)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, Mapping) or record.get("format") != SPLIT_FORMAT:
        return None
    splits = record.get("splits")
    if not isinstance(splits, Mapping) or not all(
        isinstance(splits.get(part), list) for part in SPLIT_PARTS
    ):
        return None
    return dict(record)


def held_out(record: Mapping[str, Any]) -> dict[str, set[str]]:
    """The sha256 of every file of each part of a ``split.json`` record."""
    splits = record.get("splits") or {}
    return {
        part: {str(e["sha256"]) for e in splits.get(part) or () if isinstance(e, Mapping)}
        for part in SPLIT_PARTS
    }
