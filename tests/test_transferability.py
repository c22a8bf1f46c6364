"""Transferability estimators checked against their definitions, evaluated the slow,
direct way on small random problems."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zoo.choose.transferability import hscore, leep, logme, logme_evidence, nce


def _direct_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y | 0, I/beta + F F^T/alpha): the marginal likelihood of a linear model with
    prior w ~ N(0, I/alpha) and noise precision beta, computed from the N x N covariance."""
    n = len(y)
    cov = np.eye(n) / beta + f @ f.T / alpha
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return float(-0.5 * y @ np.linalg.solve(cov, y) - 0.5 * logdet - n / 2 * math.log(2 * math.pi))


@pytest.mark.parametrize(("n", "d", "seed"), [(40, 5, 0), (30, 12, 1), (10, 25, 2)])
def test_logme_evidence_is_the_direct_marginal_likelihood_at_its_maximum(n, d, seed) -> None:
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, d))
    y = (f @ rng.normal(size=d) + 0.5 * rng.normal(size=n) > 0).astype(float)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    z = u.T @ y
    evidence, alpha, beta = logme_evidence(
        s**2, z, float(y @ y - z @ z), n, d, iterations=1000, tol=1e-12
    )
    assert evidence == pytest.approx(_direct_evidence(f, y, alpha, beta), rel=1e-9, abs=1e-9)
    for a, b in (
        (alpha * 1.2, beta),
        (alpha / 1.2, beta),
        (alpha, beta * 1.2),
        (alpha, beta / 1.2),
    ):
        assert _direct_evidence(f, y, a, b) < evidence  # a fixed point of the maximisation


def test_logme_ranks_informative_features_above_noise() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=200)
    informative = np.eye(4)[y] * 3 + rng.normal(size=(200, 4))
    noise = rng.normal(size=(200, 4))
    assert logme(informative, y) > logme(noise, y)
    assert hscore(informative, y) > hscore(noise, y)


def test_hscore_matches_its_definition_without_shrinkage() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, size=60)
    f = rng.normal(size=(60, 3)) + y[:, None]
    centred = f - f.mean(0)
    cov = np.cov(centred.T, bias=True)
    g = np.stack([centred[y == k].mean(0) for k in y])
    expected = np.trace(np.linalg.pinv(cov) @ np.cov(g.T, bias=True))
    assert hscore(f, y, shrinkage=0.0) == pytest.approx(expected, rel=1e-9)


def test_nce_and_leep_from_their_definitions_on_a_hand_made_case() -> None:
    # four images, two source classes, two target labels
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    y = np.array([0, 0, 1, 0])
    # NCE: z = (0, 0, 1, 1); P(z=0,y=0)=1/2, P(z=1,y=1)=1/4, P(z=1,y=0)=1/4
    expected_nce = 0.5 * math.log(1.0) + 0.25 * math.log(0.5) + 0.25 * math.log(0.5)
    assert nce(theta, y) == pytest.approx(expected_nce)
    # LEEP: P(z, y) = 1/n sum theta_z [y_i = y]; P(y|z) = P(z,y)/P(z)
    joint = np.zeros((2, 2))
    for t, label in zip(theta, y, strict=True):
        joint[:, label] += t / 4
    cond = joint / joint.sum(1, keepdims=True)
    expected_leep = np.mean([math.log(theta[i] @ cond[:, y[i]]) for i in range(4)])
    assert leep(theta, y) == pytest.approx(expected_leep)
    assert leep(theta, y) <= 0 and nce(theta, y) <= 0
