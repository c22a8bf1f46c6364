"""zoo metric plugins: the transferability estimators `zoo rank` and `--strategy auto` use.

LogME, H-score and k-NN score the pooled features; NCE and LEEP score the source model's
classifier probabilities (``needs_source``). The maths lives in ``zoo.choose.transferability``
(tested against the definitions); each metric here is its registration, written only
against zoo's public API exactly as a third-party metric would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zoo

__all__ = ["METRICS", "register_metrics"]


@dataclass(frozen=True)
class _Metric:
    name: str
    summary: str
    function: Callable[[Any, Any], float]
    needs_source: bool = False  # scores the source classifier's probabilities

    def score(self, *, features: Any, labels: Any, source_probs: Any = None) -> float:
        return float(self.function(source_probs if self.needs_source else features, labels))


METRICS = (
    _Metric(
        "logme", "LogME: evidence of a linear model on the features (You et al. 2021)", zoo.logme
    ),
    _Metric(
        "knn",
        "k-NN: leave-one-out accuracy of the 5 nearest images (cosine on standardised "
        "features; a stratified subsample of at most 10k)",
        zoo.knn_accuracy,
    ),
    _Metric(
        "hscore",
        "H-score: between-class over total feature covariance (Bao et al. 2019)",
        zoo.hscore,
    ),
    _Metric("nce", "NCE: -H(target | source top-1 label) (Tran et al. 2019)", zoo.nce, True),
    _Metric(
        "leep",
        "LEEP: target likelihood through the source classifier (Nguyen et al. 2020)",
        zoo.leep,
        True,
    ),
)


@zoo.hookimpl
def register_metrics(register: Any) -> None:
    for metric in METRICS:
        register(metric)
