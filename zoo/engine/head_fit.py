"""How auto scores a cheap candidate: its head fitted the way the candidate's plan fits
it when it is registered, on each fold of the cross-validation and on the trials' inner
split (``search.py``).

Two ways, one per kind of feature phase (``Phase.fit``):

- ``"lbfgs"`` (the multi-stage probe): standardised features, then the L2 logistic
  regression of :func:`zoo.engine.evidence.cv_head`, fitted to convergence.
- ``"passes"`` (the linear probe): a fresh linear head trained by the recipe's optimizer
  (AdamW, weight decay on the weight only), batch size, warm-up + cosine schedule and
  label-smoothed loss, for the phase's passes at its learning rate, on the raw cached
  features: what ``FeaturePhase`` registers, seeded per pass the same way.

Before 2026-12-07 every cheap candidate was scored with the regression, so the probe the
CV compared against was not the probe that is registered (docs/protocol.md, "Changes").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.contract.types import TrainingPlan
from zoo.engine.evidence import cv_head, small_fit_threads
from zoo.engine.optimize import warmup_cosine
from zoo.engine.seeding import epoch_seed

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.recipe import Recipe

__all__ = ["HeadFit", "head_fit"]


@dataclass(frozen=True)
class HeadFit:
    """How one cheap candidate's head is fitted: ``kind`` "lbfgs" or "passes" (then the
    recipe's figures below)."""

    kind: str
    passes: int = 0
    lr: float = 0.0
    batch_size: int = 32
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.0
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    seed: int = 0

    @property
    def label(self) -> str:
        if self.kind == "lbfgs":
            return "L2 logistic regression (L-BFGS)"
        return f"{self.optimizer}, {self.passes} passes, lr {self.lr:g}"

    def predict(self, x_train: Any, y_train: Any, x_test: Any) -> Any:
        """Fit on (``x_train``, ``y_train``), NumPy arrays; the labels predicted for
        ``x_test``."""
        if self.kind == "lbfgs":
            with warnings.catch_warnings(), small_fit_threads(*x_train.shape):
                warnings.simplefilter("ignore")  # sklearn's convergence notes
                return cv_head().fit(x_train, y_train).predict(x_test)
        return self._passes(x_train, y_train, x_test)

    def _passes(self, x_train: Any, y_train: Any, x_test: Any) -> Any:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a head this small: the pool costs more than it gives
        try:
            with torch.random.fork_rng(devices=[]):  # the run's own RNG stays as it was
                return self._train(torch, x_train, y_train, x_test)
        finally:
            torch.set_num_threads(threads)

    def _train(self, torch: Any, x_train: Any, y_train: Any, x_test: Any) -> Any:
        x = torch.as_tensor(x_train, dtype=torch.float32)
        y = torch.as_tensor(y_train, dtype=torch.long)
        classes = int(y.max()) + 1
        torch.manual_seed(self.seed)
        head = torch.nn.Linear(x.shape[1], classes)
        groups = [
            {"params": [head.weight], "weight_decay": self.weight_decay},
            {"params": [head.bias], "weight_decay": 0.0},
        ]
        if self.optimizer == "sgd":
            opt: Any = torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, nesterov=self.momentum > 0
            )
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr)
        per_pass = max(1, math.ceil(len(x) / self.batch_size))
        steps = self.passes * per_pass
        schedule = warmup_cosine(opt, steps, int(self.warmup_epochs * per_pass))
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        for p in range(self.passes):
            torch.manual_seed(epoch_seed(self.seed, p))
            order = torch.randperm(len(x))
            for s in range(0, len(order), self.batch_size):
                b = order[s : s + self.batch_size]
                loss = loss_fn(head(x[b]), y[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
        with torch.no_grad():
            return head(torch.as_tensor(x_test, dtype=torch.float32)).argmax(1).numpy()


def head_fit(plan: TrainingPlan | None, recipe: Recipe) -> HeadFit:
    """How ``plan`` fits its head, when it is one feature phase of the classifier's input
    fitted by passes; the regression otherwise (the multi-stage probe's L-BFGS fit, and
    any candidate whose plan cannot be read here)."""
    phases = plan.phases if plan is not None else ()
    phase = phases[0] if len(phases) == 1 else None
    if phase is None or not phase.head_on_features or phase.fit != "passes":
        return HeadFit("lbfgs")
    if phase.features != "head":
        return HeadFit("lbfgs")
    return HeadFit(
        "passes",
        passes=phase.epochs,
        lr=phase.lr,
        batch_size=recipe.batch_size,
        optimizer=recipe.optimizer,
        weight_decay=recipe.weight_decay,
        momentum=recipe.momentum,
        warmup_epochs=recipe.warmup_epochs,
        label_smoothing=recipe.label_smoothing,
        seed=recipe.seed,
    )
