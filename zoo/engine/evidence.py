"""When is one candidate better than a simpler one, on the training split alone? How
the cheap ones are scored (``cv_scores``: repeated stratified k-fold CV of one head),
and the tests that read the scores.

``auto`` (``search.py``) keeps the simplest candidate (the one its strategy offers first:
the linear probe) unless a richer one beats it *with evidence*: a one-sided test at
level ``AUTO_ALPHA``, Bonferroni-corrected over the challengers it compares. Two tests,
each the textbook one for how the candidates are scored:

- **repeated k-fold cross-validation** (cheap candidates, the same folds for both): the
  corrected resampled t-test of Nadeau and Bengio (Machine Learning 52, 2003) on the
  per-fold differences of every repeat, as Bouckaert and Frank (PAKDD 2004) apply it to
  r repeats of k folds (the "corrected repeated k-fold cv test"). Folds share training
  images, so the plain t-test's variance is too small; the correction multiplies it by
  ``1/(k r) + n_test/n_train``, with k r - 1 degrees of freedom.
- **one inner hold-out** (trials, both scored on the same images): the exact McNemar test
  (a one-sided binomial test on the images exactly one of the two gets right).

Why tests and not "the higher score wins": the first evaluation (docs/benchmarks.md,
"Choosing, evaluated") found ``auto`` choosing on differences of 2 to 7 images of ~300,
inside the noise, and losing up to 8 points to the probe it passed over.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = [
    "AUTO_ALPHA",
    "AUTO_FOLDS",
    "AUTO_REPEATS",
    "corrected_t_p",
    "cv_accuracy",
    "cv_classifier",
    "cv_head",
    "cv_scores",
    "head_threads",
    "mcnemar_p",
    "per_test_alpha",
    "small_fit_threads",
]

AUTO_ALPHA = 0.05  # the conventional level; not tuned on any figure (docs/protocol.md)
AUTO_FOLDS = 5  # k of the k-fold cross-validation of cheap candidates
# how many times the k folds are drawn (shuffled anew): Bouckaert and Frank (PAKDD 2004)
# found one k-fold run's verdicts poorly replicable and recommend 10 repetitions with the
# corrected t-test; the second evaluation saw a one-run lead (p = 0.006) not carry to test
AUTO_REPEATS = 10


# A problem of at most this many numbers (rows x columns) is fitted with BLAS on one
# thread. Below it a matrix product takes well under a millisecond, and handing it to a
# thread pool costs more than it saves: auto's 100 CV fits on 182 images of 1,776 stage
# features took 3.6 CPU-s each with OpenBLAS's default pool and 0.1 on one thread, the
# same coefficients to 1e-6 (bench/cv_threads.py); on a busy machine the pool's spinning
# threads made the README's `--strategy auto --dry-run` minutes long. Above it (tens of
# thousands of images) the pool pays again. Not tuned on any figure of docs/protocol.md.
SMALL_FIT = 4_000_000


@contextmanager
def small_fit_threads(rows: int, cols: int) -> Iterator[None]:
    """BLAS on one thread while a fit of ``rows`` x ``cols`` numbers runs, when that is
    small (``SMALL_FIT``); the thread pools as they were otherwise and afterwards."""
    if rows * cols > SMALL_FIT:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def per_test_alpha(challengers: int, alpha: float = AUTO_ALPHA) -> float:
    """Bonferroni: ``alpha`` shared by the ``challengers`` compared with the baseline."""
    return alpha / max(1, challengers)


def corrected_t_p(
    challenger: Sequence[float], baseline: Sequence[float], test_share: float
) -> float:
    """One-sided p-value that ``challenger`` beats ``baseline`` over the same J folds
    (J = k r for r repeats of k-fold CV; Nadeau-Bengio corrected resampled t-test;
    ``test_share`` = n_test / n_train of a fold, 1/(k-1) for k-fold CV). 1.0 when the
    mean difference is not positive."""
    from scipy import stats

    j = len(challenger)
    if j != len(baseline) or j < 2:
        raise ValueError("need the same J >= 2 folds for both candidates")
    d = [a - b for a, b in zip(challenger, baseline, strict=True)]
    mean = sum(d) / j
    if mean <= 0:
        return 1.0
    var = sum((x - mean) ** 2 for x in d) / (j - 1)
    if var == 0:
        return 0.0  # the same positive gain on every fold
    t = mean / math.sqrt((1 / j + test_share) * var)
    return float(stats.t.sf(t, j - 1))


def mcnemar_p(challenger_right: Sequence[bool], baseline_right: Sequence[bool]) -> float:
    """One-sided exact McNemar p-value that the challenger is right more often than the
    baseline on the same images (binomial on the discordant pairs). 1.0 when it is not
    right more often."""
    from scipy import stats

    if len(challenger_right) != len(baseline_right):
        raise ValueError("both candidates must be scored on the same images")
    wins = sum(1 for a, b in zip(challenger_right, baseline_right, strict=True) if a and not b)
    losses = sum(1 for a, b in zip(challenger_right, baseline_right, strict=True) if b and not a)
    if wins <= losses:
        return 1.0
    return float(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def cv_scores(
    x: Any,
    y: Any,
    seed: int,
    folds: int = AUTO_FOLDS,
    repeats: int = AUTO_REPEATS,
    fit_folds: Callable[[Any, Any, list[tuple[Any, Any]]], list[Any]] | None = None,
) -> tuple[list[float], int] | None:
    """Per-fold accuracies over ``repeats`` stratified k-fold CVs (k * repeats figures;
    the folds depend on ``y`` and ``seed`` only, so two candidates' folds pair up), and k;
    None when a class has fewer than two images (no fold could hold it out).
    ``fit_folds(x, y, [(train rows, test rows)...])`` fits the candidate's own head on
    every fold and returns each fold's predicted labels (zoo/engine/head_fit.py); by
    default the standardised L2 logistic regression."""
    import numpy as np
    from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_score

    counts = np.bincount(y)
    k = min(folds, int(counts[counts > 0].min()))
    if k < 2 or len(counts[counts > 0]) < 2:
        return None
    cv = RepeatedStratifiedKFold(n_splits=k, n_repeats=repeats, random_state=seed)
    if fit_folds is not None:
        folds_ = list(cv.split(x, y))
        predicted = fit_folds(x, y, folds_)
        return [float(np.mean(p == y[b])) for p, (_, b) in zip(predicted, folds_, strict=True)], k
    with warnings.catch_warnings(), small_fit_threads(*x.shape):
        warnings.simplefilter("ignore")  # sklearn's convergence notes stay off the terminal
        scores = cross_val_score(cv_head(), x, y, cv=cv, scoring="accuracy")
    return [float(v) for v in scores], k


def cv_accuracy(
    x: Any, y: Any, seed: int, folds: int = AUTO_FOLDS, repeats: int = AUTO_REPEATS
) -> tuple[float, int] | None:
    """Mean accuracy over :func:`cv_scores`' folds, and k (None as there)."""
    scored = cv_scores(x, y, seed, folds, repeats)
    if scored is None:
        return None
    scores, k = scored
    return sum(scores) / len(scores), k


def cv_head() -> Any:
    """The head every cheap candidate is scored with: standardisation, then
    :func:`cv_classifier`."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), cv_classifier())


def cv_classifier() -> Any:
    """An L2-regularised multinomial logistic regression (C = 1) fitted by L-BFGS: the
    classifier of auto's CV, and the head a ``fit="lbfgs"`` phase registers (the
    multi-stage probe's), so that what the CV scores is what gets registered."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=1000)


@contextmanager
def head_threads(x: Any, device: Any, rows: int) -> Iterator[None]:
    """torch on one thread while the head trains on (or scores) ``rows`` of features ``x``
    on a CPU ``device``, when they are few (``SMALL_FIT`` numbers, as BLAS in auto's
    fits): a second thread only waits at every small op's barrier, on a busy machine for
    a thread not running (60 passes over 388 x 1,280 Lite0 features: 0.5 CPU s on one
    thread, 1.0 on two, 13-46 under other jobs' load; the same weights bytes)."""
    import torch

    if device.type != "cpu" or rows * (x.numel() // max(1, len(x))) > SMALL_FIT:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
