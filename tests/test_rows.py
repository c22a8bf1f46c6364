"""Row caches (zoo.engine.rows): shards written by each process, read a batch at a time.

The torchrun side (two processes filling one cache, in one home and in a home each) is
tests/test_distributed.py's Dist test; here, one process and shards laid out by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from zoo.contract.errors import UsageError
from zoo.engine.context import Dist
from zoo.engine.rows import META, Fill, Rows, open_rows


def _fill(folder: Path, tensors: dict[str, torch.Tensor], batch: int = 3) -> dict[str, Rows]:
    n = len(next(iter(tensors.values())))
    spec = {k: (tuple(v.shape[1:]), v.dtype) for k, v in tensors.items()}
    fill = Fill(folder, spec, n, Dist(), "test cache")
    for start in range(0, n, batch):
        for name, t in tensors.items():
            fill.append(name, t[start : start + batch])
    return fill.finish()


def test_rows_read_back_by_any_index_as_written_float32_and_bfloat16(tmp_path: Path) -> None:
    x = torch.randn(11, 2, 3)
    h = torch.randn(11, 5).to(torch.bfloat16)
    got = _fill(tmp_path / "features" / "k", {"x": x, "h": h})
    assert got["x"].shape == (11, 2, 3) and len(got["h"]) == 11
    assert torch.equal(got["x"].load(), x) and torch.equal(got["h"].load(), h)
    index = torch.tensor([10, 0, 3, 3, 7])  # any order, repeats
    assert torch.equal(got["x"][index], x[index])
    assert torch.equal(got["h"][[4, 1]], h[[4, 1]])
    assert torch.equal(got["x"][2:9:3], x[2:9:3])
    assert got["x"][[]].shape == (0, 2, 3)
    with pytest.raises(IndexError):
        got["x"][[11]]
    # what a later process finds: the same rows, from the folder alone
    again = open_rows(tmp_path / "features" / "k", Dist())
    assert again is not None and torch.equal(again["h"][[2, 9]], h[[2, 9]])
    assert not [p for p in (tmp_path / "features").iterdir() if p.name.startswith(".")]


def test_rows_of_several_shards_are_interleaved_by_row_number(tmp_path: Path) -> None:
    """Row i of a cache written by w processes is process i % w's (i // w)-th row."""
    n, world = 10, 3
    x = torch.arange(n * 4, dtype=torch.float32).reshape(n, 4)
    files = []
    for r in range(world):
        path = tmp_path / f"x.{r}-of-{world}.bin"
        path.write_bytes(x[r::world].numpy().tobytes())
        files.append(path)
    got = Rows(files, n, (4,), torch.float32)
    order = torch.randperm(n)
    assert torch.equal(got[order], x[order])
    assert torch.equal(got.load(), x)
    runs = [0, 1, 2, 3, 3, 9, 4, 5, 6, 1]  # runs that cross shards, repeats
    assert torch.equal(got[runs], x[runs])
    files[1].write_bytes(x[1::world][:-1].numpy().tobytes())  # one row short
    with pytest.raises(ValueError, match="does not hold 3 rows"):
        Rows(files, n, (4,), torch.float32)


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc")
def test_reading_every_row_holds_a_batch_not_the_cache(tmp_path: Path) -> None:
    """32 MiB of rows read in random batches of 1 MiB: the process's file-backed
    resident memory grows by less than 4 MiB. Read through a memory map instead (zoo's
    reader before), it grew by the whole cache: the kernel maps the page-cache folio
    around every row a fault touches, whatever was given back between batches."""
    n, dim = 8192, 1024  # 4 KiB rows
    x = torch.randn(n, dim)
    folder = tmp_path / "features" / "big"
    _fill(folder, {"x": x}, batch=1024)
    opened = open_rows(folder, Dist())
    assert opened is not None
    cache = opened["x"]
    order = torch.randperm(n)
    cache[order[:2]]  # the reader's own code paths run once (library pages, not rows)
    before = peak = _rss_file_kib()
    for start in range(0, n, 256):
        batch = order[start : start + 256]
        assert torch.equal(cache[batch], x[batch])
        peak = max(peak, _rss_file_kib())
    assert peak - before < 4 * 1024, (before, peak)


def test_a_damaged_entry_is_not_read_and_a_new_fill_replaces_it(tmp_path: Path) -> None:
    folder = tmp_path / "prefix" / "k"
    x = torch.randn(6, 3)
    _fill(folder, {"a": x})
    shard = folder / "a.0-of-1.bin"
    shard.write_bytes(shard.read_bytes()[:-4])  # truncated
    assert open_rows(folder, Dist()) is None
    meta = json.loads((folder / META).read_text())
    assert meta == {
        "format": 1,
        "rows": 6,
        "shards": 1,
        "tensors": {"a": {"shape": [3], "dtype": "float32"}},
    }
    y = torch.randn(6, 3)
    got = _fill(folder, {"a": y})
    assert torch.equal(got["a"].load(), y)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["k"]  # nothing left aside


def test_a_second_job_filling_the_same_entry_keeps_the_first_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "features" / "k"
    x = torch.randn(4, 2)
    spec = {"a": ((2,), torch.float32)}
    first, second = (Fill(folder, spec, 4, Dist(), "test cache") for _ in range(2))
    for fill in (first, second):
        fill.append("a", x)
    first.finish()
    got = second.finish()  # the same key: the same rows; the first one's folder stays
    assert torch.equal(got["a"].load(), x)
    assert sorted(p.name for p in folder.parent.iterdir()) == ["k"]


def test_a_cache_larger_than_the_free_disk_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "prefix" / "k"
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    n = free // (64 * 1024 * 4) + 1000  # rows of 256 KiB: more than the disk has
    with pytest.raises(UsageError) as info:
        spec = {"activations": ((64, 32, 32), torch.float32)}
        Fill(folder, spec, n, Dist(), "frozen-prefix cache")
    message = str(info.value)
    assert message.startswith("the frozen-prefix cache needs ")
    assert f"under {tmp_path / 'prefix'}" in message and "GiB free" in message
    assert "set ZOO_HOME to a larger disk" in message
    assert not (tmp_path / "prefix").exists() or not any((tmp_path / "prefix").iterdir())


def test_a_fill_that_fails_leaves_no_staging_folder(tmp_path: Path) -> None:
    folder = tmp_path / "features" / "k"
    fill = Fill(folder, {"a": ((2,), torch.float32)}, 4, Dist(), "test cache")
    fill.append("a", torch.zeros(2, 2))
    with pytest.raises(ValueError, match="rows of shape"):
        fill.append("a", torch.zeros(2, 3))
    fill.abort()
    assert not any((tmp_path / "features").iterdir())
    short = Fill(folder, {"a": ((2,), torch.float32)}, 4, Dist(), "test cache")
    short.append("a", torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match="not 4"):
        short.finish()
    short.abort()
    assert not any((tmp_path / "features").iterdir())
