"""zoo-hfdatasets: a Hugging Face ``datasets`` image dataset as zoo's training data (a data
source, plugin API 4).

DATA is one of

- a dataset saved with ``Dataset.save_to_disk`` (a folder holding ``state.json`` and
  ``dataset_info.json``), opened with ``datasets.load_from_disk`` (memory-mapped: nothing
  is copied);
- Parquet: one ``.parquet`` file or a folder of them (read in name order), each streamed
  with ``datasets.load_dataset("parquet", data_files=FILE, streaming=True)`` (nothing is
  copied into the ``datasets`` cache).

The image is the ``image`` column (an ``Image`` feature, read undecoded: the bytes as
stored), or the dataset's one ``Image`` column; the class is the ``label`` column, named
by its ``ClassLabel`` feature (or a string column), or the dataset's one ``ClassLabel``
column. zoo hashes and decodes the bytes as it does a folder's files. A saved
``DatasetDict`` (``dataset_dict.json``, a folder per split) is refused in one line naming
its splits: pass one split's folder.

Each image is named by its row, after its Parquet file's name where DATA is a folder of
them, then the image's own file name where the dataset kept one:
``train-00000.parquet/17/img003.png``, or ``17/img003.png`` in a saved dataset.

A third-party plugin: it imports only ``zoo`` (and ``datasets`` inside the calls that
read data, so ``zoo --help`` stays fast).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import zoo
from zoo import DataError, NotFoundError, SourceImage

__all__ = ["HFImageDataset", "register_data_sources"]

zoo_plugin_api = 4  # register_data_sources

_BATCH = 64  # rows read at a time


def _layout(path: Path) -> str | None:
    """The layout of DATA: saved, dict (a saved DatasetDict), parquet (a file or a folder
    of them), or None."""
    if path.is_file():
        return "parquet" if path.suffix.lower() == ".parquet" else None
    if not path.is_dir():
        return None
    if (path / "state.json").is_file() and (path / "dataset_info.json").is_file():
        return "saved"
    if (path / "dataset_dict.json").is_file():
        return "dict"
    return "parquet" if _parquet_files(path) else None


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = (p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return sorted(p for p in found if p.suffix.lower() == ".parquet")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """datasets' progress bars and log lines kept off the user's terminal."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    level = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if bars:
            datasets.enable_progress_bars()


def _columns(features: Mapping[str, Any], where: Path) -> tuple[str, str, list[str] | None]:
    """(image column, label column, class names by index or None for string labels)."""
    from datasets import ClassLabel, Image, Value

    def one(kind: type, named: str) -> str | None:
        if named in features:
            return named
        typed = [c for c, f in features.items() if isinstance(f, kind)]
        return typed[0] if len(typed) == 1 else None

    columns = ", ".join(features) or "none"
    image = one(Image, "image")
    stored = features.get(image) if image else None
    if image is None or not (isinstance(stored, Image) or "bytes" in (stored or {})):
        raise DataError(
            f"{where} has no image column (its columns: {columns}): name the images' "
            "column 'image', an Image feature (docs/finetune.md, Data)"
        )
    label = one(ClassLabel, "label")
    kind = features.get(label) if label else None
    if isinstance(kind, ClassLabel):
        return image, str(label), list(kind.names)
    if label is None or not (isinstance(kind, Value) and "string" in kind.dtype):
        raise DataError(
            f"{where} has no label column with class names (its columns: {columns}): name "
            "it 'label', a ClassLabel feature (ds.cast_column('label', ClassLabel(names=...))) "
            "or class names as strings"
        )
    return image, label, None


def _undecoded(dataset: Any, image: str, label: str) -> Any:
    from datasets import Image

    dataset = dataset.select_columns([image, label])
    if isinstance(dataset.features[image], Image):
        dataset = dataset.cast_column(image, Image(decode=False))
    return dataset


def _bytes(value: Any, where: str) -> bytes:
    """An undecoded Image value's bytes: stored in the dataset, or its file's."""
    if isinstance(value, Mapping):
        if value.get("bytes") is not None:
            return bytes(value["bytes"])
        path = value.get("path")
        if path and Path(path).is_file():
            return Path(path).read_bytes()
        raise DataError(
            f"{where} holds no image bytes and no image file at {path!r}: save the dataset "
            "with its images embedded (an Image feature built from bytes, or embed_storage)"
        )
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise DataError(f"{where} holds no image ({type(value).__name__})")


def _leaf(value: Any) -> str:
    """The image's own file name, where the dataset kept one: ``/img003.png``."""
    path = value.get("path") if isinstance(value, Mapping) else None
    leaf = str(path).replace("\\", "/").rpartition("/")[2] if path else ""
    return f"/{leaf}" if leaf else ""


def _class(value: Any, names: list[str] | None, where: str) -> str:
    if names is None:
        if isinstance(value, str) and value.strip():
            return value
    elif isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    raise DataError(f"{where} has no class (label {value!r}): label every image")


def _rows(dataset: Any, features: Any, where: Path, prefix: str) -> Iterator[SourceImage]:
    image, label, names = _columns(features, where)
    row = 0
    for batch in _undecoded(dataset, image, label).iter(batch_size=_BATCH):
        for value, labelled in zip(batch[image], batch[label], strict=True):
            at = f"{where}: row {row}"
            name = f"{prefix}{row}{_leaf(value)}"
            yield SourceImage(name, _class(labelled, names, at), _bytes(value, at))
            row += 1


def _saved(path: Path) -> Any:
    import datasets

    with _quiet():
        found = datasets.load_from_disk(str(path))
    if not isinstance(found, datasets.Dataset):
        raise DataError(f"{path} is not one saved Dataset: pass one split's folder")
    return found


def _streamed(file: Path) -> Any:
    import datasets

    with _quiet():
        return datasets.load_dataset(
            "parquet", data_files=[str(file)], split="train", streaming=True
        )


class HFImageDataset:
    """The data source: a saved ``datasets`` Dataset or Parquet files of one."""

    name = "hfdatasets"
    summary = "Hugging Face datasets: a save_to_disk folder or Parquet, image + label columns"

    def claims(self, path: Path) -> bool:
        return _layout(path) is not None

    def images(self, path: Path) -> Iterator[SourceImage]:
        layout = _layout(path)
        if layout == "dict":
            splits = sorted(p.name for p in path.iterdir() if p.is_dir())
            raise DataError(
                f"{path} is a saved DatasetDict of splits ({', '.join(splits)}): pass one "
                f"split's folder, e.g. {path / (splits[0] if splits else 'train')}"
            )
        if layout == "saved":
            dataset = _opened(path)
            with _quiet():
                yield from _rows(dataset, dataset.features, path, "")
            return
        for file in _parquet_files(path):
            stream = _streamed(file)
            prefix = "" if path.is_file() else f"{file.name}/"
            with _quiet():
                yield from _rows(stream, stream.features or {}, file, prefix)

    def count(self, path: Path) -> int | None:
        """Rows: a saved dataset's length, or the Parquet files' metadata (not their data)."""
        layout = _layout(path)
        if layout == "saved":
            return len(_opened(path))
        if layout != "parquet":
            return None
        import pyarrow.parquet as pq

        try:
            return sum(pq.read_metadata(file).num_rows for file in _parquet_files(path))
        except (OSError, ValueError):  # unreadable: images() says so, in one line
            return None

    def read(self, path: Path, name: str) -> bytes:
        parts = name.split("/")
        if _layout(path) == "saved":
            dataset, row = _opened(path), int(parts[0])
            image, label, _ = _columns(dataset.features, path)
            if row >= len(dataset):
                raise NotFoundError(f"{path} has no row {row} now: run again to check anew")
            return _bytes(_undecoded(dataset, image, label)[row][image], f"{path}: row {row}")
        file = path if path.is_file() else path / parts.pop(0)
        return _bytes(_parquet_row(file, int(parts[0])), f"{file}: row {parts[0]}")


_OPENED: dict[tuple[str, int], Any] = {}


def _stamp(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _opened(path: Path) -> Any:
    """A saved dataset, opened once while its state.json stays the same."""
    key = (str(path), _stamp(path / "state.json"))
    if key not in _OPENED:
        _OPENED[key] = _saved(path)
    return _OPENED[key]


def _parquet_row(file: Path, row: int) -> Any:
    """Row ``row``'s image value in a Parquet file: its row group's image column read."""
    import pyarrow.parquet as pq

    key = (str(file), _stamp(file))
    if key not in _OPENED:
        _OPENED[key] = _columns(_streamed(file).features or {}, file)[0]
    column = _OPENED[key]
    parquet = pq.ParquetFile(file)
    start = 0
    for group in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if row < start + rows:
            table = parquet.read_row_group(group, columns=[column])
            return table.column(0)[row - start].as_py()
        start += rows
    raise NotFoundError(f"{file} has no row {row} now: run again to check the data anew")


@zoo.hookimpl
def register_data_sources(register: Any) -> None:
    register(HFImageDataset())
