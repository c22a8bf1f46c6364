"""The two kinds of phase the loop runs, behind one small interface.

- :class:`FeaturePhase`: only the head trains, on pooled features computed once; its
  passes over the features count as the phase's epochs and end in one record (or, with
  ``Phase.fit = "lbfgs"``, one fit to convergence of the regression auto's CV scores).
- :class:`ImagePhase`: the trainable stages train on images (augmented or not), or on the
  cached output of the frozen prefix when the plan allows it (no augmentation).

Both build their optimizer and schedule when they start and continue a resumed phase
from the checkpoint's optimizer and scheduler state.

Loss, accuracy and the count of non-finite steps add up on the device, step after step,
and are read once at the end of the epoch: no step waits for the host (on a GPU, a
``float(loss)`` per step would stall every step). Under DDP the image phase wraps the
model once, when the phase starts.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import TrainingError
from zoo.contract.types import Phase
from zoo.engine import evaluate
from zoo.engine.batches import image_batches, tensor_batches
from zoo.engine.caches import substituted
from zoo.engine.evidence import cv_classifier, head_threads, small_fit_threads
from zoo.engine.features import classifier, frozen_prefix, head_features, stage_probe
from zoo.engine.optimize import build_optimizer, set_trainable, warmup_cosine
from zoo.engine.seeding import epoch_seed, seed_everything

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from zoo.engine.rows import Rows
    from zoo.engine.state import RunState

__all__ = ["FeaturePhase", "ImagePhase", "fit_lbfgs", "start_phase"]


def _record_groups(state: RunState, optimizer: Any) -> None:
    state.optimizer_groups.append(
        [
            {
                "name": g["name"],
                "stage": g["stage"],
                "lr": g["initial_lr"],
                "weight_decay": g["weight_decay"],
                "params": len(g["params"]),
            }
            for g in optimizer.param_groups
        ]
    )


def _add_step(sums: Any, loss: Any, logits: Any, y: Any) -> None:
    """sums += (loss x n, correct, n, non-finite step), all on the device: no sync."""
    import torch

    d = loss.detach().double()
    sums[0] += d * len(y)
    sums[1] += (logits.detach().argmax(1) == y).sum()
    sums[2] += len(y)
    sums[3] += (~torch.isfinite(d)).double()


def _check_epoch(
    totals: list[float], epoch: int, steps: int, optimizer: Any
) -> tuple[float, float]:
    """(train loss, train accuracy) of the epoch; a non-finite loss stops the run."""
    loss_sum, correct, count, bad = totals
    if bad > 0 or not math.isfinite(loss_sum):
        lr = max(g["initial_lr"] for g in optimizer.param_groups)
        raise TrainingError(
            f"the loss became non-finite ({loss_sum / max(1.0, count)}) in epoch {epoch} "
            f"({bad:.0f} of {steps} steps); the run stopped and nothing was registered. "
            f"Lower the learning rate (was {lr:g}) or check the data"
        )
    return loss_sum / max(1.0, count), correct / max(1.0, count)


class FeaturePhase:
    def __init__(self, state: RunState, phase: Phase) -> None:
        import torch

        self.state, self.phase = state, phase
        self.head = classifier(state)
        self.features: torch.Tensor | Rows  # the multi-stage probe's in memory, else the cache
        if phase.features == "stages":  # the run's model becomes the multi-stage probe
            self.features, self.labels, self.head = stage_probe(state, self.head)
        else:
            self.features, self.labels = head_features(state, self.head)
        set_trainable(state, phase.trainable_at(0))
        self.head.train()
        self.optimizer = build_optimizer(state, phase)
        self.train_rows = torch.tensor(state.split.train, dtype=torch.long)
        bs = state.recipe.batch_size
        steps = phase.epochs * max(1, -(-len(self.train_rows) // bs))
        warmup = int(state.recipe.warmup_epochs * (steps / phase.epochs))
        self.scheduler = warmup_cosine(self.optimizer, steps, warmup)
        _record_groups(state, self.optimizer)

    def units(self, first: int) -> range:
        return range(1) if first == 0 else range(0)

    def train(self, unit: int) -> dict[str, Any]:
        """Every process trains the same head on all the features (no DDP: the passes are
        cheap and identical everywhere, seeded by the epoch)."""
        state, phase = self.state, self.phase
        dev = state.rt.device
        epoch = state.completed + phase.epochs
        t0 = time.monotonic()
        progress = state.progress() if state.dist.main else _Silent()
        # the phase's epochs are one unit (one record, numbered by its last epoch): say
        # which epochs start, not the last one's number
        first = state.completed + 1
        span = f"epoch {epoch}" if first == epoch else f"epochs {first}-{epoch}"
        how = "fitted by L-BFGS" if phase.fit == "lbfgs" else "on cached features"
        progress.start(
            f"{span}/{state.plan.epochs} ({phase.name}, {how})",
            phase.epochs,
            unit="fits" if phase.fit == "lbfgs" else "passes",
        )
        if phase.fit == "lbfgs":  # one fit to convergence; its figures are the fitted head's
            x_train = self.features[self.train_rows].to(dev)
            fit_lbfgs(self.head, x_train, self.labels[self.train_rows].to(dev))
            progress.advance(1)
            progress.finish()
            fitted = self.evaluate(state.split.train)
            train_loss, train_acc = fitted.loss, fitted.accuracy
        else:
            with head_threads(self.features, dev, len(self.train_rows)):
                train_loss, train_acc = self._passes(epoch, progress)
        return {
            "epoch": epoch,
            "phase": phase.name,
            "phase_epoch": phase.epochs,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "lr": phase.lr,
            "seconds": time.monotonic() - t0,
        }

    def _passes(self, epoch: int, progress: Any) -> tuple[float, float]:
        """The phase's passes over the training rows' features, a batch at a time from
        the cache (a head on a million images holds a batch, not the features): (loss,
        accuracy) of the last pass."""
        import torch

        state, phase = self.state, self.phase
        dev, bs = state.rt.device, state.recipe.batch_size
        sums = torch.zeros(4, dtype=torch.float64, device=dev)
        bad = torch.zeros((), dtype=torch.float64, device=dev)
        steps = 0
        for p in range(phase.epochs):
            seed_everything(epoch_seed(state.recipe.seed, state.completed * 1000 + p))
            order = self.train_rows[torch.randperm(len(self.train_rows))]
            bad += sums[3]
            sums.zero_()  # the last pass's figures
            for s in range(0, len(order), bs):
                rows = order[s : s + bs]
                x = self.features[rows].to(dev, non_blocking=True)
                y = self.labels[rows].to(dev, non_blocking=True)
                logits = self.head(x).float()
                loss = state.criterion(logits, y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                _add_step(sums, loss, logits, y)
                steps += 1
            progress.advance(1)
        progress.finish()
        sums[3] += bad
        return _check_epoch(sums.tolist(), epoch, steps, self.optimizer)

    def evaluate(self, indices: Sequence[int]) -> evaluate.Evaluation:
        with head_threads(self.features, self.state.rt.device, len(self.features)):
            return evaluate.on_features(self.state, self.head, self.features, self.labels, indices)


class ImagePhase:
    def __init__(self, state: RunState, phase: Phase, first: int, pending: Any = None) -> None:
        self.state, self.phase = state, phase
        if first == 0 and phase.reinit:
            for i in phase.reinit:
                for module in state.stages[i][1].modules():
                    reset = getattr(module, "reset_parameters", None)
                    if callable(reset):
                        reset()
        self.prefix = frozen_prefix(state, phase)
        set_trainable(state, phase.trainable_at(first))
        self.optimizer = build_optimizer(state, phase)
        per_epoch = self.steps_per_epoch()
        warmup = int(state.recipe.warmup_epochs * per_epoch)
        self.scheduler = warmup_cosine(self.optimizer, phase.epochs * per_epoch, warmup)
        if pending is not None and first > 0 and pending.get("optimizer") is not None:
            self.optimizer.load_state_dict(pending["optimizer"])
            self.scheduler.load_state_dict(dict(pending["scheduler"]))
        _record_groups(state, self.optimizer)
        self.model = self._wrap(first)

    def steps_per_epoch(self) -> int:
        dist, n = self.state.dist, len(self.state.split.train)
        per_rank = self.state.recipe.batch_size // dist.world
        share = math.ceil(n / dist.world)  # each process's (padded) share of the samples
        return max(1, math.ceil(share / per_rank))

    def units(self, first: int) -> range:
        return range(first, self.phase.epochs)

    def _wrap(self, first: int) -> Any:
        """The model, wrapped in DDP under torchrun, once for the whole phase.

        DDP hooks the parameters that require gradients when it is built, so it is built
        while every stage that trains at some epoch of the phase does; when that set
        changes from epoch to epoch (gradual unfreezing) DDP is told that some of them
        may get no gradient. Building it broadcasts rank 0's weights to every process."""
        state, phase = self.state, self.phase
        if state.dist.world <= 1:
            return state.model
        from torch.nn.parallel import DistributedDataParallel

        varies = len({phase.trainable_at(e) for e in range(first, phase.epochs)}) > 1
        set_trainable(state, phase.stages_in_optimizer())
        dev = state.rt.device
        model = DistributedDataParallel(
            state.model,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=varies,
        )
        set_trainable(state, phase.trainable_at(first))
        return model

    def train(self, e: int) -> dict[str, Any]:
        import torch

        state, phase = self.state, self.phase
        g = state.completed + 1
        seed = epoch_seed(state.recipe.seed, g)
        seed_everything(seed)
        set_trainable(state, phase.trainable_at(e))
        model = self.model
        per_rank = state.recipe.batch_size // state.dist.world
        autocast = state.rt.autocast()
        dev = state.rt.device
        progress = state.progress() if state.dist.main else _Silent()
        progress.start(
            f"epoch {g}/{state.plan.epochs} ({phase.name})", self.steps_per_epoch(), unit="steps"
        )
        sums = torch.zeros(4, dtype=torch.float64, device=dev)
        steps = [0]
        seen: set[int] = set()
        labels = torch.tensor(state.data.labels, dtype=torch.long)
        t0 = time.monotonic()

        def step_on(x: Any, y: Any, idx: Any) -> None:
            with autocast():
                logits = model(x)
            logits = logits.float()
            loss = state.criterion(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            _add_step(sums, loss, logits, y)
            seen.update(int(i) for i in idx)
            steps[0] += 1
            progress.advance(1)

        try:
            if self.prefix is not None:
                plan, acts = self.prefix
                rows = torch.tensor(state.split.train, dtype=torch.long)
                c, h, w = state.pre.input_size
                dummy: torch.Tensor | None = None
                with substituted(plan):
                    for b in tensor_batches(len(rows), per_rank, seed, state.dist, True):
                        idx = rows[b]
                        if dummy is None or dummy.shape[0] != len(idx):
                            dummy = torch.zeros(len(idx), c, h, w, device=dev)
                        plan.inject.value = state.rt.prepare(acts[idx].float())
                        step_on(dummy, labels[idx].to(dev, non_blocking=True), idx)
            else:
                loader = image_batches(
                    state,
                    state.split.train,
                    train=phase.augment,
                    batch_size=per_rank,
                    seed=seed,
                    shuffle=True,
                )
                for x_u8, y_cpu, idx in loader:
                    x = state.rt.prepare(state.pre.normalize(x_u8))
                    step_on(x, y_cpu.to(dev, non_blocking=True), idx)
        finally:
            progress.finish()
        # The epoch's one wait for the device: this process's figures (its throughput),
        # then the job's, summed over the processes.
        mine = sums.tolist()
        seconds = time.monotonic() - t0
        totals = state.dist.all_sum(sums).tolist()
        train_loss, train_acc = _check_epoch(totals, g, steps[0], self.optimizer)
        record: dict[str, Any] = {
            "epoch": g,
            "phase": phase.name,
            "phase_epoch": e + 1,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "lr": max(group["lr"] for group in self.optimizer.param_groups),
            "seconds": seconds,
            "images_per_second": totals[2] / seconds if seconds > 0 else 0.0,
        }
        if state.dist.world > 1:
            state.rank_records = state.dist.gather(
                {
                    "rank": state.dist.rank,
                    "epoch": g,
                    "seen": int(mine[2]),
                    "distinct": sorted(seen),
                    "seconds": seconds,
                    "images_per_second": mine[2] / seconds if seconds > 0 else 0.0,
                }
            )
            # the job's time is its slowest process's; each one's throughput is a metric
            record["seconds"] = max(r["seconds"] for r in state.rank_records)
            record["images_per_second"] = totals[2] / max(1e-9, record["seconds"])
            for r in state.rank_records:
                record[f"images_per_second.rank{r['rank']}"] = r["images_per_second"]
        return record

    def evaluate(self, indices: Sequence[int]) -> evaluate.Evaluation:
        if self.prefix is not None:
            return evaluate.on_prefix(self.state, self.prefix, indices)
        return evaluate.on_images(self.state, indices)


class _Silent:
    def start(self, description: str, total: float | None, unit: str = "items") -> None: ...

    def advance(self, amount: float) -> None: ...

    def finish(self) -> None: ...


def fit_lbfgs(head: Any, x: Any, y: Any) -> None:
    """Set ``head`` (an ``nn.Linear``) to :func:`zoo.engine.evidence.cv_classifier`
    fitted on ``x``, ``y``: the model auto's CV scored. A class absent from ``y`` gets a
    zero row and a bias far below the others (never predicted); with two classes the
    regression's one score is the second class's logit (the same probabilities)."""
    import warnings

    import numpy as np
    import torch

    clf = cv_classifier()
    with warnings.catch_warnings(), small_fit_threads(*x.shape):
        warnings.simplefilter("ignore")  # sklearn's convergence notes stay off the terminal
        clf.fit(x.detach().cpu().double().numpy(), y.detach().cpu().numpy())
    coef = np.asarray(clf.coef_, dtype=np.float64)
    bias = np.asarray(clf.intercept_, dtype=np.float64)
    seen = [int(c) for c in clf.classes_]
    if len(seen) == 2 and coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        bias = np.concatenate([[0.0], bias])
    weight = torch.zeros_like(head.weight, dtype=torch.float64, device="cpu")
    b = torch.full_like(head.bias, -1e4, dtype=torch.float64, device="cpu")
    weight[seen] = torch.from_numpy(coef)
    b[seen] = torch.from_numpy(bias)
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight))
        head.bias.copy_(b.to(head.bias))


def start_phase(state: RunState, phase: Phase, first: int, pending: Any = None) -> Any:
    if phase.head_on_features:
        return FeaturePhase(state, phase)
    return ImagePhase(state, phase, first, pending)
