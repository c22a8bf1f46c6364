"""DATA into a checked dataset, whatever holds it, and one image's bytes read again.

Which reads DATA: a ``.csv`` (or ``.tsv``) file is a manifest (zoo.data.sources); any other
path is first offered to the registered data sources (``register_data_sources``, plugin
API 4: each answers ``claims(path)`` from names alone), so that a source can read a
folder holding its own files (a folder of ``*.tar`` shards, a saved Hugging Face
dataset); a folder no source claims is a folder of class folders. A folder or a CSV is
checked file by file (zoo.data.check), a source's images as it streams them
(zoo.data.stream_check); when a source reads DATA, zoo says which, in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.contract.errors import DataError, NotFoundError, PluginError
from zoo.contract.plugins import get_plugin_manager
from zoo.data.check import ImageDataset, check_listing
from zoo.data.sources import hidden, list_files
from zoo.data.stream_check import check_stream
from zoo.progress import say

__all__ = ["CSV_SUFFIXES", "data_source_for", "load_dataset", "read_image"]

CSV_SUFFIXES = frozenset({".csv", ".tsv"})
LISTED = frozenset({"folder", "csv"})  # the kinds of data whose samples are files


def data_source_for(data: str | Path) -> tuple[str, Any, str] | None:
    """(name, source, plugin) of the registered data source that claims ``data``; None
    for a CSV manifest or a path no source claims. Two claiming it is a DataError."""
    path = Path(data).expanduser()
    if path.is_file() and path.suffix.lower() in CSV_SUFFIXES:
        return None
    pm = get_plugin_manager()
    claimed = [
        (name, source) for name, source in sorted(pm.data_sources().items()) if source.claims(path)
    ]
    if len(claimed) > 1:
        owners = [f"'{name}' (plugin {pm.owner('data_source', name)})" for name, _ in claimed]
        both = " and ".join(owners)
        raise DataError(
            f"{path} is claimed by the data sources {both}: keep one of their plugins "
            "(ZOO_LOAD_PLUGINS=... loads only those named; `zoo plugins` lists them)"
        )
    if not claimed:
        return None
    name, source = claimed[0]
    return name, source, pm.owner("data_source", name) or "?"


def _unread(path: Path) -> DataError:
    sources = get_plugin_manager().data_sources()
    known = ", ".join(f"{n} ({s.summary})" for n, s in sorted(sources.items()))
    what = "a folder without class folders" if path.is_dir() else "neither a folder nor a CSV"
    return DataError(
        f"{path} is {what}, and no installed data source reads it "
        f"(installed: {known or 'none'}): give DATA/CLASS/IMAGE folders, a CSV manifest of "
        "path,label rows, or install the data source plugin for its format (docs/finetune.md)"
    )


def _class_folders(path: Path) -> bool:
    return any(p.is_dir() and not hidden(p.name) for p in path.iterdir())


def load_dataset(data: str | Path, **kwargs: Any) -> ImageDataset:
    """Check the images of ``data``: a folder of class folders, a CSV manifest or what a
    registered data source claims (options: :func:`zoo.data.check.check_listing`'s)."""
    path = Path(data).expanduser()
    if not path.exists():
        raise NotFoundError(
            f"no dataset at {path}: give a folder of class folders, a CSV, or what an "
            "installed data source reads"
        )
    found = data_source_for(path)
    if found is None:
        csv = path.is_file() and path.suffix.lower() in CSV_SUFFIXES
        if not csv and not (path.is_dir() and _class_folders(path)):
            raise _unread(path)
        return check_listing(list_files(path), **kwargs)
    name, source, plugin = found
    if kwargs.get("progress") is not None:  # what chose how DATA is read, said once
        info = get_plugin_manager().plugins.get(plugin)
        made = f"{info.distribution} {info.version}" if info and info.distribution else plugin
        say(f"{path}: read by the data source '{name}' ({made})")
    return check_stream(source, path.resolve(), plugin=plugin, **kwargs)


def read_image(dataset: ImageDataset, index: int) -> bytes:
    """The bytes of sample ``index``: its file's, or what its data source reads again."""
    sample = dataset.samples[index]
    if dataset.kind in LISTED:
        return Path(sample.path).read_bytes()
    source = get_plugin_manager().data_sources().get(dataset.kind)
    if source is None:
        raise DataError(
            f"{dataset.root} was read by the data source '{dataset.kind}', which is not "
            "installed now: install its plugin again (`zoo plugins` lists what is)"
        )
    name = Path(sample.path).relative_to(dataset.root).as_posix()
    data = source.read(Path(dataset.root), name)
    if not isinstance(data, bytes):
        raise PluginError(
            f"data source '{dataset.kind}' read {sample.path} as {type(data).__name__}, "
            "not bytes: a bug in its plugin (report it to its authors)"
        )
    return data
