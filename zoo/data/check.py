"""Checking a listing: every file read, hashed and decoded once, in parallel processes.

Decoding is the expensive part of small-data training (a PNG of clip art decodes far slower
than a small network runs on it), so the check keeps its work: each good image is stored,
resized as the backbone's eval transform resizes it, as a ``.npy`` array under
``$ZOO_HOME/data/decoded/<resize>/<sha256>.npy``. Training epochs read those arrays (and
crop, flip and normalise them) instead of decoding the files again; the next run on the
same files skips decoding entirely. The key is the file's content hash, so an edited file is
decoded afresh.

Reading a file to hash it is the cost left on a large folder, so each file's verdict (its
SHA-256, or why it cannot be used) is kept by the file's identity (zoo.data.verdicts): a
re-run ``stat``s every file and opens only the new and changed ones (and those whose
decoded array is gone). The progress line counts both; the line after it says how many
were unchanged, read and decoded.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any

from zoo.contract.errors import DataError, Interrupted
from zoo.data.decode import ImageDecodeError, decode_image, resize_for_eval
from zoo.data.incremental import CheckWork, Result, look_up, take_in
from zoo.data.sources import Listing
from zoo.data.verdicts import Store, open_store, shared_folder
from zoo.data.workers import checking_pool, guarded
from zoo.disk.lock import hold_caches
from zoo.disk.paths import ReadOnlyHomeError, atomic_writer, home, is_writable, subdir
from zoo.progress import say

__all__ = [
    "DEFAULT_MAX_BAD_FRACTION",
    "BadFile",
    "CheckWork",
    "Duplicate",
    "ImageDataset",
    "Sample",
    "check_bytes",
    "check_listing",
    "dataset_of",
    "decoded_cache_dir",
]

# A run fails when more than this fraction of the candidate files cannot be used.
DEFAULT_MAX_BAD_FRACTION = 0.25
_INLINE_BELOW = 48  # fewer files than this: check in this process (no pool start-up)


@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    sha256: str


@dataclass(frozen=True)
class Duplicate:
    """A file left out because another file has the same bytes (and label)."""

    path: str
    same_as: str


@dataclass(frozen=True)
class ImageDataset:
    """The checked dataset: good samples, skipped files, and where decoded arrays live.

    ``samples`` hold one file per distinct content, ordered by sha256: every index into
    them (splits, cache rows) follows the files, not the listing order.
    """

    root: str
    kind: str  # "folder", "csv", or the data source's name (zoo.data.load)
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    bad: tuple[BadFile, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()  # identical files left out (one of each kept)
    decoded_dir: str | None = None  # None: decode from the files each time
    digest: str = field(default="")
    work: CheckWork = field(default_factory=CheckWork, compare=False)  # what the check did

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def counts(self) -> dict[str, int]:
        found = Counter(s.label for s in self.samples)
        return {name: found.get(i, 0) for i, name in enumerate(self.classes)}

    def decoded_path(self, index: int) -> Path | None:
        if self.decoded_dir is None:
            return None
        return Path(self.decoded_dir) / f"{self.samples[index].sha256}.npy"

    def record(self) -> dict[str, Any]:
        """What the registry stores about the data (lineage)."""
        return {
            "digest": self.digest,
            "classes": list(self.classes),
            "counts": self.counts(),
            "num_images": len(self.samples),
            "num_skipped": len(self.bad),
            "num_duplicates_dropped": len(self.duplicates),
            "duplicates": [{"path": d.path, "same_as": d.same_as} for d in self.duplicates],
            "skipped": [{"path": b.path, "reason": b.reason} for b in self.bad],
            "source": self.kind,
            "root": self.root,
        }


def dataset_digest(classes: Sequence[str], samples: Sequence[Sample]) -> str:
    """Content hash of the dataset: class names, per-class counts, and every file's label
    and bytes (sha256). The same images give the same digest on any machine, wherever
    they live, whatever their names, and whether a folder or a CSV lists them."""
    counts = Counter(s.label for s in samples)
    doc = {
        "format": 2,
        "classes": list(classes),
        "counts": [counts.get(i, 0) for i in range(len(classes))],
        "files": sorted([classes[s.label], s.sha256] for s in samples),
    }
    blob = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def decoded_cache_dir(resize: int | tuple[int, int], interpolation: str) -> Path:
    key = f"{resize}" if isinstance(resize, int) else f"{resize[0]}x{resize[1]}"
    hold_caches()  # in use until this process exits: `zoo home prune` leaves them alone
    return subdir("data", "decoded", f"{key}-{interpolation}")


def _read(path: str) -> bytes:
    """A file's bytes: the one place the check opens a file."""
    return Path(path).read_bytes()


def check_bytes(
    data: bytes, out_dir: str | None, resize: int | tuple[int, int], interpolation: str
) -> tuple[str | None, str | None, bool]:
    """(sha256, reason, decoded) for one image's bytes, storing the resized array when
    out_dir is set: a file's, or an image a data source read (zoo.data.stream_check)."""
    import numpy as np

    digest = hashlib.sha256(data).hexdigest()
    target = Path(out_dir) / f"{digest}.npy" if out_dir else None
    if target is not None and target.exists():
        return digest, None, False
    try:
        img = decode_image(data)
    except ImageDecodeError as exc:
        return None, exc.reason, True
    if target is not None:
        arr = np.ascontiguousarray(np.asarray(resize_for_eval(img, resize, interpolation)))
        with atomic_writer(target) as fh:
            np.save(fh, arr, allow_pickle=False)
    return digest, None, True


def _check_one(
    path: str, out_dir: str | None, resize: int | tuple[int, int], interpolation: str
) -> tuple[str, str | None, str | None, bool, bool]:
    """(path, sha256, reason, decoded, lasting) for one file, storing the resized array
    when out_dir is set; ``lasting``: the verdict holds until the file changes (not a
    failure to read it)."""
    try:
        data = _read(path)
    except OSError as exc:
        return path, None, f"unreadable ({exc.strerror or exc})", False, False
    return path, *check_bytes(data, out_dir, resize, interpolation), True


def _utf8_name(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path: str) -> str:
    """A file name that is not UTF-8, printable (undecodable bytes become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _unique(listing: Listing, samples: list[Sample]) -> tuple[list[Sample], list[Duplicate]]:
    """One sample per distinct content, in the files' own order (by sha256).

    The order depends on the files alone, never on the order they were listed in, so a
    folder and a shuffled CSV of the same files give the same split and the same cache
    rows. Of identical files the one with the smallest relative path is kept; identical
    bytes under two labels are an error naming both files.
    """
    kept: list[Sample] = []
    dropped: list[Duplicate] = []
    for _sha, same in groupby(sorted(samples, key=lambda s: s.sha256), lambda s: s.sha256):
        group = list(same)
        if len(group) > 1:  # relative paths only where they decide (0.03 ms a file)
            group.sort(key=lambda s: listing.relpath(s.path))
        first = group[0]
        kept.append(first)
        for sample in group[1:]:
            if first.label != sample.label:
                raise DataError(
                    f"{first.path} ({listing.classes[first.label]}) and {sample.path} "
                    f"({listing.classes[sample.label]}) are the same image under two labels: "
                    "remove one of them or fix its label"
                )
            dropped.append(Duplicate(sample.path, first.path))
    return kept, dropped


def _home_writable() -> bool:
    try:
        return is_writable(home())
    except ReadOnlyHomeError:
        return False


def _star(args: tuple[str, str | None, int | tuple[int, int], str]) -> Any:
    return guarded(_check_one, *args)


def _in_pool(
    jobs: list[tuple[str, str | None, int | tuple[int, int], str]],
    workers: int,
    alongside: Callable[[], None] | None = None,
) -> Iterator[tuple[str, str | None, str | None, bool, bool]]:
    """Results in order, from worker processes that die with this one (workers.py);
    ``alongside`` is called once they run (every job handed out)."""
    with checking_pool(workers) as pool:
        results = pool.map(_star, jobs, chunksize=8)
        if alongside is not None:
            alongside()
        yield from results


def _check_files(
    paths: Sequence[str],
    results: list[Result | None],
    store: Store | None,
    job: tuple[str | None, int | tuple[int, int], str],
    workers: int,
    progress: Any,
    alongside: Callable[[], None] | None = None,
) -> CheckWork:
    """Fill ``results`` (one per path): from the store where it still holds, else by
    reading the file (``job``: out_dir, resize, interpolation), in worker processes when
    there are many."""
    pending = look_up(store, paths, results, job[0], progress)
    jobs = [(paths[i], *job) for i, _, _ in pending]
    inline = workers <= 1 or len(jobs) < _INLINE_BELOW
    checked = map(_star, jobs) if inline else _in_pool(jobs, workers, alongside)
    read, decoded = take_in(store, pending, checked, results, progress)
    processes = 1 if inline else workers
    return CheckWork(len(paths), len(paths) - len(jobs), read, decoded, processes=processes)


def check_listing(
    listing: Listing,
    *,
    resize: int | tuple[int, int] = 256,
    interpolation: str = "bilinear",
    cache: bool = True,
    workers: int | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    progress: Any = None,
    alongside: Callable[[], None] | None = None,
) -> ImageDataset:
    """Hash and decode every candidate file; skip and list the bad ones. With ``cache``
    (and a home that can be written), decoded arrays and verdicts are kept there and a
    file unchanged since its verdict is not opened again (the module's docstring).
    ``alongside``: called once the check's worker processes run (not when it checks in
    this process), for work of the caller's while they decode (zoo/engine/warmup.py).

    Raises DataError when more than ``max_bad_fraction`` of the files are bad, when there
    is a single class, when a class is left with fewer than 2 images (naming the classes),
    or when identical bytes carry two labels. Identical files under one label count once.
    """
    begun = time.monotonic()
    caching = cache and _home_writable()  # a read-only home: checked, nothing kept
    out_dir = str(decoded_cache_dir(resize, interpolation)) if caching else None
    store, said = (
        open_store(shared_folder(listing.paths, listing.root)) if caching else (None, None)
    )
    if said and progress is not None:
        say(said)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    paths = listing.paths
    if progress is not None:
        progress.start("checking images", len(paths), unit="images")
    results: list[Result | None] = [None] * len(paths)
    job = (out_dir, resize, interpolation)
    try:
        work = _check_files(paths, results, store, job, workers, progress, alongside)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while checking the images of {listing.root} "
            f"({sum(r is not None for r in results)} of {len(paths)} checked): nothing was "
            "trained or registered; run the same command again to go on (the images checked "
            "so far are not read again)"
        ) from None
    finally:
        if store is not None:
            store.close()
        if progress is not None:
            progress.finish()
    work = replace(work, seconds=time.monotonic() - begun)
    if progress is not None:
        for line in (store.problem if store else None, work.line() if paths else None):
            if line:
                say(line)
    return dataset_of(listing, results, out_dir, work, max_bad_fraction)


def dataset_of(
    listing: Listing,
    results: Sequence[Result | None],
    out_dir: str | None,
    work: CheckWork,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
) -> ImageDataset:
    """The checked dataset from each listed file's (path, sha256, reason): the bad ones
    counted against ``max_bad_fraction``, identical ones counted once, the classes checked
    (:func:`check_listing`'s refusals), the digest made."""
    samples: list[Sample] = []
    bad: list[BadFile] = []
    for result, label in zip(results, listing.labels, strict=True):
        assert result is not None
        path, digest, reason = result
        if not _utf8_name(path):  # cannot go into the digest, the report or MLflow
            bad.append(BadFile(_shown(path), "the file name is not valid UTF-8: rename it"))
        elif reason is not None or digest is None:
            bad.append(BadFile(path, reason or "unreadable"))
        else:
            samples.append(Sample(path, label, digest))
    total = len(listing.paths)
    if total == 0:
        raise DataError(f"no image files under {listing.root}")
    if len(bad) / total > max_bad_fraction:
        shown = "; ".join(f"{b.path} ({b.reason})" for b in bad[:3])
        raise DataError(
            f"{len(bad)} of {total} files ({len(bad) / total:.0%}) in {listing.root} cannot "
            f"be used, more than the {max_bad_fraction:.0%} allowed (e.g. {shown}): fix or "
            "remove them, or raise max_bad_fraction in the recipe"
        )
    samples, duplicates = _unique(listing, samples)
    if len(listing.classes) < 2:
        raise DataError(
            f"{listing.root} has one class ({', '.join(listing.classes) or 'none'}): a "
            "classifier needs at least 2 classes, one folder (or CSV label) per class"
        )
    counts = Counter(s.label for s in samples)
    small = [
        f"{listing.classes[i]} ({counts.get(i, 0)})"
        for i in range(len(listing.classes))
        if counts.get(i, 0) < 2
    ]
    if small:
        raise DataError(
            "every class needs at least 2 usable images (one to train, one to validate); "
            f"too few in: {', '.join(small)}. Add images or remove those classes"
        )
    return ImageDataset(
        root=listing.root,
        kind=listing.kind,
        classes=listing.classes,
        samples=tuple(samples),
        bad=tuple(bad),
        duplicates=tuple(duplicates),
        decoded_dir=out_dir,
        digest=dataset_digest(listing.classes, samples),
        work=work,
    )
