"""The check, incrementally: which files it must read, given the verdicts the store keeps
(zoo.data.verdicts), and what it keeps of the files it read.

:func:`look_up` ``stat``s the listed files a chunk at a time (the clock read just before,
the rows' reference for the racy rule) and takes each verdict whose row still stands for
the file (and, for a good one, whose decoded array is there) without opening the file;
:func:`take_in` puts the verdicts of the files read into the results and their rows into
the store, a transaction every few hundred files and whatever stops the check (Ctrl-C
keeps the files read so far). :class:`CheckWork` is what the check says it did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zoo.data.verdicts import Identity, Row, Store, identity, racy

__all__ = ["CheckWork", "Result", "look_up", "take_in"]

_CHUNK = 2048  # files stat'ed and looked up at a time
_FLUSH = 512  # rows written in one transaction

Result = tuple[str, "str | None", "str | None"]  # (path, sha256, reason it is bad)


@dataclass(frozen=True)
class CheckWork:
    """What one check did: its files, the verdicts it took from the store without opening
    the file (unchanged since they were made), the files it read and decoded."""

    files: int = 0
    unchanged: int = 0
    read: int = 0
    decoded: int = 0
    seconds: float = 0.0
    processes: int = 1

    def line(self) -> str:
        took = f"{self.seconds:.2f}" if self.seconds < 1 else f"{self.seconds:.1f}"
        done = f"checked {self.files:,} files in {took} s: "
        if self.unchanged:
            done += f"{self.unchanged:,} unchanged since the last check, "
        done += f"{self.read:,} read ({self.decoded:,} decoded"
        if self.read and self.seconds > 0:
            rate = self.read / self.seconds
            done += f"; {rate:,.0f} a second on {self.processes} process"
            done += "es" if self.processes > 1 else ""
        return done + ")"


def _serves(row: Row, found: Identity, out_dir: str | None) -> bool:
    """Does the stored row stand for the file as it is now (and its decoded array)?"""
    if row.identity != found or racy(found, row.seen_ns):
        return False
    if row.sha256 is None:
        return row.reason is not None  # a bad file stays bad, for the same reason
    return out_dir is None or os.path.exists(os.path.join(out_dir, f"{row.sha256}.npy"))


def look_up(
    store: Store | None,
    paths: Sequence[str],
    results: list[Result | None],
    out_dir: str | None,
    progress: Any,
) -> list[tuple[int, Identity | None, int]]:
    """Fill ``results`` with the verdicts the store still holds (the progress advanced by
    them); return the files to read: (index, identity, the clock before its stat) each.
    Without a store nothing is stat'ed."""
    if store is None:
        return [(i, None, 0) for i in range(len(paths))]
    pending: list[tuple[int, Identity | None, int]] = []
    for start in range(0, len(paths), _CHUNK):
        chunk = paths[start : start + _CHUNK]
        seen = time.time_ns()  # before the stats: the rows' reference for racy files
        rows = store.lookup(chunk)
        for offset, path in enumerate(chunk):
            try:
                found: Identity | None = identity(os.stat(path))
            except OSError:
                found = None  # missing or unreadable: the read says why
            row = rows.get(path)
            if found is not None and row is not None and _serves(row, found, out_dir):
                results[start + offset] = (path, row.sha256, row.reason)
            else:
                pending.append((start + offset, found, seen))
        if progress is not None:
            progress.advance(sum(1 for r in results[start : start + _CHUNK] if r is not None))
    return pending


def take_in(
    store: Store | None,
    pending: Sequence[tuple[int, Identity | None, int]],
    checked: Iterable[tuple[str, str | None, str | None, bool, bool]],
    results: list[Result | None],
    progress: Any,
) -> tuple[int, int]:
    """Put the files read (``checked``: path, sha256, reason, decoded, lasting, in the
    order of ``pending``) into ``results`` and their rows into the store, a transaction
    every few hundred, and whatever stops the check; returns (read, decoded)."""
    read = decoded = 0
    rows: list[tuple[str, Identity, int, str | None, str | None]] = []
    try:
        for (index, found, seen), (path, digest, reason, did, lasting) in zip(
            pending, checked, strict=True
        ):
            results[index] = (path, digest, reason)
            read, decoded = read + 1, decoded + did
            if store is not None and found is not None and lasting:
                rows.append((path, found, seen, digest, reason))
                if len(rows) >= _FLUSH:
                    store.remember(rows)
                    rows = []
            if progress is not None:
                progress.advance(1)
    finally:
        if store is not None:
            store.remember(rows)
    return read, decoded
