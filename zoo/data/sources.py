"""Where labelled images come from: a class-per-folder tree or a CSV manifest (other
containers, such as tar shards, are read by data source plugins: zoo.data.load).

- Folder: ``DATA/CLASS/...`` — every top-level sub-folder is a class; images may sit in
  nested folders below it. Hidden files and folders (``.name``) are ignored. Every other
  file is a candidate image; files that do not decode are skipped later and listed.
- CSV manifest: rows ``path,label`` (a ``path,label`` header row is optional); relative
  paths are relative to the CSV file's folder.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from zoo.contract.errors import DataError, NotFoundError

__all__ = ["Listing", "hidden", "list_files", "read_manifest", "scan_folder"]


@dataclass(frozen=True)
class Listing:
    """Candidate files and their labels, before any decoding."""

    root: str  # the folder, or the CSV file's folder
    kind: str  # "folder", "csv", or the data source's name (zoo.data.stream_check)
    classes: tuple[str, ...]  # sorted class names; labels index this
    paths: tuple[str, ...]  # absolute paths
    labels: tuple[int, ...]

    def relpath(self, path: str) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return path


def hidden(part: str) -> bool:
    """Left out of a folder's listing: hidden names and macOS's resource folders."""
    return part.startswith(".") or part == "__MACOSX"


def scan_folder(root: Path) -> Listing:
    root = root.expanduser().resolve()
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not hidden(p.name))
    if not class_dirs:
        raise DataError(
            f"{root} has no class folders: lay images out as {root}/CLASS/IMAGE "
            "(one sub-folder per class) or pass a CSV manifest with path,label rows"
        )
    classes: list[str] = []
    paths: list[str] = []
    labels: list[int] = []
    for label, folder in enumerate(class_dirs):
        classes.append(folder.name)
        for rel in _files_under(str(folder)):
            paths.append(os.path.join(folder, *rel))
            labels.append(label)
    return Listing(str(root), "folder", tuple(classes), tuple(paths), tuple(labels))


def _files_under(folder: str) -> list[tuple[str, ...]]:
    """The files below ``folder`` as relative parts, in path order (as sorted Paths):
    hidden ones and hidden folders left out, symbolic links to files kept, links to
    folders not followed, unreadable sub-folders skipped. One ``os.scandir`` per folder,
    whose entries know their type: no ``stat`` per file (a million files list in seconds,
    where ``rglob`` and ``is_file`` took 20 µs a file)."""
    found: list[tuple[str, ...]] = []
    pending: list[tuple[str, tuple[str, ...]]] = [(folder, ())]
    while pending:
        where, rel = pending.pop()
        try:
            with os.scandir(where) as entries:
                listed = list(entries)
        except PermissionError:
            continue
        for entry in listed:
            if hidden(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, (*rel, entry.name)))
                elif entry.is_file():
                    found.append((*rel, entry.name))
            except OSError:  # gone meanwhile
                continue
    found.sort()
    return found


def read_manifest(csv_path: Path) -> Listing:
    csv_path = csv_path.expanduser().resolve()
    base = csv_path.parent
    rows: list[tuple[str, str]] = []
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        for number, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if number == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise DataError(
                    f"{csv_path}:{number}: expected 'path,label', got {','.join(row)!r}"
                )
            rows.append((row[0].strip(), row[1].strip()))
    if not rows:
        raise DataError(f"{csv_path} lists no images: write one 'path,label' row per image")
    classes = sorted({label for _, label in rows})
    index = {name: i for i, name in enumerate(classes)}
    paths = tuple(
        str(p if (p := Path(path).expanduser()).is_absolute() else (base / p).resolve())
        for path, _ in rows
    )
    labels = tuple(index[label] for _, label in rows)
    return Listing(str(base), "csv", tuple(classes), paths, labels)


def list_files(data: str | Path) -> Listing:
    """A folder or a ``.csv`` manifest -> its candidate files."""
    path = Path(data).expanduser()
    if not path.exists():
        raise NotFoundError(f"no dataset at {path}: give a folder of class folders or a CSV")
    if path.is_dir():
        return scan_folder(path)
    if path.suffix.lower() in {".csv", ".tsv"}:
        return read_manifest(path)
    raise DataError(
        f"{path} is neither a folder nor a .csv manifest: give DATA/CLASS/IMAGE folders "
        "or a CSV with path,label rows"
    )
