"""Caches of rows on disk, written in shards and read a batch at a time.

A cache entry is a folder ``$ZOO_HOME/<kind>/<key>/``: ``rows.json`` (how many rows, each
tensor's row shape and dtype, how many shards) and, per tensor and process, one file of
raw rows, ``<tensor>.<r>-of-<w>.bin``. Under torchrun each of the ``w`` processes writes
the rows it computed (row ``i`` is process ``i % w``'s ``i // w``-th), so no process
gathers them in memory; a node whose home lacks another node's shard receives it in
blocks. The entry is written under a staging name and renamed into place whole, so a
reader sees all of it or none.

:class:`Rows` reads rows by index from the shards with positioned reads (``preadv``)
straight into the batch's buffer, so a process holds a batch of rows, not the cache: the
linear probe's head, the partial strategy's trainable suffix and their evaluations stream
their batches from it. (Not a memory map: a page fault on a mapped file maps the whole
page-cache folio around it, up to megabytes on current kernels, so scattered rows read
through a map grow the process's resident memory towards the cache's size however
often the pages are given back; measured in docs/benchmarks.md, "Scale".)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.disk.paths import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from zoo.engine.context import Dist

__all__ = ["META", "READ_BYTES", "Fill", "Rows", "open_rows", "shard_rows"]

FORMAT = 1
META = "rows.json"
READ_BYTES = 64 << 20  # what Rows.load reads at a time
BLOCK_BYTES = 64 << 20  # a shard sent to another node, per message


def shard_rows(n: int, rank: int, world: int) -> int:
    """How many of ``n`` rows process ``rank`` of ``world`` holds."""
    return len(range(rank, n, world))


def _shard_name(name: str, rank: int, world: int) -> str:
    return f"{name}.{rank}-of-{world}.bin"


def _row_bytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count * dtype.itemsize


def _dtype(name: str) -> torch.dtype:
    import torch

    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"not a torch dtype: {name}")
    return dtype


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _read_at(fd: int, buf: memoryview, offset: int) -> None:
    """Fill ``buf`` from ``fd`` at ``offset`` (positioned: the file's offset is not
    used, so processes and threads sharing the descriptor do not disturb each other)."""
    while len(buf):
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [buf], offset)
        else:  # pragma: no cover - platforms without preadv
            data = os.pread(fd, len(buf), offset)
            buf[: len(data)] = data
            got = len(data)
        if got <= 0:
            raise OSError(f"a cache shard ended {len(buf)} bytes early")
        buf, offset = buf[got:], offset + got


class Rows:
    """``n`` rows of one shape and dtype in ``len(files)`` shards, indexed like a tensor's
    first dimension: ``rows[idx]`` is a new CPU tensor of those rows, read from disk
    (the page cache) then; nothing else of the cache is held."""

    def __init__(self, files: Sequence[Path], n: int, shape: Sequence[int], dtype: torch.dtype):
        self.n, self.row_shape, self.dtype = n, tuple(int(s) for s in shape), dtype
        self.row_bytes = _row_bytes(self.row_shape, dtype)
        self._fds: list[int] = []
        weakref.finalize(self, _close_all, self._fds)
        for r, path in enumerate(files):
            count = shard_rows(n, r, len(files))
            self._fds.append(os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0)))
            if os.fstat(self._fds[-1]).st_size != count * self.row_bytes:
                raise ValueError(f"{path.name} does not hold {count} rows")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n, *self.row_shape)

    @property
    def nbytes(self) -> int:
        return self.n * self.row_bytes

    def __len__(self) -> int:
        return self.n

    def numel(self) -> int:
        return self.nbytes // self.dtype.itemsize

    def __getitem__(self, index: Any) -> torch.Tensor:
        import numpy as np
        import torch

        if isinstance(index, slice):
            index = range(*index.indices(self.n))
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1).numpy()
        if not len(idx):
            return torch.empty((0, *self.row_shape), dtype=self.dtype)
        if idx.min() < 0 or idx.max() >= self.n:
            raise IndexError(f"row index out of range for {self.n} rows")
        world = len(self._fds)
        # Read in file order, one call per run of consecutive rows of a shard, into a
        # buffer in that order; then put the rows in the order asked.
        order = np.lexsort((idx // world, idx % world))
        shard, pos = idx[order] % world, idx[order] // world
        step = np.diff(pos) != 1
        step |= shard[1:] != shard[:-1]
        starts = np.concatenate(([0], np.flatnonzero(step) + 1, [len(idx)]))
        got = np.empty((len(idx), self.row_bytes), dtype=np.uint8)
        view = memoryview(got.data).cast("B")
        rb = self.row_bytes
        for a, b in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
            _read_at(self._fds[int(shard[a])], view[a * rb : b * rb], int(pos[a]) * rb)
        if np.array_equal(order, np.arange(len(idx))):
            out = got
        else:
            out = np.empty_like(got)
            out[order] = got
        return torch.from_numpy(out).view(self.dtype).reshape(len(idx), *self.row_shape)

    def load(self) -> torch.Tensor:
        """Every row, in memory (for the few consumers that need the whole matrix)."""
        import torch

        out = torch.empty(self.shape, dtype=self.dtype)
        step = max(1, READ_BYTES // max(1, self.row_bytes))
        for start in range(0, self.n, step):
            out[start : start + step] = self[range(start, min(self.n, start + step))]
        return out


def _read_entry(folder: Path) -> dict[str, Rows] | None:
    """The entry's tensors, or None when it is missing, incomplete or damaged."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            return None
        n, world = int(meta["rows"]), int(meta["shards"])
        return {
            name: Rows(
                [folder / _shard_name(name, r, world) for r in range(world)],
                n,
                spec["shape"],
                _dtype(spec["dtype"]),
            )
            for name, spec in meta["tensors"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def open_rows(folder: Path, dist: Dist) -> dict[str, Rows] | None:
    """The entry, when every process finds it complete in its node's home; else None
    and every process computes it (nodes with separate homes may not all have it)."""
    rows = _read_entry(folder)
    if dist.world > 1 and not all(dist.gather(rows is not None)):
        return None
    return rows


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def _check_space(folder: Path, need: int, what: str) -> None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need + (64 << 20) > free:  # and room to spare for the run's own files
        raise UsageError(
            f"the {what} needs {_gib(need)} under {folder}, and that disk has {_gib(free)} "
            "free: free some space, or set ZOO_HOME to a larger disk, and run again"
        )


class Fill:
    """One entry being written: each process appends the rows it computes to its own
    shard of each tensor; :meth:`finish` puts the entry in place on every node."""

    def __init__(
        self,
        folder: Path,
        specs: Mapping[str, tuple[Sequence[int], torch.dtype]],
        n: int,
        dist: Dist,
        what: str,
    ) -> None:
        self.folder, self.n, self.dist = folder, n, dist
        self.specs = {k: (tuple(int(s) for s in shape), d) for k, (shape, d) in specs.items()}
        need = sum(n * _row_bytes(shape, d) for shape, d in self.specs.values())
        dist.agree(lambda: _check_space(folder.parent, need, what) if dist.node_main else None)
        token = dist.broadcast(secrets.token_hex(6))  # one staging name for the whole job
        self.staging = folder.parent / f".{folder.name}.{token}"
        self.staging.mkdir(parents=True, exist_ok=True)
        self.written = dict.fromkeys(self.specs, 0)
        self._files = {
            name: (self.staging / _shard_name(name, dist.rank, dist.world)).open("wb")
            for name in self.specs
        }

    def append(self, name: str, rows: torch.Tensor) -> None:
        import torch

        shape, dtype = self.specs[name]
        rows = rows.detach().to("cpu", dtype).contiguous()
        if tuple(rows.shape[1:]) != shape:
            raise ValueError(f"{name}: rows of shape {tuple(rows.shape[1:])}, expected {shape}")
        self._files[name].write(rows.reshape(-1).view(torch.uint8).numpy().data)
        self.written[name] += len(rows)

    def _close(self) -> None:
        for fh in self._files.values():
            if not fh.closed:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()

    def abort(self) -> None:
        for fh in self._files.values():
            fh.close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def finish(self) -> dict[str, Rows]:
        mine = shard_rows(self.n, self.dist.rank, self.dist.world)
        if any(count != mine for count in self.written.values()):
            raise RuntimeError(f"a shard holds {self.written} rows, not {mine}")
        self._close()
        self.dist.barrier()
        self._exchange()
        if self.dist.node_main:
            self._publish()
        self.dist.barrier()
        rows = _read_entry(self.folder)
        if rows is None:
            raise RuntimeError(f"the cache {self.folder} was written but cannot be read")
        return rows

    def _exchange(self) -> None:
        """Send each shard a node's home lacks (separate homes) to that node's first
        process, in blocks, from the process that wrote it."""
        dist = self.dist
        if dist.world <= 1:
            return
        seen = {p.name for p in self.staging.glob("*.bin")}
        views = dist.gather((dist.node_main, seen))
        for name, (shape, dtype) in self.specs.items():
            for src in range(dist.world):
                fname = _shard_name(name, src, dist.world)
                if any(main and fname not in names for main, names in views):
                    size = shard_rows(self.n, src, dist.world) * _row_bytes(shape, dtype)
                    needs = dist.node_main and fname not in seen
                    self._send(self.staging / fname, src, size, needs)

    def _send(self, path: Path, src: int, size: int, needs: bool) -> None:
        """Process ``src``'s file ``path`` (``size`` bytes) to every process that
        ``needs`` it, broadcast in blocks on the collective device."""
        import torch
        import torch.distributed as tdist

        device = torch.device(self.dist.device)
        sending = self.dist.rank == src
        part = path.with_name(f".{path.name}.part")
        source = path.open("rb") if sending else None
        out = part.open("wb") if needs else None
        try:
            for start in range(0, size, BLOCK_BYTES):
                length = min(BLOCK_BYTES, size - start)
                if source is not None:
                    data = bytearray(source.read(length))
                    block = torch.frombuffer(data, dtype=torch.uint8).to(device)
                else:
                    block = torch.empty(length, dtype=torch.uint8, device=device)
                tdist.broadcast(block, src=src)
                if out is not None:
                    out.write(block.cpu().numpy().data)
        finally:
            for fh in (source, out):
                if fh is not None:
                    fh.close()
        if out is not None:
            os.replace(part, path)

    def _publish(self) -> None:
        """Write the entry's description and rename it into place (first job wins)."""
        meta = {
            "format": FORMAT,
            "rows": self.n,
            "shards": self.dist.world,
            "tensors": {
                name: {"shape": list(shape), "dtype": str(dtype).removeprefix("torch.")}
                for name, (shape, dtype) in self.specs.items()
            },
        }
        atomic_write_text(self.staging / META, json.dumps(meta, indent=1))
        if self.folder.exists() and _read_entry(self.folder) is None:
            trash = self.folder.parent / f".{self.folder.name}.damaged.{secrets.token_hex(4)}"
            os.replace(self.folder, trash)  # a damaged entry: replaced, never trusted
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(self.staging, self.folder)
        except OSError:  # another job (or another node on a shared home) was first
            if _read_entry(self.folder) is None:
                raise
            shutil.rmtree(self.staging, ignore_errors=True)
