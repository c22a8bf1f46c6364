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


# ----------------------------------------- edges the estimators must hold (issue 24)
# Mutation testing (docs/testing.md) found LogME's per-class averaging, its stopping rule,
# H-score's shrinkage, NCE's P(z) with source classes never predicted, and the float64
# promise (module docstring) unchecked by the tests above.


def _best_direct_evidence(f: np.ndarray, y: np.ndarray) -> float:
    """max over (alpha, beta) of the direct evidence, by a general-purpose optimiser."""
    from scipy.optimize import minimize

    found = minimize(
        lambda p: -_direct_evidence(f, y, math.exp(p[0]), math.exp(p[1])),
        [0.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000},
    )
    return float(-found.fun)


@pytest.mark.parametrize(("n", "d", "seed"), [(60, 4, 5), (15, 12, 0)])
def test_logme_is_the_per_sample_maximum_evidence_averaged_over_the_classes(n, d, seed) -> None:
    # three classes (a one-hot target each); (15, 12): targets close to the features' span
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    f = rng.normal(size=(n, d)) + np.eye(3)[y] @ rng.normal(size=(3, d))
    best = [_best_direct_evidence(f, (y == k).astype(float)) / n for k in range(3)]
    assert logme(f, y) == pytest.approx(float(np.mean(best)), rel=1e-8)


def test_logme_evidence_stops_at_its_fixed_point_within_the_default_tolerance() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 5))
    y = (f @ rng.normal(size=5) > 0).astype(float)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    z = u.T @ y
    args = (s**2, z, float(y @ y - z @ z), 40, 5)
    tight = logme_evidence(*args, iterations=1000, tol=1e-14)
    default = logme_evidence(*args)
    assert default == pytest.approx(tight, rel=1e-5)
    # converged well before the cap: a higher cap changes nothing (it stopped, not capped)
    assert logme_evidence(*args, iterations=1000) == default


def test_hscore_shrinks_the_covariance_towards_its_mean_eigenvalue() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, size=50)
    f = rng.normal(size=(50, 4)) * [1.0, 3.0, 0.5, 2.0] + y[:, None]
    centred = f - f.mean(0)
    cov = np.cov(centred.T, bias=True)
    between = np.cov(np.stack([centred[y == k].mean(0) for k in y]).T, bias=True)
    for shrinkage in (0.3, 1e-3):
        shrunk = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / 4 * np.eye(4)
        expected = np.trace(np.linalg.solve(shrunk, between))
        assert hscore(f, y, shrinkage=shrinkage) == pytest.approx(expected, rel=1e-9)
    assert hscore(f, y) == hscore(f, y, shrinkage=1e-3)  # docs/rank.md: shrunk by 1e-3


# seven images, four source classes (the last never has any probability), two labels;
# the source model's top-1 is class 0 for three images and class 1 for four
THETA = np.array(
    [
        [0.7, 0.2, 0.1, 0.0],
        [0.6, 0.3, 0.1, 0.0],
        [0.5, 0.4, 0.1, 0.0],
        [0.2, 0.7, 0.1, 0.0],
        [0.1, 0.8, 0.1, 0.0],
        [0.3, 0.6, 0.1, 0.0],
        [0.2, 0.75, 0.05, 0.0],
    ]
)
LABELS = np.array([0, 0, 1, 1, 1, 0, 1])


def test_nce_and_leep_with_source_classes_never_predicted() -> None:
    import warnings

    # NCE: P(z=0)=3/7 with y (0, 0, 1); P(z=1)=4/7 with y (1, 1, 0, 1)
    expected_nce = (
        2 / 7 * math.log(2 / 3)
        + 1 / 7 * math.log(1 / 3)
        + 3 / 7 * math.log(3 / 4)
        + 1 / 7 * math.log(1 / 4)
    )
    joint = np.zeros((4, 2))
    for t, label in zip(THETA, LABELS, strict=True):
        joint[:, label] += t / 7
    pz = joint.sum(1, keepdims=True)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)
    expected_leep = np.mean([math.log(THETA[i] @ cond[:, LABELS[i]]) for i in range(7)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 for the classes no image is given
        assert nce(THETA, LABELS) == pytest.approx(expected_nce, rel=1e-12)
        # (leep adds 1e-12 inside the log, so that a zero probability stays finite)
        assert leep(THETA, LABELS) == pytest.approx(expected_leep, rel=1e-9)


def test_everything_is_float64_whatever_the_input() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 3, size=40)
    f32 = (rng.normal(size=(40, 6)) + y[:, None]).astype(np.float32)
    f64 = f32.astype(np.float64)
    assert logme(f32, y) == logme(f64, y)
    assert hscore(f32, y) == hscore(f64, y)
    assert logme(f64, y.astype(np.float64)) == logme(f64, y)  # labels as floats: classes


def test_features_and_labels_of_other_shapes_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError) as err:
        logme(np.zeros(6), [0, 1, 0, 1, 0, 1])
    assert str(err.value) == "features must be N x D with N labels, got (6,) and (6,)"
    with pytest.raises(ValueError) as err:
        hscore(np.zeros((6, 2)), [0, 1, 0, 1, 0])
    assert str(err.value) == "features must be N x D with N labels, got (6, 2) and (5,)"


def test_the_stopping_rule_is_relative_to_the_precisions_scale() -> None:
    rng = np.random.default_rng(0)
    f0 = rng.normal(size=(40, 5))
    y = (f0 @ rng.normal(size=5) > 0).astype(float)
    for scale in (1e-3, 1.0, 1e3):  # alpha from ~3.6e-5 to ~3.6e7
        u, s, _ = np.linalg.svd(f0 * scale, full_matrices=False)
        z = u.T @ y
        args = (s**2, z, float(y @ y - z @ z), 40, 5)
        _, alpha, beta = logme_evidence(*args)
        _, alpha_star, beta_star = logme_evidence(*args, iterations=1000, tol=1e-14)
        assert alpha == pytest.approx(alpha_star, rel=1e-5), scale
        assert beta == pytest.approx(beta_star, rel=1e-5), scale


# ------------------------------------------------------------- k-NN and its subsample


def _knn_direct(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN as docs/rank.md says it, the slow way: every dimension to zero
    mean and unit variance, rows to unit length, the whole N x N similarity matrix fully
    sorted, and the k most similar other images vote with weight 1 + cosine."""
    f = (x - x.mean(0)) / x.std(0)
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    sims = f @ f.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(y), int(y.max()) + 1))
    for i, row in enumerate(near):
        for j in row:
            votes[i, y[j]] += 1 + sims[i, j]
    return float(np.mean(votes.argmax(axis=1) == y))


def test_knn_is_the_direct_leave_one_out_vote_on_small_problems() -> None:
    from zoo.choose.transferability import knn_accuracy

    for seed in range(40):  # 3 to 24 images, 2 to 4 classes, k up to every other image
        rng = np.random.default_rng(seed)
        n, classes = int(rng.integers(3, 25)), int(rng.integers(2, 5))
        y = np.arange(n) % classes
        x = rng.normal(size=(n, 4)) + np.eye(classes, 4)[y] * rng.uniform(0, 3)
        for k in (1, 2, 3, 5, 8):
            expected = _knn_direct(x, y, min(k, n - 1))
            assert knn_accuracy(x, y, k=k) == expected, (seed, k)
            assert knn_accuracy(x, y, k=k, chunk=2) == expected, (seed, k)


def test_knn_is_the_direct_vote_on_600_images() -> None:
    from zoo.choose.transferability import knn_accuracy

    # rows this long are partitioned another way by NumPy than the small ones above
    rng = np.random.default_rng(0)
    y = np.arange(600) % 3
    x = rng.normal(size=(600, 4)) + np.eye(3, 4)[y]
    for k in (1, 2, 5):
        assert knn_accuracy(x, y, k=k, chunk=256) == _knn_direct(x, y, k), k


def test_knn_standardises_each_dimension_first() -> None:
    from zoo.choose.transferability import knn_accuracy

    rng = np.random.default_rng(8)
    y = np.repeat(np.arange(3), 10)
    x = rng.normal(size=(30, 5)) + np.eye(3, 5)[y] * 1.5
    expected = knn_accuracy(x, y)
    assert 0.3 < expected < 1.0
    # a shift or a scale of any dimension changes nothing
    assert knn_accuracy(x + np.array([100.0, -50.0, 3.0, 0.0, 7.0]), y) == expected
    assert knn_accuracy(x * [1000.0, 1.0, 0.01, 5.0, 1.0], y) == expected
    assert knn_accuracy(x, y.astype(np.float64)) == expected  # labels as floats: classes


def test_knn_needs_two_images_and_scores_its_seeded_subsample() -> None:
    from zoo.choose.transferability import knn_accuracy, stratified_subsample

    assert knn_accuracy([[0.0, 1.0], [1.0, 0.0]], [0, 0]) == 1.0  # two: each the other's
    with pytest.raises(ValueError) as err:
        knn_accuracy([[0.0, 1.0]], [0])
    assert str(err.value) == "k-NN leave-one-out needs at least two samples"
    rng = np.random.default_rng(9)
    y = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 4)) + np.eye(3, 4)[y]
    for seed in (0, 5):
        keep = stratified_subsample(y, 20, seed)
        expected = _knn_direct(x[keep], y[keep], 5)
        assert knn_accuracy(x, y, max_images=20, seed=seed) == expected, seed
    assert knn_accuracy(x, y, max_images=20) == knn_accuracy(x, y, max_images=20, seed=0)


def test_the_subsample_rounds_by_largest_remainders_within_each_class() -> None:
    from zoo.choose.transferability import stratified_subsample

    # shares of 10: 4.95, 2.97, 1.98, 0.099 -> floors 4, 2, 1, at least 1 = 8; the two
    # largest remainders (class 2's, then class 1's) take the last two
    y = np.repeat([0, 1, 2, 3], [50, 30, 20, 1])
    keep = stratified_subsample(y, 10)
    assert np.bincount(y[keep]).tolist() == [4, 3, 2, 1]
    assert np.array_equal(keep, stratified_subsample(y, 10, seed=0))  # docs: seed 0
    # the largest remainder's class has no image left: the next one takes it
    full = np.repeat([0, 1, 2], [1, 2, 7])
    assert np.bincount(full[stratified_subsample(full, 9)]).tolist() == [1, 2, 6]
    # equal remainders: the classes in label order. 40 classes of 6 and 5 images, 110 of
    # 220: 3 and 2.5 each, floors 100; the first ten classes of 5 images take the rest
    y = np.repeat(np.arange(40), np.tile([6, 5], 20))
    taken = np.bincount(y[stratified_subsample(y, 110)]).tolist()
    assert taken == [3] * 21 + [2, 3] * 9 + [2]
