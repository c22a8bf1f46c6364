"""zoo-webdataset: WebDataset tar shards as zoo's training data (a data source, plugin API 4).

DATA is a folder of ``*.tar`` shards (read in name order) or one shard. A sample is the
tar members that share a key, WebDataset's convention: the member's name up to the first
dot of its file name (``train/0001.jpg`` and ``train/0001.cls`` are sample
``train/0001``). Its image is the member with an image extension (``jpg``, ``jpeg``,
``png``, ``webp``, ...: the first of those the sample has, in that order); its class is
``KEY.cls`` (UTF-8 text: the class name) or ``KEY.json``'s ``"label"``. A number there is
an index into ``classes.json`` beside the shards (a list of class names, or an object of
name: index) when there is one, else the class's name. A sample without an image member
(metadata only) is not an image and is passed over; an image without a class is refused
in one line naming the shard and the key.

The shards are read with the standard library's ``tarfile``, front to back, and each
image's bytes are handed to zoo, which hashes and decodes them as it does a folder's
files; reading one image again (``read``) seeks to it from an index of the shard's
headers, kept per shard while the shard is unchanged. The ``webdataset`` package is not
needed to read shards (its pipelines decode images themselves and read only front to
back); zoo's tests write their shards with its ``ShardWriter``.

A third-party plugin: it imports only ``zoo``.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import zoo
from zoo import DataError, NotFoundError, SourceImage

__all__ = ["IMAGE_EXTENSIONS", "WebDatasetShards", "register_data_sources"]

zoo_plugin_api = 4  # register_data_sources

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "ppm", "pgm", "pbm", "bmp", "gif", "tif", "tiff")
CLASSES_FILE = "classes.json"
_FIX = (
    "give each sample a KEY.cls (its class name, or its index into classes.json) or a "
    'KEY.json with a "label" (docs/finetune.md, Data)'
)


def _key(member: str) -> tuple[str, str]:
    """(key, extension) of a member name: WebDataset's split at the file name's first dot."""
    folder, _, leaf = member.rpartition("/")
    stem, dot, ext = leaf.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


def _shards(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and _is_shard(p.name))


def _is_shard(name: str) -> bool:
    return name.lower().endswith(".tar") and not name.startswith(".")


def _classes(path: Path) -> list[str] | None:
    """The class names by index from ``classes.json`` beside the shards, if there is one."""
    file = (path if path.is_dir() else path.parent) / CLASSES_FILE
    if not file.is_file():
        return None
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"{file} is not readable JSON ({exc}): write a list of class names"
        ) from None
    if isinstance(doc, Mapping) and all(isinstance(v, int) for v in doc.values()):
        doc = [name for name, _ in sorted(doc.items(), key=lambda item: item[1])]
    if not isinstance(doc, list) or not all(isinstance(n, str) and n.strip() for n in doc):
        raise DataError(
            f"{file} holds no class names: write a list of names (index = position) or an "
            "object of name: index"
        )
    return doc


def _label(shard: str, key: str, members: Mapping[str, bytes], classes: list[str] | None) -> str:
    """The class name of one sample, from KEY.cls or KEY.json's "label"."""
    value: Any = None
    if "cls" in members:
        value = members["cls"].decode("utf-8", "replace").strip()
    elif "json" in members:
        try:
            doc = json.loads(members["json"])
        except ValueError:
            doc = None
        value = doc.get("label") if isinstance(doc, Mapping) else None
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value):
        raise DataError(f"{shard}: sample {key!r} has an image but no class: {_FIX}")
    number = value if isinstance(value, int) else int(value) if str(value).isdigit() else None
    if classes is None:
        return str(value)
    if number is not None:
        if not 0 <= number < len(classes):
            raise DataError(
                f"{shard}: sample {key!r} has class {number}, but classes.json names "
                f"{len(classes)} classes (0 to {len(classes) - 1}): fix the label or the list"
            )
        return classes[number]
    if str(value) not in classes:
        raise DataError(
            f"{shard}: sample {key!r} has class {value!r}, which classes.json does not "
            "name: add it there or fix the label"
        )
    return str(value)


def _samples(shard: Path) -> Iterator[tuple[str, dict[str, tuple[str, bytes]]]]:
    """(key, {extension: (member name, bytes)}) per sample, in the shard's order."""
    key: str | None = None
    members: dict[str, tuple[str, bytes]] = {}
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                this, ext = _key(info.name)
                if this != key and key is not None and members:
                    yield key, members
                    members = {}
                key = this
                handle = tar.extractfile(info)
                members[ext] = (info.name, handle.read() if handle else b"")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"{shard} is not a tar archive that reads to its end ({exc}): write it again "
            "(or move it out of DATA)"
        ) from None
    if key is not None and members:
        yield key, members


class WebDatasetShards:
    """The data source: ``*.tar`` shards of WebDataset samples."""

    name = "webdataset"
    summary = "WebDataset tar shards: DATA/*.tar of KEY.jpg (.png ...) with KEY.cls or KEY.json"

    def claims(self, path: Path) -> bool:
        if path.is_file():
            return _is_shard(path.name)
        if not path.is_dir():
            return False
        with os.scandir(path) as entries:
            return any(_is_shard(e.name) and e.is_file() for e in entries)

    def images(self, path: Path) -> Iterator[SourceImage]:
        if path.is_dir():
            folders = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name[0] != ".")
            if folders:
                raise DataError(
                    f"{path} holds *.tar shards and folders ({', '.join(folders[:3])}): "
                    "keep the shards in a folder of their own"
                )
        classes = _classes(path)
        for shard in _shards(path):
            prefix = "" if path.is_file() else f"{shard.name}/"
            for key, members in _samples(shard):
                image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
                if image is None:
                    continue  # metadata only: not an image sample
                found = {ext: data for ext, (_, data) in members.items()}
                label = _label(shard.name, key, found, classes)
                yield SourceImage(name=prefix + image[0], label=label, data=image[1])

    def read(self, path: Path, name: str) -> bytes:
        if path.is_file():
            shard, member = path, name
        else:
            first, _, member = name.partition("/")
            shard = path / first
        offset, size = _index(shard).get(member, (None, 0))
        if offset is None:
            raise NotFoundError(
                f"{shard} no longer holds {member}: the shards changed since zoo checked "
                "them; run again to check them anew"
            )
        with open(shard, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)


_INDEXES: dict[tuple[str, int, int], dict[str, tuple[int, int]]] = {}


def _index(shard: Path) -> dict[str, tuple[int, int]]:
    """Member name -> (offset of its data, size), from the shard's headers; kept while the
    shard's size and modification time stay the same."""
    try:
        stat = shard.stat()
    except OSError:
        return {}
    key = (str(shard), stat.st_size, stat.st_mtime_ns)
    if key not in _INDEXES:
        with tarfile.open(shard, mode="r:") as tar:
            _INDEXES[key] = {i.name: (i.offset_data, i.size) for i in tar if i.isfile()}
    return _INDEXES[key]


@zoo.hookimpl
def register_data_sources(register: Any) -> None:
    register(WebDatasetShards())
