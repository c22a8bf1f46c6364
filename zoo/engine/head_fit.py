"""How auto scores a cheap candidate: its head fitted the way the candidate's plan fits
it when it is registered, on each fold of the cross-validation and on the trials' inner
split (``search.py``).

Two ways, one per kind of feature phase (``Phase.fit``):

- ``"lbfgs"`` (the multi-stage probe): standardised features, then the L2 logistic
  regression of :func:`zoo.engine.evidence.cv_head`, fitted to convergence.
- ``"passes"`` (the linear probe): a fresh linear head trained by the recipe's optimizer
  (AdamW, weight decay on the weight only), batch size, warm-up + cosine schedule and
  label-smoothed loss, for the phase's passes at its learning rate, on the raw cached
  features: what ``FeaturePhase`` registers. The heads of all the folds train at once
  (one batched product per step, each head's own rows and loss): each pass splits a
  head's seeded permutation of its rows into the same number of near-equal batches of
  at most the batch size, so that every head takes the same steps (``FeaturePhase``
  fills batches of exactly the batch size and leaves the remainder last).

Before 2026-12-07 every cheap candidate was scored with the regression, so the probe the
CV compared against was not the probe that is registered (docs/protocol.md, "Changes").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
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
        import numpy as np

        x = np.concatenate([x_train, x_test])
        y = np.concatenate([y_train, np.zeros(len(x_test), dtype=y_train.dtype)])
        n = len(x_train)
        return self.predict_folds(x, y, [(np.arange(n), np.arange(n, len(x)))])[0]

    def predict_folds(self, x: Any, y: Any, splits: Sequence[tuple[Any, Any]]) -> list[Any]:
        """One head per (training rows, held-out rows) of ``splits``, each fitted on its
        training rows of ``x``, ``y``: the labels each predicts for its held-out rows."""
        if self.kind == "lbfgs":
            out = []
            for a, b in splits:
                with warnings.catch_warnings(), small_fit_threads(len(a), x.shape[1]):
                    warnings.simplefilter("ignore")  # sklearn's convergence notes
                    out.append(cv_head().fit(x[a], y[a]).predict(x[b]))
            return out
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # measured: one thread 15 CPU-s, the pool 65, on a busy machine
        try:
            return self._passes(torch, x, y, splits)
        finally:
            torch.set_num_threads(threads)

    def _passes(self, torch: Any, x: Any, y: Any, splits: Sequence[tuple[Any, Any]]) -> list[Any]:
        """Every split's head at once: weights stacked along a first axis of one per
        split, so one batched product and one optimizer step train them all; AdamW and
        SGD act element by element and the loss is a sum of each head's own mean, so a
        head's updates depend on its own rows and loss alone. Each pass of a head splits its own
        seeded permutation of its rows into the same number of batches of at most the
        batch size (near-equal sizes), so that every head takes the same steps."""
        import torch.nn.functional as nnf

        xs = torch.as_tensor(x, dtype=torch.float32)
        ys = torch.as_tensor(y, dtype=torch.long)
        heads, (dim, classes) = len(splits), (xs.shape[1], int(ys.max()) + 1)
        rows = [torch.as_tensor(a, dtype=torch.long) for a, _ in splits]
        per_pass = max(1, math.ceil(max(len(r) for r in rows) / self.batch_size))
        gen = torch.Generator().manual_seed(self.seed)
        bound = 1 / math.sqrt(dim)  # nn.Linear's own initialisation
        weight = (torch.rand(heads, dim, classes, generator=gen) * 2 - 1) * bound
        bias = (torch.rand(heads, classes, generator=gen) * 2 - 1) * bound
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        groups = [
            {"params": [weight], "weight_decay": self.weight_decay},
            {"params": [bias], "weight_decay": 0.0},
        ]
        if self.optimizer == "sgd":
            opt: Any = torch.optim.SGD(
                groups, lr=self.lr, momentum=self.momentum, nesterov=self.momentum > 0
            )
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr)
        schedule = warmup_cosine(opt, self.passes * per_pass, int(self.warmup_epochs * per_pass))
        # where each of a head's n rows goes in a pass: torch.tensor_split's layout into
        # per_pass near-equal batches (the first n % per_pass one row longer)
        width = max(math.ceil(len(r) / per_pass) for r in rows)
        places = [_places(torch, len(r), per_pass) for r in rows]
        mask = torch.zeros(heads, per_pass, width)
        for h, (batch, slot) in enumerate(places):
            mask[h, batch, slot] = 1.0
        for p in range(self.passes):
            gen.manual_seed(epoch_seed(self.seed, p))
            index = torch.zeros(heads, per_pass, width, dtype=torch.long)
            for h, (r, (batch, slot)) in enumerate(zip(rows, places, strict=True)):
                index[h, batch, slot] = r[torch.randperm(len(r), generator=gen)]
            for step in range(per_pass):
                chosen, weights = index[:, step], mask[:, step]
                logits = torch.baddbmm(bias[:, None, :], xs[chosen], weight)
                each = nnf.cross_entropy(
                    logits.reshape(-1, classes),
                    ys[chosen].reshape(-1),
                    reduction="none",
                    label_smoothing=self.label_smoothing,
                ).reshape(heads, width)
                loss = ((each * weights).sum(1) / weights.sum(1).clamp(min=1)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
        with torch.no_grad():
            return [
                (xs[torch.as_tensor(b, dtype=torch.long)] @ weight[h] + bias[h]).argmax(1).numpy()
                for h, (_, b) in enumerate(splits)
            ]


def _places(torch: Any, n: int, parts: int) -> tuple[Any, Any]:
    """(batch, slot) of each of ``n`` positions split into ``parts`` near-equal batches as
    ``torch.tensor_split`` splits them: the first ``n % parts`` batches one longer."""
    j = torch.arange(n)
    short, extra = divmod(n, parts)
    cut = extra * (short + 1)  # positions in the longer batches come first
    batch = torch.where(j < cut, j // (short + 1), extra + (j - cut) // max(short, 1))
    slot = torch.where(j < cut, j % (short + 1), (j - cut) % max(short, 1))
    return batch, slot


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
