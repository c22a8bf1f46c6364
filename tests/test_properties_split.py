"""Properties of the split (zoo/data/split.py) and of its content key (zoo/data/check.py):

- ``split_dataset``: the parts are disjoint and cover every image; each class puts the
  nearest whole number to n * test in test and to n * val in validation (at least one of
  each when asked for) and keeps at least one for training; the same seed gives the same
  split.
- the content key: the same (file content, label) items, whatever the files are named,
  in whichever order and whichever listing (a folder, a CSV) names them, with copies or
  without, give every file the same part, the one the items sorted by sha256 give.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from zoo.contract.errors import DataError, UsageError
from zoo.data import Split, check_listing, list_files, split_dataset, stratified_split

fractions = st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 1 / 3, 0.5, 0.7, 0.85]) | st.floats(
    0.0, 0.95
)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def class_labels(draw: st.DrawFn, smallest: int = 1) -> list[int]:
    """Labels of 1 to 5 classes, in any order (a class's images need not be together)."""
    sizes = st.integers(smallest, 6) | st.integers(smallest, 30)  # small classes are the edge
    counts = draw(st.lists(sizes, min_size=1, max_size=5))
    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    return draw(st.permutations(labels))


def _parts(split: Split) -> dict[str, tuple[int, ...]]:
    return {"train": split.train, "val": split.val, "test": split.test}


@given(class_labels(), fractions, fractions, seeds)
@example(labels=[0, 0, 0, 1, 1, 1], val=0.0, test=0.85, seed=0)  # a class all in test
@example(labels=[0, 0, 0, 1, 1, 1], val=0.25, test=0.7, seed=0)  # no validation image
@example(labels=[0, 0, 0, 0], val=0.4, test=0.5, seed=0)  # shares round to all four images
def test_a_split_is_disjoint_complete_and_rounds_each_class_as_documented(
    labels: list[int], val: float, test: float, seed: int
) -> None:
    try:
        split = split_dataset(labels, val, seed, test)
    except DataError as exc:  # too few images in a class for the parts asked for
        needed = 1 + (test > 0) + (val > 0)
        small = {label: n for label, n in Counter(labels).items() if n < needed}
        assert small and val + test < 1.0, str(exc)
        assert any(f"class {c} has {n} image(s)" in str(exc) for c, n in small.items())
        return
    except UsageError as exc:  # the fractions must leave images to train on
        assert val + test >= 1.0, str(exc)
        return
    assert val + test < 1.0
    parts = _parts(split)
    every = [i for part in parts.values() for i in part]
    assert sorted(every) == list(range(len(labels)))  # disjoint, and covering every image
    assert all(list(part) == sorted(part) for part in parts.values())
    for label, n in Counter(labels).items():
        got = {name: sum(labels[i] == label for i in part) for name, part in parts.items()}
        assert got["train"] >= 1, (label, n, got)
        # each held-out part is the nearest whole number to its share, unless that is
        # none (then one) or more than the class can spare (then all it can spare: the
        # test set gives way first, so validation and training keep one each)
        room = n - 1 - (val > 0)
        for part, share, spare in (("test", test, room), ("val", val, n - got["test"] - 1)):
            if share == 0:
                assert got[part] == 0, (label, n, got)
                continue
            assert 1 <= got[part] <= spare, (part, n, got)
            if 1 < got[part] < spare:
                assert abs(got[part] - n * share) <= 0.5, (part, n, share, got)
            elif got[part] == 1 < spare:  # one: its share rounds to one or to none
                assert n * share <= 1.5, (part, n, share, got)
            elif got[part] == spare > 1:  # all it can spare: its share is at least that
                assert n * share >= spare - 0.5, (part, n, share, got)


@given(class_labels(smallest=3), st.sampled_from([0.1, 0.2, 0.3]), st.sampled_from([0.0, 0.2]))
def test_the_same_seed_gives_the_same_split_and_stratified_is_the_same_without_test(
    labels: list[int], val: float, test: float
) -> None:
    for seed in (0, 1, 12345):
        split = split_dataset(labels, val, seed, test)
        assert split_dataset(list(labels), val, seed, test) == split
        if test == 0:
            assert stratified_split(labels, val, seed) == (list(split.train), list(split.val))


# ---------------------------------------------------------------- the content key


@functools.cache
def _pngs() -> tuple[bytes, ...]:
    """24 small PNGs of distinct bytes (written once; the examples only copy them)."""
    from PIL import Image

    out = []
    for i in range(24):
        img = Image.new("RGB", (4, 3), (10 * i, 255 - 7 * i, (37 * i) % 256))
        img.putpixel((i % 4, i % 3), (i, i, i))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    assert len(set(out)) == len(out)
    return tuple(out)


file_names = st.text("abcxyzABC019_-", min_size=1, max_size=8)


@st.composite
def datasets(draw: st.DrawFn) -> list[tuple[int, int]]:
    """(image, label) items: 2 to 4 classes of 3 to 6 distinct images each."""
    counts = draw(st.lists(st.integers(3, 6), min_size=2, max_size=4))
    images = draw(st.permutations(range(24)))[: sum(counts)]
    labels = [label for label, n in enumerate(counts) for _ in range(n)]
    return list(zip(images, labels, strict=True))


@st.composite
def listings(draw: st.DrawFn, items: list[tuple[int, int]]) -> tuple[str, list[tuple]]:
    """One way of naming the items: a folder or a CSV; each file (and each extra copy of
    it under the same label) under a name of its own, listed in any order."""
    kind = draw(st.sampled_from(["folder", "csv"]))
    copies = draw(st.lists(st.integers(1, 3), min_size=len(items), max_size=len(items)))
    files = [(image, label) for (image, label), k in zip(items, copies, strict=True)]
    files += [(i, lab) for (i, lab), k in zip(items, copies, strict=True) for _ in range(k - 1)]
    names = draw(st.lists(file_names, min_size=len(files), max_size=len(files), unique=True))
    nested = draw(st.lists(st.booleans(), min_size=len(files), max_size=len(files)))
    rows = [
        (image, label, ("deep/" if deeper else "") + name + ".png")
        for (image, label), name, deeper in zip(files, names, nested, strict=True)
    ]
    return kind, draw(st.permutations(rows))


def _write(root: Path, kind: str, rows: list[tuple]) -> Path:
    """The files of ``rows`` under ``root`` and the folder or CSV that lists them."""
    pngs = _pngs()
    manifest = []
    for image, label, name in rows:
        path = root / "images" / f"class{label}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pngs[image])
        manifest.append((str(path.relative_to(root)), f"class{label}"))
    if kind == "folder":
        return root / "images"
    with (root / "list.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label"), *manifest])
    return root / "list.csv"


def _assignment(data, split: Split) -> dict[str, str]:
    return {data.samples[i].sha256: part for part, ix in _parts(split).items() for i in ix}


@settings(max_examples=30)  # each example writes and decodes up to 70 small files
@given(st.data(), st.sampled_from([(0.2, 0.0), (0.25, 0.25), (0.0, 0.34)]), seeds)
def test_the_same_files_named_and_listed_any_way_get_the_same_parts(
    data: st.DataObject, fractions: tuple[float, float], seed: int
) -> None:
    val, test = fractions
    items = data.draw(datasets(), label="items")
    pngs = _pngs()
    # what the content key promises: the items ordered by their bytes' sha256
    by_content = sorted((hashlib.sha256(pngs[i]).hexdigest(), label) for i, label in items)
    expected_split = split_dataset([label for _, label in by_content], val, seed, test)
    shas = [sha for sha, _ in by_content]
    expected = {shas[i]: part for part, ix in _parts(expected_split).items() for i in ix}
    for attempt in range(2):  # two listings of the same items, drawn independently
        kind, rows = data.draw(listings(items), label=f"listing {attempt}")
        with tempfile.TemporaryDirectory() as tmp:
            dataset = check_listing(
                list_files(_write(Path(tmp), kind, rows)), cache=False, workers=1
            )
        assert [s.sha256 for s in dataset.samples] == shas  # one sample per content, in order
        assert len(dataset.duplicates) == len(rows) - len(items)
        split = split_dataset(dataset.labels, val, seed, test)
        assert _assignment(dataset, split) == expected
        assert split.digest(shas) == expected_split.digest(shas)
