"""Tests mutation testing asked for (docs/testing.md): LogME's stopping rule as its ``tol``
says, LogME on features that fit every class exactly, a one-class k-NN whose neighbours
point exactly the other way, LEEP with an image given no probability, and the subsample
of no labels."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from zoo.choose.transferability import (
    knn_accuracy,
    leep,
    logme,
    logme_evidence,
    stratified_subsample,
)


@pytest.mark.parametrize("target_scale", [1.0, 0.1])  # beta ~ 3 and ~ 300
@pytest.mark.parametrize("tol", [1e-2, 1e-3])
def test_logme_evidence_stops_at_the_first_iterate_whose_precisions_moved_less_than_tol(
    target_scale: float, tol: float
) -> None:
    # the iterates themselves: tol=0 never stops, so iterations=m gives the m-th one
    rng = np.random.default_rng(0)
    n, d = 60, 4
    f = rng.normal(size=(n, d))
    y = (f @ np.array([1.0, -2.0, 0.5, 1.5]) + 0.3 * rng.normal(size=n) > 0) * target_scale
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    z = u.T @ y
    args = (s**2, z, float(y @ y - z @ z), n, d)
    iterates = [logme_evidence(*args, iterations=m, tol=0.0) for m in range(1, 200)]

    def moved(m: int) -> tuple[float, float]:  # relative change of alpha, beta at step m
        (_, a0, b0), (_, a1, b1) = iterates[m - 2], iterates[m - 1]
        return abs(a1 - a0) / a0, abs(b1 - b0) / b0

    first = next(m for m in range(2, 200) if max(moved(m)) < tol)
    assert first < 20  # a few steps, well short of the iteration cap
    assert iterates[first - 1] != iterates[-1]  # stopping there is visible in the result
    assert logme_evidence(*args, iterations=1000, tol=tol) == iterates[first - 1]


def test_logme_scores_features_that_fit_every_class_exactly_highest() -> None:
    # one-hot features: each one-hot target is a feature, with no residual at all; its
    # evidence grows without bound as the noise precision does, LogME must stay a number
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    exact = np.eye(3)[y] @ rng.normal(size=(3, 5))
    noisy = exact + 0.5 * rng.normal(size=exact.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        best = logme(exact, y)
    assert math.isfinite(best)
    assert best > logme(noisy, y)


@pytest.mark.parametrize("dims", range(1, 16))
def test_knn_of_one_class_is_always_right_even_when_the_neighbour_points_the_other_way(
    dims: int,
) -> None:
    # two images: once standardised each is the other's negative (cosine -1, weight
    # 1 + cosine = 0 up to rounding), yet the only class there is must win every vote
    x = np.stack([np.zeros(dims), np.arange(1.0, dims + 1)])
    assert knn_accuracy(x, [0, 0]) == 1.0
    assert knn_accuracy(x, [0, 0], k=5) == 1.0


def test_leep_stays_finite_when_an_image_gets_no_probability() -> None:
    # the last image's row is all zero (e.g. probabilities that underflowed): its label's
    # expected probability is 0, and LEEP must still be a finite number, not log(0) or NaN
    theta = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.0, 0.0]])
    y = np.array([0, 1, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = leep(theta, y)
    assert math.isfinite(value)
    # the three other images contribute as the definition says; the fourth far less
    joint = np.zeros((2, 2))
    for t, label in zip(theta, y, strict=True):
        joint[:, label] += t / 4
    cond = joint / joint.sum(1, keepdims=True)
    others = sum(math.log(theta[i] @ cond[:, y[i]]) for i in range(3))
    assert value < others / 4


@pytest.mark.parametrize("cap", [0, 3])
def test_the_subsample_of_no_labels_is_empty_whatever_the_cap(cap: int) -> None:
    keep = stratified_subsample(np.array([], dtype=np.int64), cap)
    assert len(keep) == 0


def test_two_images_of_one_class_vote_for_it_whatever_its_number() -> None:
    """Standardised, two images point exactly away from each other (cosine -1): the
    neighbour's vote is tiny but still for its class, not for class 0 by default."""
    for labels in ([3, 3], [1, 1], [0, 0]):
        assert knn_accuracy([[0.0], [1.0]], labels) == 1.0
        assert knn_accuracy([[0, 0, 0], [1, 1, 1]], labels) == 1.0


def test_features_that_carry_nothing_give_the_evidence_of_noise_alone() -> None:
    """All-zero features (a dead layer): LogME is the evidence of each one-hot target
    under Gaussian noise fitted by maximum likelihood, computed here by hand."""
    labels = [0, 0, 1, 1, 2, 2]
    n = len(labels)
    per_class = []
    for k in range(3):
        target = [1.0 if y == k else 0.0 for y in labels]
        res2 = sum(t * t for t in target)
        beta = n / res2
        per_class.append(
            (n / 2 * math.log(beta) - beta / 2 * res2 - n / 2 * math.log(2 * math.pi)) / n
        )
    expected = sum(per_class) / 3
    assert math.isclose(logme([[0.0] * 4] * n, labels), expected, rel_tol=1e-9)
    assert math.isclose(logme(np.zeros((n, 0)), labels), expected, rel_tol=1e-9)  # no features
    # and features that do carry the labels score higher
    assert logme([[1.0 if y == k else 0.0 for k in range(3)] for y in labels], labels) > expected
