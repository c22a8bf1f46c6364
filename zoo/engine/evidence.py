"""When is one candidate better than a simpler one, on the training split alone?

``auto`` (``search.py``) keeps the simplest candidate (the one its strategy offers first:
the linear probe) unless a richer one beats it *with evidence*: a one-sided test at
level ``AUTO_ALPHA``, Bonferroni-corrected over the challengers it compares. Two tests,
each the textbook one for how the candidates are scored:

- **k-fold cross-validation** (cheap candidates, the same folds for both): the corrected
  resampled t-test of Nadeau and Bengio (Machine Learning 52, 2003) on the per-fold
  differences. Folds share training images, so the plain t-test's variance is too small;
  the correction multiplies it by ``1/k + n_test/n_train``.
- **one inner hold-out** (trials, both scored on the same images): the exact McNemar test
  (a one-sided binomial test on the images exactly one of the two gets right).

Why tests and not "the higher score wins": the first evaluation (docs/benchmarks.md,
"Choosing, evaluated") found ``auto`` choosing on differences of 2 to 7 images of ~300,
inside the noise, and losing up to 8 points to the probe it passed over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["AUTO_ALPHA", "corrected_t_p", "mcnemar_p", "per_test_alpha"]

AUTO_ALPHA = 0.05  # the conventional level; not tuned on any figure (docs/protocol.md)


def per_test_alpha(challengers: int, alpha: float = AUTO_ALPHA) -> float:
    """Bonferroni: ``alpha`` shared by the ``challengers`` compared with the baseline."""
    return alpha / max(1, challengers)


def corrected_t_p(
    challenger: Sequence[float], baseline: Sequence[float], test_share: float
) -> float:
    """One-sided p-value that ``challenger`` beats ``baseline`` over the same k folds
    (Nadeau-Bengio corrected resampled t-test; ``test_share`` = n_test / n_train of a
    fold, 1/(k-1) for k-fold CV). 1.0 when the mean difference is not positive."""
    from scipy import stats

    k = len(challenger)
    if k != len(baseline) or k < 2:
        raise ValueError("need the same k >= 2 folds for both candidates")
    d = [a - b for a, b in zip(challenger, baseline, strict=True)]
    mean = sum(d) / k
    if mean <= 0:
        return 1.0
    var = sum((x - mean) ** 2 for x in d) / (k - 1)
    if var == 0:
        return 0.0  # the same positive gain on every fold
    t = mean / math.sqrt((1 / k + test_share) * var)
    return float(stats.t.sf(t, k - 1))


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
