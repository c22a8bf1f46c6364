"""The search behind a choosing strategy (``--strategy auto``): score the candidates it
offers, on the training split alone, within a time budget, and plan the simplest one
that the evidence does not rule out.

- **cheap** candidates (a head on cached features) are scored by repeated stratified
  k-fold cross-validation of a standardised L2 logistic regression on the training images
  (k = ``AUTO_FOLDS``, fewer when a class has fewer images; ``AUTO_REPEATS`` different
  shuffles; seeded by the recipe), all on the same folds.
- **trial** candidates (stages that train on images) train for their own epochs on an
  inner split of the training images and are scored on its hold-out; the cheap winner,
  refitted on the same inner split, is scored on the same hold-out images.
- the first candidate (the linear probe) is the baseline and is kept unless a richer one
  beats it **with evidence** (``evidence.py``): one-sided tests at ``AUTO_ALPHA`` shared
  (Bonferroni) by every challenger offered; a cheap challenger by the corrected
  repeated k-fold t-test over the folds, a trial against the cheap winner by McNemar's exact
  test on the hold-out. Among several that pass, the best score wins.
- each candidate's cost is estimated before it runs; one that does not fit in what is
  left of ``--budget`` is skipped and listed with why. The linear probe is always scored:
  it is the baseline and what auto trains when nothing else could be scored.

Validation and test images are never looked at: the reported figures stay unbiased.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.contract.types import Candidate, StrategySettings, TrainingPlan, TrainingSummary
from zoo.engine import model as build
from zoo.engine.evidence import (
    AUTO_ALPHA,
    AUTO_FOLDS,
    AUTO_REPEATS,
    corrected_t_p,
    cv_accuracy,
    cv_scores,
    mcnemar_p,
    per_test_alpha,
)
from zoo.engine.head_fit import HeadFit, head_fit

if TYPE_CHECKING:  # pragma: no cover
    from zoo.engine.state import RunState

__all__ = [
    "AUTO_ALPHA",
    "AUTO_FOLDS",
    "AUTO_HOLDOUT",
    "AUTO_REPEATS",
    "TRAIN_STEP_COST",
    "Outcome",
    "cv_accuracy",
    "cv_scores",
    "search",
]

# Development constants (docs/strategies.md "auto"; set before any evaluation figure;
# AUTO_FOLDS and AUTO_REPEATS are evidence.py's).
AUTO_HOLDOUT = 0.2  # the inner hold-out's share of the training images (trials)
TRAIN_STEP_COST = 3.0  # a training step ~ forward + backward ~ three forward passes


@dataclass
class Outcome:
    """One row of the comparison table."""

    candidate: Candidate
    how: str = ""  # "5-fold CV x10", "inner hold-out (64)", "skipped", "would try"
    score: float | None = None
    note: str = ""
    chosen: bool = False
    folds: list[float] = field(default_factory=list)  # per-fold accuracies, every repeat
    head: HeadFit | None = None  # how a cheap candidate's head was fitted on each fold
    p: float | None = None  # the one-sided p-value against what it challenged

    @property
    def label(self) -> str:
        return self.candidate.label or self.candidate.strategy

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"candidate": self.label, "strategy": self.candidate.strategy}
        out["how"] = self.how
        out |= {"score": None if self.score is None else round(self.score, 4)}
        out |= {"p": None if self.p is None else round(self.p, 4)}
        if self.head is not None:
            out["head"] = self.head.label
        return out | {"note": self.note, "chosen": self.chosen}


@dataclass
class _Search:
    state: RunState
    summary: TrainingSummary
    budget: float | None
    started: float = field(default_factory=time.monotonic)
    seconds_per_image: float = 0.0
    stage_features_ready: bool = False
    probe_cv_seconds: float = 0.0

    def left(self) -> float:
        if self.budget is None:
            return float("inf")
        return self.budget - (time.monotonic() - self.started)

    def fits(self, outcome: Outcome, needs: float, reserved: float = 0.0) -> bool:
        """Whether ``needs`` seconds fit in what is left (less ``reserved``); if not, the
        outcome says it was skipped and why."""
        left = self.left() - reserved
        if needs <= left:
            return True
        outcome.how = "skipped"
        outcome.note = f"needs ~{_secs(needs)}, {_secs(max(0.0, left))} of budget left"
        return False


def _secs(s: float) -> str:
    return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"


def _features(s: _Search, cand: Candidate) -> tuple[Any, Any]:
    """The candidate's training-split features (blocks concatenated) and labels; a block
    equal to the one before it is taken once (the head's input is the last stage's
    output in timm's EfficientNets), as the multi-stage probe registers it."""
    import numpy as np

    assert s.summary.features is not None
    blocks: list[Any] = []
    labels = None
    for stage in cand.features:
        x, labels = s.summary.features(stage)
        block = x.float().numpy()
        if not (blocks and blocks[-1].shape == block.shape and np.array_equal(blocks[-1], block)):
            blocks.append(block)
    if any(stage is not None for stage in cand.features):
        s.stage_features_ready = True
    assert labels is not None
    return np.hstack(blocks), labels.numpy()


def _time_forward(state: RunState) -> float:
    """Seconds per image of one forward pass, measured on up to 8 training images."""
    import torch

    from zoo.data import ImageSamples

    samples = ImageSamples(state.data, state.split.train[:8], state.pre, train=False)
    x = torch.stack([samples[i][0] for i in range(len(samples))])
    x = state.rt.prepare(state.pre.normalize(x))
    model = state.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), state.rt.autocast()():
            model(x)  # warm-up
            t0 = time.monotonic()
            model(x)
            return (time.monotonic() - t0) / len(x)
    finally:
        model.train(was_training)


def _cheap_cost(s: _Search, cand: Candidate) -> float:
    fill = 0.0
    if any(stage is not None for stage in cand.features) and not s.stage_features_ready:
        fill = len(s.state.data.samples) * s.seconds_per_image  # one pass fills every stage
    return fill + s.probe_cv_seconds * len(cand.features)


def _trial_cost(
    s: _Search, cand: Candidate, plan: TrainingPlan, n_train: int, n_hold: int
) -> float:
    epochs = sum(p.epochs for p in plan.phases if not p.head_on_features)
    fill = len(s.state.data.samples)  # the frozen prefix cached once (an upper bound)
    images = fill + epochs * n_train * TRAIN_STEP_COST + n_hold
    return images * s.seconds_per_image


def _fire(state: RunState, out: Outcome, rows: Sequence[int]) -> None:
    labels = [state.data.samples[i].label for i in rows]
    for callback in state.callbacks:
        callback.on_candidate(state, out.label, list(rows), labels)


def search(
    state: RunState,
    strategy: Any,
    settings: StrategySettings,
    summary: TrainingSummary,
    *,
    trials: bool = True,
) -> TrainingPlan:
    """Score ``strategy.candidates(...)`` on the training split and plan the best one.
    ``trials=False`` (``--dry-run``) scores only the cheap candidates and lists the
    trials it would run, with their estimated cost."""
    from zoo.contract.plugins import get_plugin_manager

    budget = settings.options.get("budget")
    s = _Search(state, summary, None if budget is None else float(budget))
    # several backbones (zoo/catalog/composite.py): one per branch, their features side by side
    parents = len(getattr(state.backbone, "branch_sha256", None) or ()) or 1
    cands = list(strategy.candidates(state.names, settings, summary, parents=parents))
    if not cands or cands[0].cost != "cheap":
        raise UsageError(f"strategy '{strategy.name}' must offer a cheap candidate first")
    installed = get_plugin_manager().strategies()
    rows = list(state.split.train)
    seed = state.recipe.seed
    s.seconds_per_image = _time_forward(state)
    table = [Outcome(c) for c in cands]
    alpha = per_test_alpha(len(table) - 1)  # shared by every challenger offered
    cheap = [o for o in table if o.candidate.cost == "cheap"]
    k = _score_cheap(s, cheap, rows, seed, installed)
    winner, reason, fallback = _cheap_winner(cheap, installed, alpha, k, len(rows))
    chosen = winner
    tried = [o for o in table if o.candidate.cost != "cheap"]
    if tried:
        from zoo.engine.trial import hold_out, run_trial

        split = hold_out(state, rows, seed, AUTO_HOLDOUT)
        base: list[bool] | None = None
        planned = 0.0
        for out in tried:
            cand = out.candidate
            if cand.strategy not in installed:
                out.how, out.note = "skipped", f"no strategy '{cand.strategy}' is installed"
                continue
            if split is None:
                out.how, out.note = "skipped", "too few training images per class to hold out"
                continue
            inner, held = split
            plan = installed[cand.strategy].plan(state.names, cand.settings)
            build.validate_plan(plan, state.names, cand.strategy)
            needs = _trial_cost(s, cand, plan, len(inner), len(held))
            if not trials:  # a dry run: what a run would try, within the same budget
                if s.fits(out, needs, planned):
                    out.how, out.note = "would try", f"needs ~{_secs(needs)}"
                    planned += needs
                continue
            if base is None:  # the cheap winner, refitted on the same inner split
                base = _refit_right(s, winner, rows, inner, held)
            if not s.fits(out, needs):
                continue
            _fire(state, out, [*inner, *held])
            state.note(
                f"auto: trying {out.label} on {len(inner)} of the training images, scored on "
                f"the other {len(held)} (estimated ~{_secs(needs)})"
            )
            right = run_trial(state, plan, inner, held)
            out.score = sum(right) / len(right)
            out.how = f"inner hold-out ({len(held)})"
            out.p = mcnemar_p(right, base)
            base_score = sum(base) / len(base)
            out.note = f"{winner.label} there: {base_score:.3f}; {_verdict(out.p, alpha)}"
            if out.p < alpha and (chosen is winner or out.score > (chosen.score or 0.0)):
                chosen = out
                reason = (
                    f"chosen by an inner hold-out of {len(held)} of the {len(rows)} training "
                    f"images: {out.score:.3f} against {winner.label}'s {base_score:.3f}, "
                    f"McNemar p = {out.p:.4f} < {alpha:.4f}"
                )
    chosen.chosen = True
    _report(state, table, reason, fallback)
    cand = chosen.candidate
    inner_plan = installed[cand.strategy].plan(state.names, cand.settings)
    build.validate_plan(inner_plan, state.names, cand.strategy)
    evidence: dict[str, Any] = {"train_images": len(rows), "folds": k}
    evidence["seconds_per_image"] = round(s.seconds_per_image, 5)
    evidence["alpha"] = round(alpha, 5)
    for out in table:
        key = out.label.replace(" ", "").replace("=", "")
        if out.score is not None:
            kind = "cv" if out.candidate.cost == "cheap" else "holdout"
            evidence[f"{kind}.{key}"] = round(out.score, 4)
        if out.p is not None:
            evidence[f"p.{key}"] = round(out.p, 5)
    return TrainingPlan(
        strategy.name,
        inner_plan.phases,
        {
            "decision": cand.strategy,
            "reason": reason if not fallback else f"{reason}; {fallback}",
            "evidence": evidence,
            "search": [o.to_dict() for o in table],
            **inner_plan.settings,
        },
    )


def _score_cheap(
    s: _Search, cheap: list[Outcome], rows: list[int], seed: int, installed: dict[str, Any]
) -> int:
    """Repeated k-fold CV of each cheap candidate (the baseline always; the others as the budget
    allows), on the same folds, each fold fitting the head as the candidate's plan fits it
    (head_fit.py); returns k (0 when nothing could be cross-validated)."""
    k = 0
    for i, out in enumerate(cheap):
        if i > 0 and not s.fits(out, _cheap_cost(s, out.candidate)):
            continue
        t0 = time.monotonic()
        x, y = _features(s, out.candidate)
        _fire(s.state, out, rows)
        strategy = installed.get(out.candidate.strategy)
        plan = strategy.plan(s.state.names, out.candidate.settings) if strategy else None
        out.head = head_fit(plan, s.state.recipe)
        scored = cv_scores(x, y, seed, fit_folds=out.head.predict_folds)
        if i == 0:
            s.probe_cv_seconds = time.monotonic() - t0
        if scored is None:
            out.how, out.note = "not scored", "a class has fewer than 2 training images"
            continue
        out.folds, k = scored
        out.score = sum(out.folds) / len(out.folds)
        out.how = f"{k}-fold CV x{AUTO_REPEATS}"
    return k


def _cv(k: int) -> str:
    return f"{k}-fold CV repeated {AUTO_REPEATS} times"


def _verdict(p: float, alpha: float) -> str:
    return f"p = {p:.4f} {'<' if p < alpha else '>='} {alpha:.4f}"


def _cheap_winner(
    cheap: list[Outcome], installed: dict[str, Any], alpha: float, k: int, n: int
) -> tuple[Outcome, str, str]:
    """The baseline (the first cheap candidate) unless another beats it over the same
    folds with p < ``alpha``; among several that do, the best mean. Returns the winner,
    the reason and, when the best is not installed here, what was trained instead."""
    base = cheap[0]
    passing: list[Outcome] = []
    for out in cheap[1:]:
        if out.score is None or not base.folds:
            continue
        out.p = corrected_t_p(out.folds, base.folds, 1 / (k - 1))
        out.note = f"against {base.label}: {_verdict(out.p, alpha)}"
        if out.p < alpha:
            passing.append(out)
    best = max(passing, key=lambda o: o.score or 0.0, default=base)  # first wins ties
    winner, fallback = best, ""
    if best.candidate.strategy not in installed:
        runnable = [o for o in passing if o.candidate.strategy in installed] or [base]
        winner = max(runnable, key=lambda o: o.score or 0.0)
        fallback = (
            f"{best.label} scored best ({best.score:.3f}) but no strategy '{best.label}' is "
            f"installed here; training the best installed candidate, {winner.label}"
        )
    if not k:
        reason = "the baseline: no candidate could be cross-validated"
    elif winner is base:
        reason = (
            f"the baseline, kept: no richer candidate beat it with evidence ({_cv(k)} on the "
            f"{n} training images, one-sided tests at {alpha:.4f} each)"
        )
    else:
        reason = (
            f"chosen by {_cv(k)} on the {n} training images: {winner.score:.3f} against "
            f"{base.label}'s {base.score:.3f}, corrected t-test p = {winner.p:.4f} < {alpha:.4f}"
        )
    return winner, reason, fallback


def _refit_right(
    s: _Search, winner: Outcome, rows: list[int], inner: list[int], held: list[int]
) -> list[bool]:
    """The cheap winner fitted on the inner split as its CV fitted it: right or wrong on
    each hold-out image, in ``held``'s order."""
    import numpy as np

    x, y = _features(s, winner.candidate)
    where = {r: i for i, r in enumerate(rows)}
    a = np.array([where[r] for r in inner])
    b = np.array([where[r] for r in held])
    fit = winner.head or HeadFit("lbfgs")
    return [bool(v) for v in fit.predict(x[a], y[a], x[b]) == y[b]]


def _report(state: RunState, table: list[Outcome], reason: str, fallback: str) -> None:
    width = max(len(o.label) for o in table)
    state.note(f"auto compared {len(table)} candidate(s) on the training split only:")
    for o in table:
        score = "" if o.score is None else f"{o.score:.3f}"
        mark = "  <- chosen" if o.chosen else ""
        note = f"  ({o.note})" if o.note else ""
        state.note(f"  {o.label:<{width}}  {o.how:<22} {score:>5}{mark}{note}")
    heads = [f"{o.label}: {o.head.label}" for o in table if o.head is not None]
    if heads:
        state.note(f"  (each head fitted on the folds as it registers: {'; '.join(heads)})")
    state.note(reason)
    if fallback:
        state.note(fallback)
