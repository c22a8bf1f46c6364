"""Batches of one epoch: which samples, in which order, on which process."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from zoo.data import ImageSamples
from zoo.data.workers import die_with, forks, forkserver
from zoo.engine.context import Dist

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from zoo.engine.state import RunState

__all__ = ["example", "image_batches", "loader_workers", "order", "tensor_batches", "worker_start"]


def order(n: int, seed: int, dist: Dist, shuffle: bool) -> list[int]:
    """This process's share of positions 0..n-1 for one epoch.

    Training (shuffled) pads the order so every process takes the same number of steps;
    evaluation takes every position once (the sums are reduced across processes).
    """
    import torch

    if not shuffle:
        positions = list(range(n))
        return positions[dist.rank :: dist.world] if dist.world > 1 else positions
    g = torch.Generator().manual_seed(seed)
    positions = torch.randperm(n, generator=g).tolist()
    if dist.world > 1:
        per = -(-n // dist.world)
        positions = (positions * dist.world)[: per * dist.world]
        return positions[dist.rank :: dist.world]
    return positions


def image_batches(
    state: RunState,
    indices: Sequence[int],
    *,
    train: bool,
    batch_size: int,
    seed: int,
    dist: Dist | None = None,
    shuffle: bool | None = None,
) -> Any:
    """A DataLoader of ``(uint8 crops, labels, dataset indices)`` over ``indices``."""
    import torch
    from torch.utils.data import DataLoader

    samples = ImageSamples(state.data, indices, state.pre, train=train)
    workers = loader_workers(state, train)
    context = worker_start(workers)
    sampler = order(
        len(samples),
        seed,
        state.dist if dist is None else dist,
        shuffle=train if shuffle is None else shuffle,
    )
    return DataLoader(
        samples,  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        multiprocessing_context=context,
        worker_init_fn=None if context is None else functools.partial(_decoder_init, os.getpid()),
        generator=torch.Generator().manual_seed(seed),
        pin_memory=False,
        drop_last=False,
    )


def loader_workers(state: RunState, train: bool) -> int:
    """DataLoader workers of a pass. Training passes crop and flip in ``state.workers``
    processes. A pass without augmentation on a CPU (a cache fill, an evaluation) crops in
    this process unless the recipe sets ``workers``: its images are decoded arrays already
    (cropping 484 costs 0.33 s, about 4% of EfficientNet-Lite0's forward pass on them),
    and worker processes take the cores the forward pass's threads compute on. Lite0's
    features of those 484 images on the 2-core machine: 11-16 CPU s with 2 workers, 8 s
    without, at a quiet moment; under other jobs' load the difference was within noise."""
    if train or state.rt.device.type != "cpu" or state.recipe.workers is not None:
        return state.workers
    return 0


def worker_start(workers: int) -> Any:
    """How this process starts its decoding workers: torch's default (fork), or in a
    DDP process from a forkserver (it has gloo's threads; zoo/data/workers.py)."""
    return None if workers <= 0 or forks() else forkserver()


def _decoder_init(starter: int, worker_id: int) -> None:
    die_with(starter)  # a forkserver's child: torch's own watch is on the forkserver


def tensor_batches(
    n: int, batch_size: int, seed: int, dist: Dist, shuffle: bool
) -> Iterator[list[int]]:
    positions = order(n, seed, dist, shuffle)
    for start in range(0, len(positions), batch_size):
        yield positions[start : start + batch_size]


def example(state: RunState) -> torch.Tensor:
    """Two validation images (training ones without a validation split), preprocessed and
    on the run's device (for tracing)."""
    import torch

    rows = (state.split.val or state.split.train)[:2]
    samples = ImageSamples(state.data, rows, state.pre, train=False)
    x = torch.stack([samples[i][0] for i in range(len(samples))])
    return state.rt.prepare(state.pre.normalize(x))
