"""The check of a data source's images: streamed from the source, checked as files are.

A registered data source (``register_data_sources``: tar shards, a saved or Parquet
Hugging Face dataset) yields :class:`zoo.SourceImage` records, each an image's bytes, its
name under DATA and its class name, in one pass over its files. Each image then goes
through the folder check's own steps (zoo.data.check): hashed (SHA-256) and decoded by
:func:`~zoo.data.check.check_bytes`, its resized array kept under the same content key,
and the results made into the dataset by :func:`~zoo.data.check.dataset_of`. So the same
images give the same digest, split, duplicates and skipped images whether a folder, a
CSV, shards or a Parquet file holds them.

The source is read in this process (a tar or Parquet file is read front to back); the
hashing and decoding run in worker processes (zoo.data.workers), a few batches ahead of
the reader and no more, so memory does not grow with the data. The check's verdict store
(zoo.data.verdicts) is not used: a re-run reads the source again, hashing every image,
and decodes none whose array is kept.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from zoo.contract.errors import DataError, Interrupted, PluginError
from zoo.contract.types import SourceImage
from zoo.data import check as checking
from zoo.data.check import (
    DEFAULT_MAX_BAD_FRACTION,
    ImageDataset,
    check_bytes,
    dataset_of,
    decoded_cache_dir,
)
from zoo.data.incremental import CheckWork, Result
from zoo.data.sources import Listing
from zoo.data.workers import checking_pool, guarded
from zoo.progress import say

__all__ = ["check_stream"]

_BATCH_IMAGES = 32  # images a worker is handed at a time
_BATCH_BYTES = 8 << 20  # ... or fewer, once they hold this many bytes
_AHEAD = 2  # batches in flight per worker: the reader stays this far ahead, no further

Job = tuple[str | None, "int | tuple[int, int]", str]  # out_dir, resize, interpolation
Checked = tuple[str | None, str | None, bool]  # sha256, reason, decoded


def _batch(datas: Sequence[bytes], job: Job) -> list[Checked]:
    return [check_bytes(data, *job) for data in datas]


def _star(args: tuple[Sequence[bytes], Job]) -> list[Checked]:
    return guarded(_batch, *args)


def _batches(images: Iterable[SourceImage]) -> Iterator[list[SourceImage]]:
    batch: list[SourceImage] = []
    size = 0
    for image in images:
        batch.append(image)
        size += len(image.data)
        if len(batch) >= _BATCH_IMAGES or size >= _BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _in_pool(
    batches: Iterator[list[SourceImage]],
    job: Job,
    workers: int,
    alongside: Callable[[], None] | None = None,
) -> Iterator[tuple[list[SourceImage], list[Checked]]]:
    """Each batch with its results, in order, from worker processes that die with this
    one; at most ``_AHEAD`` batches a worker are read ahead of the results;
    ``alongside`` is called once the workers run (after the first batch is handed out)."""
    ahead: deque[tuple[list[SourceImage], Future[list[Checked]]]] = deque()
    with checking_pool(workers) as pool:
        for batch in batches:
            ahead.append((batch, pool.submit(_star, ([i.data for i in batch], job))))
            if alongside is not None:
                alongside()
                alongside = None
            if len(ahead) >= _AHEAD * workers:
                done, future = ahead.popleft()
                yield done, future.result()
        while ahead:
            done, future = ahead.popleft()
            yield done, future.result()


def _checked(
    images: Iterable[SourceImage], job: Job, workers: int, alongside: Callable[[], None] | None
) -> Iterator[tuple[list[SourceImage], list[Checked], int]]:
    """(batch, its results, processes): inline when there are few images (no pool start)."""
    batches = _batches(images)
    first: list[list[SourceImage]] = []
    count = 0
    for batch in batches:
        first.append(batch)
        count += len(batch)
        if count >= checking._INLINE_BELOW:
            break
    if workers <= 1 or count < checking._INLINE_BELOW:
        for batch in _chain(first, batches):  # streamed, never listed whole
            yield batch, _batch([i.data for i in batch], job), 1
        return
    for batch, results in _in_pool(_chain(first, batches), job, workers, alongside):
        yield batch, results, workers


def _chain(first: list[list[SourceImage]], rest: Iterator[list[SourceImage]]) -> Iterator[Any]:
    yield from first
    yield from rest


def _valid(image: object, source: str, seen: set[str]) -> SourceImage:
    """What the source yielded, if it is a SourceImage zoo can use; else PluginError
    (``source``: "plugin 'P': data source 'S'")."""
    name = getattr(image, "name", None)
    ok = (
        isinstance(name, str)
        and bool(name.strip("/"))
        and not name.startswith("/")
        and isinstance(getattr(image, "label", None), str)
        and bool(image.label.strip())  # type: ignore[attr-defined]
        and isinstance(getattr(image, "data", None), bytes)
    )
    if not ok:
        raise PluginError(
            f"{source} yielded {type(image).__name__} {name!r}, not a "
            "zoo.SourceImage with a relative name, a class name and the image's bytes "
            "(docs/plugins/register_data_sources.md)"
        )
    if name in seen:
        raise PluginError(
            f"{source} yielded two images named {name!r}: each name must "
            "read one image back (docs/plugins/register_data_sources.md)"
        )
    seen.add(name)  # type: ignore[arg-type]
    return image  # type: ignore[return-value]


def check_stream(
    source: Any,
    path: Path,
    *,
    plugin: str = "?",
    resize: int | tuple[int, int] = 256,
    interpolation: str = "bilinear",
    cache: bool = True,
    workers: int | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    progress: Any = None,
    alongside: Callable[[], None] | None = None,
) -> ImageDataset:
    """Check every image ``source`` yields for ``path`` (DATA), as
    :func:`zoo.data.check.check_listing` checks a folder's files (the same options,
    ``alongside`` included, and refusals); the samples' paths are ``path/NAME``;
    ``plugin``: who registered it."""
    begun = time.monotonic()
    caching = cache and checking._home_writable()
    out_dir = str(decoded_cache_dir(resize, interpolation)) if caching else None
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    job: Job = (out_dir, resize, interpolation)
    seen: set[str] = set()
    names: list[str] = []
    labels: list[str] = []
    results: list[Result | None] = []
    decoded = processes = 0
    who = f"plugin '{plugin}': data source '{source.name}'"
    images = (_valid(image, who, seen) for image in source.images(path))
    if progress is not None:
        total = source.count(path) if hasattr(source, "count") else None
        progress.start("checking images", total if isinstance(total, int) else None, "images")
    try:
        for batch, checked, used in _checked(images, job, workers, alongside):
            processes = used
            for image, (digest, reason, did) in zip(batch, checked, strict=True):
                full = os.path.join(str(path), *image.name.strip("/").split("/"))
                names.append(full)
                labels.append(image.label)
                results.append((full, digest, reason))
                decoded += did
            if progress is not None:
                progress.advance(len(batch))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while checking the images of {path} ({len(results)} checked): "
            "nothing was trained or registered; run the same command again to go on (the "
            "images decoded so far are not decoded again)"
        ) from None
    finally:
        if progress is not None:
            progress.finish()
    n = len(results)
    work = CheckWork(n, 0, n, decoded, time.monotonic() - begun, processes or 1)
    if progress is not None and n:
        say(work.line())
    if not n:
        raise DataError(f"{path} holds no images that data source '{source.name}' reads")
    classes = tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(classes)}
    listing = Listing(
        str(path), source.name, classes, tuple(names), tuple(index[x] for x in labels)
    )
    return dataset_of(listing, results, out_dir, work, max_bad_fraction)
