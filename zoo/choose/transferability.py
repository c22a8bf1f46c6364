"""Transferability estimators: how well a backbone's features fit a labelled dataset,
from one forward pass, without fine-tuning (docs/rank.md).

- **LogME** (You et al., ICML 2021): the log marginal evidence of a Bayesian linear model
  from features to each one-hot class target, with the prior and noise precisions set by
  evidence maximisation (MacKay's fixed point, one SVD, then cheap iterations per class),
  averaged over classes and divided by the number of samples. Higher is better.
- **H-score** (Bao et al., 2019): tr(cov(f)^-1 cov(E[f | y])), with a shrunk covariance.
- **NCE** (Tran et al., 2019): the negative conditional entropy of the target labels
  given the source model's top-1 labels.
- **LEEP** (Nguyen et al., 2020): the log expected empirical prediction of the target
  labels through the source model's probabilities.
- **k-NN** leave-one-out accuracy: each image classified by its ``KNN_K`` nearest other
  images (cosine similarity of the standardised features, a similarity-weighted vote),
  on a seeded, stratified subsample of at most ``KNN_MAX_IMAGES``; similarities are
  computed a chunk of rows at a time, so memory grows linearly with the images.

Everything is float64 NumPy; nothing here imports torch.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "KNN_K",
    "KNN_MAX_IMAGES",
    "hscore",
    "knn_accuracy",
    "leep",
    "logme",
    "logme_evidence",
    "nce",
    "stratified_subsample",
]

_EPS = 1e-12
KNN_K = 5  # neighbours that vote
KNN_MAX_IMAGES = 10_000  # the subsample k-NN scores at most


def _as_arrays(features: Any, labels: Any) -> tuple[Any, Any]:
    import numpy as np

    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if f.ndim != 2 or len(f) != len(y):
        raise ValueError(f"features must be N x D with N labels, got {f.shape} and {y.shape}")
    return f, y


def logme_evidence(
    s2: Any, z: Any, residual: float, n: int, d: int, *, iterations: int = 100, tol: float = 1e-5
) -> tuple[float, float, float]:
    """(evidence, alpha, beta) of one target at the evidence-maximising fixed point.

    ``s2`` are the squared singular values of the N x D feature matrix, ``z = U^T y`` the
    target's coordinates in its left singular vectors, ``residual`` the squared norm of
    the target outside their span.
    """
    import numpy as np

    alpha, beta = 1.0, 1.0
    if not len(s2):  # features that carry nothing (all zero): only the noise is fitted,
        beta, iterations = n / (residual + _EPS), 0  # and alpha cancels out of the evidence
    for _ in range(iterations):
        t = alpha + beta * s2
        gamma = float(np.sum(beta * s2 / t))
        m2 = float(np.sum(beta**2 * s2 * z**2 / t**2))  # |m|^2, the posterior mean's norm
        res2 = float(np.sum((alpha * z / t) ** 2)) + residual  # |F m - y|^2
        new_alpha = gamma / (m2 + _EPS)
        new_beta = (n - gamma) / (res2 + _EPS)
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    t = alpha + beta * s2
    m2 = float(np.sum(beta**2 * s2 * z**2 / t**2))
    res2 = float(np.sum((alpha * z / t) ** 2)) + residual
    # log|A| with A = alpha I_D + beta F^T F: the D - len(s2) directions without data give alpha
    log_det = float(np.sum(np.log(t))) + (d - len(s2)) * math.log(alpha)
    evidence = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - 0.5 * log_det
        - beta / 2 * res2
        - alpha / 2 * m2
        - n / 2 * math.log(2 * math.pi)
    )
    return evidence, alpha, beta


def logme(features: Any, labels: Any) -> float:
    """LogME of features for class labels: the mean over classes of the per-sample log
    evidence of a one-hot target (You et al. 2021, Algorithm 1)."""
    import numpy as np

    f, y = _as_arrays(features, labels)
    n, d = f.shape
    u, s, _vt = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * 1e-10 if len(s) else s > 0
    u, s2 = u[:, keep], s[keep] ** 2
    scores = []
    for k in np.unique(y):
        target = (y == k).astype(np.float64)
        z = u.T @ target
        residual = max(float(target @ target - z @ z), 0.0)
        evidence, _a, _b = logme_evidence(s2, z, residual, n, d)
        scores.append(evidence / n)
    return float(np.mean(scores))


def hscore(features: Any, labels: Any, shrinkage: float = 1e-3) -> float:
    """H-score: tr(cov(f)^-1 cov(E[f | y])), the covariance shrunk towards its mean
    eigenvalue by ``shrinkage`` so that it inverts when D is close to N."""
    import numpy as np

    f, y = _as_arrays(features, labels)
    f = f - f.mean(axis=0)
    cov = f.T @ f / len(f)
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
    means = np.zeros_like(f)
    for k in np.unique(y):
        means[y == k] = f[y == k].mean(axis=0)
    between = means.T @ means / len(f)
    return float(np.trace(np.linalg.solve(cov, between)))


def _joint(source_probs: Any, labels: Any) -> tuple[Any, Any]:
    import numpy as np

    p, y = _as_arrays(source_probs, labels)
    classes, y_idx = np.unique(y, return_inverse=True)
    joint = np.zeros((p.shape[1], len(classes)))  # P(z, y)
    np.add.at(joint.T, y_idx, p)
    return joint / len(p), y_idx


def nce(source_probs: Any, labels: Any) -> float:
    """NCE: -H(Y | Z), Z the source model's top-1 label of each image (higher is better)."""
    import numpy as np

    p, y = _as_arrays(source_probs, labels)
    hard = np.zeros_like(p)
    hard[np.arange(len(p)), p.argmax(axis=1)] = 1.0
    joint, _ = _joint(hard, y)
    pz = joint.sum(axis=1, keepdims=True)
    mask = joint > 0
    cond = np.where(mask, joint / np.where(pz > 0, pz, 1.0), 1.0)
    return float(np.sum(joint[mask] * np.log(cond[mask])))


def leep(source_probs: Any, labels: Any) -> float:
    """LEEP: the mean log-likelihood of each label through P(y | z) and the source model's
    probabilities θ(x): (1/n) Σ_i log Σ_z P(y_i | z) θ(x_i)_z (higher is better)."""
    import numpy as np

    p, y = _as_arrays(source_probs, labels)
    joint, y_idx = _joint(p, y)
    pz = joint.sum(axis=1, keepdims=True)
    conditional = joint / np.where(pz > 0, pz, 1.0)  # P(y | z)
    expected = p @ conditional  # n x classes
    return float(np.mean(np.log(expected[np.arange(len(p)), y_idx] + _EPS)))


def stratified_subsample(labels: Any, cap: int, seed: int = 0) -> Any:
    """Sorted indices of at most ``cap`` samples, each class keeping its share (largest
    remainders round; every class keeps at least one), drawn at random with ``seed``."""
    import numpy as np

    y = np.asarray(labels).astype(np.int64).ravel()
    if len(y) <= cap:
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * cap / len(y)
    take = np.maximum(1, np.floor(exact).astype(np.int64))
    for i in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if take.sum() >= cap:
            break
        take[i] += take[i] < counts[i]
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(y == c), size=n, replace=False)
        for c, n in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def knn_accuracy(
    features: Any,
    labels: Any,
    *,
    k: int = KNN_K,
    max_images: int = KNN_MAX_IMAGES,
    seed: int = 0,
    chunk: int = 1024,
) -> float:
    """Leave-one-out k-NN accuracy (module docstring); ``chunk`` rows of similarities
    (chunk x N) at a time, never the N x N matrix."""
    import numpy as np

    f, y = _as_arrays(features, labels)
    keep = stratified_subsample(y, max_images, seed)
    f, y = f[keep], y[keep]
    n = len(y)
    if n < 2:
        raise ValueError("k-NN leave-one-out needs at least two samples")
    f = (f - f.mean(axis=0)) / np.maximum(f.std(axis=0), _EPS)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), _EPS)
    k = min(k, n - 1)
    num_classes = int(y.max()) + 1
    correct = 0
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        sims = f[rows] @ f.T
        sims[np.arange(len(rows)), rows] = -np.inf  # leave the image itself out
        near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(rows), num_classes))
        # cosine in [-1, 1] -> a weight > 0: a neighbour pointing exactly the other way
        # (two images of a class, standardised) still votes for its class, however little
        weights = np.maximum(np.take_along_axis(sims, near, axis=1) + 1.0, _EPS)
        np.add.at(votes, (np.repeat(np.arange(len(rows)), k), y[near].ravel()), weights.ravel())
        correct += int((votes.argmax(axis=1) == y[rows]).sum())
    return correct / n
