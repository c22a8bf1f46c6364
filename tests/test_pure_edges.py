"""Tests mutation testing asked for (docs/testing.md): the survivors of the first run over
the pure modules that a test can kill, each asserting documented behaviour the mutant
breaks. The survivors that cannot change any output (equivalent mutants) are explained,
one line each, in the triage rather than pinned here.
"""

from __future__ import annotations

import json
import locale
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoo.data.split import split_dataset
from zoo.data.split_record import SPLIT_FILE, read_split_record

# ----------------------------------------------------------------- zoo/contract/refs.py
# No survivor here changes an output: the alias and model-name patterns already refuse
# '/' and empty names, an 11-digit version is past 2**31 - 1 anyway, and NameGrammar.check
# passes no revision, so the scheme it names is never used.

# ------------------------------------------------------------ zoo/licenses/ids.py, compat.py
# No survivor here changes an output for any input zoo passes (default arguments spelled
# out, indices that pick the same element, guards that no input reaches).

# ----------------------------------------------------------------------- zoo/data/split.py


def _per_class(labels: list[int], indices: tuple[int, ...]) -> dict[int, int]:
    return {c: sum(1 for i in indices if labels[i] == c) for c in sorted(set(labels))}


def test_a_test_share_that_rounds_to_the_whole_class_leaves_one_image_to_train() -> None:
    # two images per class, no validation: round(2 * 0.9) = 2 would take both, so the
    # test set gives way and each class keeps one image for training (the docstring)
    labels = [0, 0, 1, 1]
    split = split_dataset(labels, 0.0, seed=0, test_fraction=0.9)
    assert _per_class(labels, split.train) == {0: 1, 1: 1}
    assert _per_class(labels, split.test) == {0: 1, 1: 1}
    assert split.val == ()


def test_the_test_set_gives_way_first_so_validation_keeps_its_image() -> None:
    # three images: test asks round(3 * 0.8) = 2, validation at least 1, training at
    # least 1; test gives way first, so each part holds one image
    split = split_dataset([0, 0, 0], 0.1, seed=0, test_fraction=0.8)
    assert (len(split.train), len(split.val), len(split.test)) == (1, 1, 1)
    # a larger class: test asks round(10 * 0.88) = 9 and gives one back to validation
    labels = [0] * 10 + [1] * 3
    big = split_dataset(labels, 0.1, seed=0, test_fraction=0.88)
    assert _per_class(labels, big.test) == {0: 8, 1: 1}
    assert _per_class(labels, big.val) == {0: 1, 1: 1}
    assert _per_class(labels, big.train) == {0: 1, 1: 1}


# ---------------------------------------------------------------- zoo/data/split_record.py


@pytest.fixture
def ascii_locale() -> Iterator[None]:
    """The C locale for LC_CTYPE (ASCII text by default, as on a bare server), restored."""
    before = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, "C")
    except locale.Error:
        pytest.skip("no C locale to switch to")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


@pytest.mark.usefixtures("ascii_locale")
def test_a_split_record_is_read_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    # JSON is UTF-8 (RFC 8259); a path keeps the file's name as it was, in any script
    entry = {"sha256": "cc", "class": "chat", "path": "chat/été.png"}
    record = {"format": 1, "splits": {"train": [entry], "validation": [], "test": []}}
    path = tmp_path / SPLIT_FILE
    path.write_bytes(json.dumps(record, ensure_ascii=False).encode("utf-8"))
    assert read_split_record(path) == record
