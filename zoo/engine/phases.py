"""The two kinds of phase the loop runs, behind one small interface.

- :class:`FeaturePhase`: only the head trains, on pooled features computed once; its
  passes over the features count as the phase's epochs and end in one record.
- :class:`ImagePhase`: the trainable stages train on images (augmented or not), or on the
  cached output of the frozen prefix when the plan allows it (no augmentation).

Both build their optimizer and schedule when they start and continue a resumed phase
from the checkpoint's optimizer and scheduler state.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from zoo.engine import evaluate
from zoo.engine.batches import image_batches, tensor_batches
from zoo.engine.caches import substituted
from zoo.engine.features import classifier, frozen_prefix, head_features
from zoo.engine.optimize import build_optimizer, check_loss, set_trainable, warmup_cosine
from zoo.engine.seeding import epoch_seed, seed_everything
from zoo.types import Phase

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from zoo.engine.state import RunState

__all__ = ["FeaturePhase", "ImagePhase", "start_phase"]


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


class FeaturePhase:
    def __init__(self, state: RunState, phase: Phase) -> None:
        import torch

        self.state, self.phase = state, phase
        self.head = classifier(state)
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
        import torch

        state, phase = self.state, self.phase
        dev, bs = state.rt.device, state.recipe.batch_size
        x_train = self.features[self.train_rows].to(dev)
        y_train = self.labels[self.train_rows].to(dev)
        epoch = state.completed + phase.epochs
        t0 = time.monotonic()
        progress = state.progress()
        progress.start(
            f"epoch {epoch}/{state.plan.epochs} ({phase.name}, {phase.epochs} passes over "
            "cached features)",
            phase.epochs,
            unit="passes",
        )
        loss_sum, correct, count = 0.0, 0, 0
        for p in range(phase.epochs):
            seed_everything(epoch_seed(state.recipe.seed, state.completed * 1000 + p))
            order = torch.randperm(len(self.train_rows))
            loss_sum, correct, count = 0.0, 0, 0  # the last pass's figures
            for s in range(0, len(order), bs):
                b = order[s : s + bs]
                logits = self.head(x_train[b]).float()
                loss = state.criterion(logits, y_train[b])
                check_loss(loss, state.completed + 1, s // bs, self.optimizer)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.scheduler.step()
                loss_sum += float(loss.detach()) * len(b)
                correct += int((logits.argmax(1) == y_train[b]).sum())
                count += len(b)
            progress.advance(1)
        progress.finish()
        return {
            "epoch": epoch,
            "phase": phase.name,
            "phase_epoch": phase.epochs,
            "train_loss": loss_sum / max(1, count),
            "train_accuracy": correct / max(1, count),
            "lr": phase.lr,
            "seconds": time.monotonic() - t0,
        }

    def evaluate(self, indices: Sequence[int]) -> evaluate.Evaluation:
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
        self._wrapped: tuple[tuple[int, ...], Any] | None = None

    def steps_per_epoch(self) -> int:
        dist, n = self.state.dist, len(self.state.split.train)
        per_rank = self.state.recipe.batch_size // dist.world
        share = math.ceil(n / dist.world)  # each process's (padded) share of the samples
        return max(1, math.ceil(share / per_rank))

    def units(self, first: int) -> range:
        return range(first, self.phase.epochs)

    def _model(self, trainable: tuple[int, ...]) -> Any:
        """The model, wrapped in DDP under torchrun; rebuilt only when the set of trainable
        stages changes (DDP registers its gradient hooks on what trains when it is built)."""
        state = self.state
        if state.dist.world <= 1:
            return state.model
        if self._wrapped is None or self._wrapped[0] != trainable:
            from torch.nn.parallel import DistributedDataParallel

            dev = state.rt.device
            ids = [dev.index] if dev.type == "cuda" else None
            self._wrapped = (trainable, DistributedDataParallel(state.model, device_ids=ids))
        return self._wrapped[1]

    def train(self, e: int) -> dict[str, Any]:
        import torch

        state, phase = self.state, self.phase
        g = state.completed + 1
        seed = epoch_seed(state.recipe.seed, g)
        seed_everything(seed)
        trainable = phase.trainable_at(e)
        set_trainable(state, trainable)
        model = self._model(trainable)
        per_rank = state.recipe.batch_size // state.dist.world
        autocast = state.rt.autocast()
        progress = state.progress() if state.dist.main else _Silent()
        progress.start(
            f"epoch {g}/{state.plan.epochs} ({phase.name})", self.steps_per_epoch(), unit="steps"
        )
        loss_sum, correct, count, step = 0.0, 0, 0, 0
        seen: set[int] = set()
        labels = torch.tensor(state.data.labels, dtype=torch.long)
        t0 = time.monotonic()

        def step_on(x: Any, y: Any, idx: Any) -> None:
            nonlocal loss_sum, correct, count, step
            with autocast():
                logits = model(x)
            logits = logits.float()
            loss = state.criterion(logits, y)
            check_loss(loss, g, step, self.optimizer)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
            count += len(y)
            seen.update(int(i) for i in idx)
            step += 1
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
                            dummy = torch.zeros(len(idx), c, h, w, device=state.rt.device)
                        plan.inject.value = state.rt.prepare(acts[idx].float())
                        step_on(dummy, labels[idx].to(state.rt.device), idx)
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
                    step_on(x, y_cpu.to(state.rt.device), idx)
        finally:
            progress.finish()
        seen_count = count
        loss_total, correct_total, count_total = state.dist.all_sum(
            [loss_sum, float(correct), float(count)]
        )
        seconds = time.monotonic() - t0
        if state.dist.world > 1:
            state.rank_records = state.dist.gather(
                {"rank": state.dist.rank, "epoch": g, "seen": seen_count, "distinct": sorted(seen)}
            )
        return {
            "epoch": g,
            "phase": phase.name,
            "phase_epoch": e + 1,
            "train_loss": loss_total / max(1.0, count_total),
            "train_accuracy": correct_total / max(1.0, count_total),
            "lr": max(group["lr"] for group in self.optimizer.param_groups),
            "seconds": seconds,
            "images_per_second": count_total / seconds if seconds > 0 else 0.0,
        }

    def evaluate(self, indices: Sequence[int]) -> evaluate.Evaluation:
        if self.prefix is not None:
            return evaluate.on_prefix(self.state, self.prefix, indices)
        return evaluate.on_images(self.state, indices)


class _Silent:
    def start(self, description: str, total: float | None, unit: str = "items") -> None: ...

    def advance(self, amount: float) -> None: ...

    def finish(self) -> None: ...


def start_phase(state: RunState, phase: Phase, first: int, pending: Any = None) -> Any:
    if phase.head_on_features:
        return FeaturePhase(state, phase)
    return ImagePhase(state, phase, first, pending)
