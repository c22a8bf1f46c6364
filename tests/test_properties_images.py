"""Properties of the data check (zoo/data/check.py) on images hypothesis draws: sizes,
modes (RGB, L, RGBA, P with and without transparency), classes, copies, files that are
not images and hidden files, written with Pillow into a folder of class folders.

What the check says is computed again here from the bytes written (their sha256): one
sample per distinct content, ordered by it; every copy listed once with the file kept (the
smallest relative path); every bad file listed, and too many of them refused; a class
left with fewer than 2 images refused by name; the same bytes under two labels refused;
hidden files never read; the digest the same under any other names; each image stored
decoded as RGB, its shorter side resized.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st
from PIL import Image

from zoo.contract.errors import DataError
from zoo.data import DEFAULT_MAX_BAD_FRACTION, load_dataset

RESIZE = 8
CLASSES = ("cat", "dog", "owl")
BAD_BYTES = (b"", b"this is not an image", bytes.fromhex("89504e470d0a1a0a0000000d49484452"))


@st.composite
def images(draw: st.DrawFn, ordinal: int) -> tuple[bytes, str]:
    """(PNG bytes, mode): a small image of noise in one of the modes the check decodes
    (``ordinal`` seeds it too: images drawn apart rarely share their bytes)."""
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "P+transparency"]))
    w, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rng = np.random.default_rng([draw(st.integers(0, 2**16)), ordinal])
    if mode in ("RGB", "RGBA", "L"):
        shape = (h, w) if mode == "L" else (h, w, len(mode))
        img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
    else:
        img = Image.fromarray(rng.integers(0, 4, (h, w), dtype=np.uint8)).convert("P")
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    buf = io.BytesIO()
    img.save(buf, format="PNG", **({"transparency": 0} if mode == "P+transparency" else {}))
    return buf.getvalue(), mode


names = st.text("abcdefxyz0189_-", min_size=1, max_size=8)  # made unique by a ~N suffix


@st.composite
def folders(draw: st.DrawFn) -> dict[str, list[tuple[str, bytes]]]:
    """Class -> [(file name, bytes)]: 2 or 3 classes of 2 to 5 images (the last 0 to 5),
    some copied under other names, a few files that are not images, now and then a copy
    of another class's image."""
    classes = CLASSES[: draw(st.integers(2, 3))]
    out: dict[str, list[tuple[str, bytes]]] = {}
    for c, name in enumerate(classes):
        count = draw(st.integers(0 if c == len(classes) - 1 else 2, 5))
        files = [draw(images(ordinal=10 * c + i))[0] for i in range(count)]
        files += [data for data in files if draw(st.booleans())]  # copies, same label
        files += draw(st.lists(st.sampled_from(BAD_BYTES), max_size=1))
        if c > 0 and out[classes[0]] and draw(st.integers(0, 9)) == 9:  # a stray: two labels
            files.append(out[classes[0]][0][1])
        file_names = draw(st.lists(names, min_size=len(files), max_size=len(files)))
        pairs = enumerate(zip(file_names, files, strict=True))
        out[name] = [(f"{n}~{i}.png", data) for i, (n, data) in pairs]
    return out


def _write(root: Path, folder: dict[str, list[tuple[str, bytes]]], hidden: bool) -> Path:
    for name, files in folder.items():
        (root / name).mkdir(parents=True)
        for file_name, data in files:
            (root / name / file_name).write_bytes(data)
        if hidden:  # never listed, never read
            (root / name / ".DS_Store").write_bytes(b"\0hidden")
    return root.resolve()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _expected_refusal(folder: dict[str, list[tuple[str, bytes]]]) -> str | None:
    """What the check must refuse for, worked out from the bytes alone (None: nothing)."""
    files = [(name, data) for name, fs in folder.items() for _, data in fs]
    bad = sum(data in BAD_BYTES for _, data in files)
    if bad / len(files) > DEFAULT_MAX_BAD_FRACTION:
        return f"{bad} of {len(files)} files"
    labels = defaultdict(set)
    for name, data in files:
        if data not in BAD_BYTES:
            labels[_sha(data)].add(name)
    if any(len(names) > 1 for names in labels.values()):
        return "the same image under two labels"
    distinct = {name: sum(name in n for n in labels.values()) for name in folder}
    small = [f"{name} ({n})" for name, n in distinct.items() if n < 2]
    if small:
        return f"too few in: {', '.join(small)}. Add images"
    return None


@settings(max_examples=15)  # each example writes and decodes up to 40 small files, twice
@given(folders(), st.booleans())
def test_the_check_counts_by_content_lists_copies_and_bad_files_and_refuses_as_documented(
    folder: dict[str, list[tuple[str, bytes]]], hidden: bool
) -> None:
    refusal = _expected_refusal(folder)
    event(f"refused: {refusal.split(':')[0].split(' of ')[-1]}" if refusal else "accepted")
    with tempfile.TemporaryDirectory() as tmp:
        root = _write(Path(tmp) / "data", folder, hidden)
        try:
            dataset = load_dataset(root, resize=RESIZE, workers=1)
        except DataError as exc:
            assert refusal is not None and refusal in str(exc), (refusal, str(exc))
            assert "\n" not in str(exc)
            return
        assert refusal is None, f"accepted, though expected: {refusal}"
        # the same bytes under other names (reversed, prefixed): the same dataset
        renamed = {
            name: [(f"z{i}-{n}", data) for i, (n, data) in enumerate(reversed(files))]
            for name, files in folder.items()
        }
        other = load_dataset(_write(Path(tmp) / "renamed", renamed, hidden), cache=False, workers=1)

    good: dict[str, list[str]] = defaultdict(list)  # sha -> relative paths of its files
    label_of: dict[str, str] = {}
    content: dict[str, bytes] = {}
    for name, files in folder.items():
        for file_name, data in files:
            if data not in BAD_BYTES:
                good[_sha(data)].append(f"{name}/{file_name}")
                label_of[_sha(data)], content[_sha(data)] = name, data
    assert [s.sha256 for s in dataset.samples] == sorted(good)  # one per content, in order
    assert [dataset.classes[s.label] for s in dataset.samples] == [
        label_of[h] for h in sorted(good)
    ]
    assert dataset.counts() == {
        name: sum(label == name for label in label_of.values()) for name in folder
    }
    # each copy listed once, against the file kept: the smallest relative path
    kept = {min(paths) for paths in good.values()}
    rel = {str(root / p): p for paths in good.values() for p in paths}
    assert len(dataset.duplicates) == sum(len(paths) - 1 for paths in good.values())
    assert {rel[d.same_as] for d in dataset.duplicates} <= kept
    assert {rel[s.path] for s in dataset.samples} == kept
    assert sorted(Path(b.path).relative_to(root).as_posix() for b in dataset.bad) == sorted(
        f"{name}/{n}" for name, files in folder.items() for n, data in files if data in BAD_BYTES
    )
    assert other.digest == dataset.digest and other.counts() == dataset.counts()
    # every image stored decoded: RGB, shorter side RESIZE, the longer scaled with it
    for i, sample in enumerate(dataset.samples):
        arr = np.load(dataset.decoded_path(i), allow_pickle=False)
        with Image.open(io.BytesIO(content[sample.sha256])) as img:
            w, h = img.size
            gray = img.mode == "L"
        short, long = sorted((w, h))
        expected = (max(1, int(RESIZE * long / short)), RESIZE)
        assert arr.dtype == np.uint8 and arr.shape[2] == 3
        assert sorted(arr.shape[:2], reverse=True) == list(expected)
        if h != w:  # the longer side stays the longer (or as long)
            assert arr.shape[0 if h > w else 1] >= arr.shape[1 if h > w else 0]
        if gray:  # grayscale stays gray
            assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
