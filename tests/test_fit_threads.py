"""auto's small dense fits run with BLAS on one thread (zoo.engine.evidence.small_fit_threads):
a thread pool costs more than it saves on a few hundred rows, and on a busy machine its
spinning threads made `--strategy auto --dry-run` minutes long (bench/cv_threads.py). The
probe's head trains on its features with torch on one thread for the same reason
(zoo.engine.phases)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from zoo.engine import evidence, phases
from zoo.engine.evidence import SMALL_FIT, cv_scores, small_fit_threads


def _blas_threads() -> set[int]:
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_a_small_fit_runs_on_one_blas_thread_and_a_large_one_keeps_the_pool() -> None:
    with threadpool_limits(limits=2, user_api="blas"):  # the test workers start at one
        assert _blas_threads() == {2}
        with small_fit_threads(200, 1776):
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}, "the pool is given back afterwards"
        with small_fit_threads(SMALL_FIT // 1000 + 1, 1000):
            assert _blas_threads() == {2}


def _spy(
    monkeypatch: pytest.MonkeyPatch, module: Any, seen: list[tuple[int, int, set[int]]]
) -> None:
    real = module.small_fit_threads

    @contextmanager
    def spying(rows: int, cols: int) -> Iterator[None]:
        with real(rows, cols):
            seen.append((rows, cols, _blas_threads()))
            yield

    monkeypatch.setattr(module, "small_fit_threads", spying)


def test_the_cv_and_the_lbfgs_head_fit_inside_the_one_thread_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, int, set[int]]] = []
    _spy(monkeypatch, evidence, seen)
    _spy(monkeypatch, phases, seen)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 30)).astype(np.float32)
    y = np.repeat(np.arange(4), 10)
    x[np.arange(40), y] += 3.0  # separable enough to fit quickly
    with threadpool_limits(limits=2, user_api="blas"):
        assert cv_scores(x, y, seed=0, repeats=2) is not None
        head = torch.nn.Linear(30, 4)
        phases.fit_lbfgs(head, torch.from_numpy(x), torch.from_numpy(y))
    assert seen == [(40, 30, {1}), (40, 30, {1})]
    assert (head(torch.from_numpy(x)).argmax(1).numpy() == y).mean() > 0.9


def test_the_probe_head_trains_and_scores_on_one_torch_thread_then_gives_the_threads_back(
    tmp_path: Path,
) -> None:
    from tests.finetune_helpers import make_images
    from zoo.engine import Callback, Recipe, finetune

    seen: set[int] = set()

    class Spy(Callback):
        def on_phase_start(self, state, phase_index, optimizer) -> None:
            state.runner.head.register_forward_hook(lambda *_: seen.add(torch.get_num_threads()))

    data = make_images(tmp_path / "data", classes=2, per_class=6)
    recipe = Recipe(
        ref="timm:test_resnet",
        data=str(data),
        strategy="linear-probe",
        epochs=3,
        random_init=True,
        image_size=32,
        batch_size=4,
        workers=0,
        precision="fp32",
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        finetune(recipe, register=False, callbacks=[Spy()])
        assert seen == {1}, "every step and score of the head on features, on one thread"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
