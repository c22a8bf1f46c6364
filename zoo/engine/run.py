"""One fine-tuning run, start to registration: ``finetune(recipe)``.

Order of work: describe the backbone (its preprocessing) -> list, check and decode the data
-> split -> build the model with a new head -> the strategy's plan -> phases of epochs with
a checkpoint after each -> the best epoch's weights registered with their lineage.

The run's checkpoints live in ``$ZOO_HOME/runs/<recipe hash>/``: the same command finds
them again, so re-running it after a kill (or with ``--resume``) continues from the last
completed epoch. Each epoch's data order, augmentation and dropout depend only on
(seed, epoch), so the resumed run ends with exactly the weights an uninterrupted one would
have had (in deterministic mode, bit for bit).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.data import (
    BadFile,
    ImageDataset,
    ImageSamples,
    Preprocessing,
    load_dataset,
    stratified_split,
)
from zoo.engine.caches import (
    PrefixPlan,
    cache_path,
    load_tensors,
    plan_prefix,
    save_tensors,
    state_hash,
    substituted,
    verify_prefix,
)
from zoo.engine.context import Dist, Runtime, resolve_runtime
from zoo.engine.recipe import Recipe
from zoo.engine.state import (
    CHECKPOINT_FORMAT,
    WarmupCosine,
    epoch_seed,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from zoo.errors import Interrupted, TrainingError, UsageError
from zoo.home import atomic_write_text, subdir
from zoo.types import Phase, StrategySettings, TrainingPlan

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo.backbone import ModuleBackbone

__all__ = ["FinetuneResult", "finetune", "run_dir"]

STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
DONE_FILE = "result.json"
EXPERIMENT = "zoo"


@dataclass
class FinetuneResult:
    name: str
    version: int | None
    model_uri: str | None
    run_id: str | None
    metrics: dict[str, float]
    best_epoch: int
    epochs: int
    resumed_from: int | None  # completed epochs found on disk, None for a fresh run
    skipped: list[BadFile]
    seconds: float
    world_size: int
    run_dir: str
    recipe: dict[str, Any]
    plan: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    ranks: list[dict[str, Any]] = field(default_factory=list)
    # The optimizer's parameter groups as built for each phase: name, stage, lr, decay.
    optimizer_groups: list[list[dict[str, Any]]] = field(default_factory=list)
    backbone: Any = None  # the trained backbone (best epoch's weights); not serialised

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "model_uri": self.model_uri,
            "run_id": self.run_id,
            "metrics": self.metrics,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "resumed_from": self.resumed_from,
            "skipped": [{"path": b.path, "reason": b.reason} for b in self.skipped],
            "seconds": round(self.seconds, 2),
            "world_size": self.world_size,
            "run_dir": self.run_dir,
            "recipe": self.recipe,
            "plan": self.plan,
            "history": self.history,
            "ranks": self.ranks,
            "optimizer_groups": self.optimizer_groups,
        }


def run_dir(recipe: Recipe) -> Path:
    return subdir("runs", recipe.key())


def _note(message: str, dist: Dist) -> None:
    if dist.main:
        import click

        click.echo(f"zoo: {message}", err=True)


# ------------------------------------------------------------------------- building


@dataclass
class _Parent:
    reference: str  # what the lineage records as parent
    sha256: str | None
    license: str | None
    preprocessing: Preprocessing


def _describe(recipe: Recipe) -> tuple[Any, _Parent | None]:
    """(BackboneInfo or RegisteredVersion, parent) before the model is built."""
    from zoo.refs import parse_ref

    ref = parse_ref(recipe.ref)
    if ref.scheme == "models":
        from zoo.registry import get_version

        version = get_version(recipe.ref)
        pre = version.preprocessing
        if not pre:
            raise UsageError(f"{version.model_uri} records no preprocessing; cannot fine-tune it")
        base = Preprocessing.from_dict(dict(pre))
        if recipe.image_size:
            base = Preprocessing(
                (base.input_size[0], recipe.image_size, recipe.image_size),
                base.mean,
                base.std,
                base.interpolation,
                base.crop_pct,
            )
        return version, _Parent(version.model_uri, None, version.license, base)
    from zoo.catalog import describe

    info = describe(recipe.ref)
    return info, None


def _build(recipe: Recipe, described: Any, num_classes: int) -> ModuleBackbone:
    from zoo.backbone import ModuleBackbone
    from zoo.catalog import provider_for
    from zoo.refs import parse_ref

    if isinstance(described, ModuleBackbone):
        return described
    ref = parse_ref(recipe.ref)
    if ref.scheme != "models":
        backbone: Any = provider_for(ref).build(
            ref, num_classes=num_classes, pretrained=not recipe.random_init
        )
        _small_head(backbone)
        return backbone
    # Fine-tuning a registered version: its base architecture with the new head, then
    # every tensor of the version that fits (all but a head of another width).
    from zoo.registry import load_model

    version = described
    base_ref = parse_ref(version.base)
    backbone = provider_for(base_ref).build(base_ref, num_classes=num_classes, pretrained=False)
    parent_model, _ = load_model(recipe.ref)
    own = backbone.model.state_dict()
    fitting = {
        k: v for k, v in parent_model.state_dict().items() if k in own and own[k].shape == v.shape
    }
    if any(k not in fitting for k in own):
        _small_head(backbone)  # the parent's head has another width: a new one
    backbone.model.load_state_dict(fitting, strict=False)
    return backbone


def _small_head(backbone: Any) -> None:
    """Start a new head near zero (weights N(0, 0.01), bias 0), as linear probes do.

    Providers initialise heads for training from scratch (timm's EfficientNet head is
    uniform in +-0.35): on pretrained features that gives large random logits that the
    first epochs must undo, and measurably hurts short runs.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in backbone.stages()[-1][1].modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, 0.01)
                if module.bias is not None:
                    module.bias.zero_()


def _strategy(name: str) -> tuple[Any, dict[str, Any]]:
    """The strategy object and the plugin that provides it (for the lineage)."""
    from zoo.plugins import get_plugin_manager

    pm = get_plugin_manager()
    strategies = pm.strategies()
    if name not in strategies:
        known = ", ".join(sorted(strategies)) or "none installed"
        raise UsageError(f"no strategy '{name}' (known: {known}); see `zoo strategies`")
    owner = pm.owner("strategy", name)
    plugin = pm.plugins.get(owner) if owner else None
    return strategies[name], {
        "plugin": owner,
        "distribution": plugin.distribution if plugin else None,
        "version": plugin.version if plugin else None,
    }


def _plan_to_dict(plan: TrainingPlan, names: Sequence[str]) -> dict[str, Any]:
    return {
        "strategy": plan.strategy,
        "settings": dict(plan.settings),
        "phases": [
            {
                "name": p.name,
                "epochs": p.epochs,
                "lr": p.lr,
                "trainable": [[names[i] for i in ep] for ep in p.trainable],
                "lr_scale": {names[i]: s for i, s in p.lr_scale.items()},
                "reinit": [names[i] for i in p.reinit],
                "head_on_features": p.head_on_features,
                "augment": p.augment,
            }
            for p in plan.phases
        ],
    }


# ----------------------------------------------------------------------- the head


def find_classifier(model: nn.Module, head: nn.Module, example: torch.Tensor) -> nn.Module:
    """The module of the head stage whose output is the model's output (the classifier);
    its input is what a linear probe trains on."""
    import torch

    candidates = [m for m in head.modules() if m is not head and any(True for _ in m.parameters())]
    outputs: dict[int, Any] = {}
    handles = [
        m.register_forward_hook(lambda mod, _i, out: outputs.__setitem__(id(mod), out))
        for m in candidates
    ]
    was_training = model.training
    model.eval()  # no BatchNorm statistics may move while looking
    try:
        with torch.no_grad():
            final = model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    best = None
    for module in candidates:  # modules() is outermost first
        if outputs.get(id(module)) is final:
            best = module
            break
    if best is None:
        raise UsageError(
            "this backbone's head does not produce the model's output directly, so its "
            "features cannot be cached: use --strategy partial --unfreeze 0 instead"
        )
    return best


# ------------------------------------------------------------------------ batching


def _order(n: int, seed: int, dist: Dist, shuffle: bool) -> list[int]:
    """This process's share of positions 0..n-1 for one epoch (padded to equal shares)."""
    import torch

    if shuffle:
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    if dist.world > 1:
        per = -(-n // dist.world)
        order = (order * dist.world)[: per * dist.world] if shuffle else order
        if shuffle:
            return order[dist.rank :: dist.world]
        return order[dist.rank :: dist.world]  # evaluation: no padding, sums are reduced
    return order


def _image_batches(
    dataset: ImageDataset,
    indices: Sequence[int],
    pre: Preprocessing,
    *,
    train: bool,
    batch_size: int,
    seed: int,
    dist: Dist,
    workers: int,
    shuffle: bool | None = None,
) -> Any:
    import torch
    from torch.utils.data import DataLoader

    samples = ImageSamples(dataset, indices, pre, train=train)
    order = _order(len(samples), seed, dist, shuffle=train if shuffle is None else shuffle)
    return DataLoader(
        samples,  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=order,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=False,
        drop_last=False,
    )


def _tensor_batches(
    n: int, batch_size: int, seed: int, dist: Dist, shuffle: bool
) -> Iterator[list[int]]:
    order = _order(n, seed, dist, shuffle)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


# ----------------------------------------------------------------------- the engine


class _Engine:
    def __init__(self, recipe: Recipe, *, resume: bool, restart: bool, register: bool) -> None:
        self.recipe = recipe
        self.register = register
        self.optimizer_groups: list[list[dict[str, Any]]] = []
        self.resume_required = resume
        self.restart = restart
        self.dist = Dist.from_env()
        self.progress_factory: Callable[[], Any] = _progress
        self.run_id: str | None = None
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": 0, "val_accuracy": -1.0}
        self.seen: dict[int, int] = {}

    # ---------------------------------------------------------------- set-up

    def setup(self) -> None:
        import torch

        recipe = self.recipe
        if recipe.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        strategy, self.strategy_plugin = _strategy(recipe.strategy)  # fail fast on a typo
        gpu = recipe.device.startswith(("auto", "cuda")) and torch.cuda.is_available()
        self.dist.init("cuda" if gpu else "cpu")
        described, parent = _describe(recipe)
        if parent is None:
            self.info = described
            self.pre = Preprocessing.from_info(described, recipe.image_size)
        else:
            self.info = None
            self.pre = parent.preprocessing
        self.parent = parent
        self.described = described
        workers = recipe.workers if recipe.workers is not None else _default_workers(self.dist)
        self.workers = workers
        # The main process checks (and decodes) the data first; the others then find every
        # decoded image in the cache.
        if not self.dist.main:
            self.dist.barrier()
        progress = self.progress_factory() if self.dist.main else None
        self.data = load_dataset(
            recipe.data,
            resize=self.pre.resize,
            interpolation=self.pre.interpolation,
            workers=max(1, workers),
            max_bad_fraction=recipe.max_bad_fraction,
            progress=progress,
        )
        if self.dist.main:
            self.dist.barrier()
        for bad in self.data.bad:
            _note(f"skipped {bad.path}: {bad.reason}", self.dist)
        self.train_idx, self.val_idx = stratified_split(
            self.data.labels, recipe.val_split, recipe.seed
        )
        seed_everything(recipe.seed)
        self.backbone = _build(recipe, described, len(self.data.classes))
        self.model = self.backbone.model
        self.stages = list(self.backbone.stages())
        self.names = [n for n, _ in self.stages]
        self.plan: TrainingPlan = strategy.plan(
            self.names,
            StrategySettings(
                unfreeze=recipe.unfreeze,
                epochs=recipe.epochs,
                lr=recipe.lr,
                options=dict(recipe.strategy_settings),
            ),
        )
        self.rt: Runtime = resolve_runtime(
            recipe.device,
            recipe.precision,
            recipe.channels_last,
            self.model,
            self.dist,
            recipe.deterministic,
        )
        self.model.to(self.rt.device)
        if self.rt.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.criterion = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        self.dir = run_dir(recipe)

    # ------------------------------------------------------------- checkpoints

    def _state_path(self) -> Path:
        return self.dir / STATE_FILE

    def try_resume(self) -> int | None:
        """Load the last checkpoint; return its completed epochs (None: fresh start)."""
        path = self._state_path()
        done = self.dir / DONE_FILE
        self.dist.barrier()  # every process looks at the same files before any changes them
        if self.restart:
            if self.dist.main:
                for name in (STATE_FILE, BEST_FILE, DONE_FILE):
                    (self.dir / name).unlink(missing_ok=True)
            self.dist.barrier()
            return None
        if done.exists():
            if self.resume_required:
                info = json.loads(done.read_text(encoding="utf-8"))
                raise UsageError(
                    f"this run already finished and registered {info.get('model_uri')}: "
                    "nothing to resume (drop --resume to train it again)"
                )
            self.dist.barrier()
            if self.dist.main:  # a finished run: the same command trains a new version
                for name in (STATE_FILE, BEST_FILE, DONE_FILE):
                    (self.dir / name).unlink(missing_ok=True)
            self.dist.barrier()
            return None
        if not path.exists():
            if self.resume_required:
                raise UsageError(
                    f"--resume: no checkpoint of this recipe in {self.dir}; run without "
                    "--resume to start it"
                )
            return None
        state = load_checkpoint(path)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("key") != self.recipe.key():
            raise UsageError(
                f"{path} is not a checkpoint of this recipe; remove it or pass --restart"
            )
        self.model.load_state_dict(state["model"])
        self.history = json.loads(state["history"])
        self.best = json.loads(state["best"])
        self.run_id = state.get("run_id") or None
        self.pending_optimizer = state.get("optimizer")
        self.pending_scheduler = state.get("scheduler")
        set_rng_state(state["rng"])
        self.position = (int(state["phase"]), int(state["phase_epoch"]))
        return int(state["completed"])

    def save(self, completed: int, phase: int, phase_epoch: int, opt: Any, sched: Any) -> None:
        if not self.dist.main:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "key": self.recipe.key(),
            "completed": completed,
            "phase": phase,
            "phase_epoch": phase_epoch,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": opt.state_dict() if opt is not None else None,
            "scheduler": sched.state_dict() if sched is not None else None,
            "rng": rng_state(),
            "history": json.dumps(self.history),
            "best": json.dumps(self.best),
            "run_id": self.run_id or "",
        }
        save_checkpoint(self._state_path(), state)

    def save_best(self) -> None:
        if self.dist.main:
            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            save_checkpoint(self.dir / BEST_FILE, {"model": state})

    # --------------------------------------------------------------- MLflow

    def start_tracking(self, resumed: bool) -> None:
        if not self.dist.main or not self.register:
            return
        from zoo import store

        mc = store.client()
        if self.run_id:
            try:
                mc.get_run(self.run_id)
                return
            except Exception:
                self.run_id = None
        run = mc.create_run(
            store.experiment_id(EXPERIMENT),
            run_name=f"finetune {self.recipe.model_name()}",
            tags={"zoo.kind": "finetune", "zoo.strategy": self.recipe.strategy},
        )
        self.run_id = run.info.run_id
        params = {
            k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))[:500]
            for k, v in self.recipe.to_dict().items()
        }
        params["dataset_digest"] = self.data.digest
        params["num_train"] = str(len(self.train_idx))
        params["num_val"] = str(len(self.val_idx))
        params["skipped_files"] = str(len(self.data.bad))
        for key, value in params.items():
            mc.log_param(self.run_id, key, value)
        import yaml

        effective = self.recipe.to_dict()
        effective["plan"] = _plan_to_dict(self.plan, self.names)
        tmp = self.dir / "recipe.yaml"
        atomic_write_text(tmp, yaml.safe_dump(effective, sort_keys=False))
        mc.log_artifact(self.run_id, str(tmp))
        if self.data.bad:
            listing = self.dir / "skipped_files.txt"
            atomic_write_text(listing, "".join(f"{b.path}\t{b.reason}\n" for b in self.data.bad))
            mc.log_artifact(self.run_id, str(listing))

    def log_epoch(self, record: dict[str, Any]) -> None:
        if not self.dist.main or not self.run_id:
            return
        from zoo import store

        mc = store.client()
        for key, value in record.items():
            if key not in {"epoch", "phase"} and isinstance(value, (int, float)):
                mc.log_metric(self.run_id, key, float(value), step=int(record["epoch"]))

    def end_tracking(self, status: str) -> None:
        if not self.dist.main or not self.run_id:
            return
        try:
            from zoo import store

            store.client().set_terminated(self.run_id, status=status)
        except Exception:  # tracking must not hide the reason the run stopped
            pass

    # --------------------------------------------------------------- training

    def _set_trainable(self, trainable: Sequence[int]) -> None:
        chosen = set(trainable)
        self.model.train()
        for i, (_, container) in enumerate(self.stages):
            container.requires_grad_(i in chosen)
            if i not in chosen:
                container.eval()  # frozen BatchNorm keeps its running statistics
                for p in container.parameters():
                    p.grad = None

    def _optimizer(self, phase: Phase) -> Any:
        import torch

        groups: list[dict[str, Any]] = []
        for i in phase.stages_in_optimizer():
            name, container = self.stages[i]
            lr = phase.lr * phase.lr_scale.get(i, 1.0)
            params = list(container.parameters())
            decay = [p for p in params if p.ndim > 1]
            no_decay = [p for p in params if p.ndim <= 1]
            for plist, wd, suffix in (
                (decay, self.recipe.weight_decay, ""),
                (no_decay, 0.0, ".no_decay"),
            ):
                if plist:
                    groups.append(
                        {
                            "params": plist,
                            "lr": lr,
                            "base_lr": lr,
                            "weight_decay": wd,
                            "stage": i,
                            "name": name + suffix,
                        }
                    )
        if not groups:
            raise UsageError(f"the {phase.name} phase trains no parameters")
        self.optimizer_groups.append(
            [
                {
                    "name": g["name"],
                    "stage": g["stage"],
                    "lr": g["lr"],
                    "weight_decay": g["weight_decay"],
                    "params": len(g["params"]),
                }
                for g in groups
            ]
        )
        if self.recipe.optimizer == "sgd":
            return torch.optim.SGD(
                groups,
                lr=phase.lr,
                momentum=self.recipe.momentum,
                nesterov=self.recipe.momentum > 0,
            )
        return torch.optim.AdamW(groups, lr=phase.lr)

    def _steps_per_epoch(self, n: int) -> int:
        per_rank = self.recipe.batch_size // self.dist.world
        share = -(-n // self.dist.world)
        return max(1, -(-share // per_rank))

    def _check_loss(self, loss: torch.Tensor, epoch: int, step: int, lr: float) -> None:
        import torch

        if not bool(torch.isfinite(loss)):
            raise TrainingError(
                f"the loss became {float(loss)} in epoch {epoch} (step {step}); the run "
                f"stopped and nothing was registered. Lower the learning rate (was {lr:g}) "
                "or check the data"
            )

    def run(self) -> FinetuneResult:

        start = time.monotonic()
        self.setup()
        resumed = self.try_resume()
        if resumed is not None:
            _note(f"resuming from the checkpoint of epoch {resumed} in {self.dir}", self.dist)
        else:
            self.position = (0, 0)
            self.pending_optimizer = None
            self.pending_scheduler = None
        self.start_tracking(resumed is not None)
        completed = resumed or 0
        self.completed = completed
        total = self.plan.epochs
        try:
            phase_index, phase_epoch = self.position
            for pi in range(phase_index, len(self.plan.phases)):
                phase = self.plan.phases[pi]
                first = phase_epoch if pi == phase_index else 0
                if first >= phase.epochs:
                    continue
                if phase.head_on_features:
                    completed = self._run_feature_phase(pi, phase, completed, total)
                else:
                    completed = self._run_phase(pi, phase, first, completed, total)
                self.pending_optimizer = None
                self.pending_scheduler = None
        except KeyboardInterrupt:
            self.end_tracking("KILLED")
            completed = self.completed
            saved = (
                f"the checkpoint of epoch {completed} is saved in {self._state_path()}"
                if completed
                else "no epoch had completed, so nothing was saved"
            )
            raise Interrupted(
                f"interrupted during epoch {completed + 1}/{total}; {saved}. Re-run the same "
                "command (or add --resume) to continue"
            ) from None
        except BaseException:
            self.end_tracking("FAILED")
            raise
        result = self.finish(time.monotonic() - start, resumed)
        return result

    # feature phase -----------------------------------------------------------

    def _features(self, classifier: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (the classifier's input) of every image, cached on disk."""
        import torch

        frozen = [c for i, (_, c) in enumerate(self.stages) if i != len(self.stages) - 1]
        key = {
            "weights": state_hash(frozen),
            "data": self.data.digest,
            "preprocessing": self.pre.to_dict(),
            "bf16": self.rt.bf16,
            "format": 1,
        }
        path = cache_path("features", key)
        cached = self._shared_cache(path)
        if cached is not None:
            return cached["features"], cached["labels"]
        features = self._capture_inputs(classifier)
        labels = torch.tensor(self.data.labels, dtype=torch.long)
        save_tensors(path, {"features": features, "labels": labels}, {"key": json.dumps(key)})
        self.dist.barrier()
        return features, labels

    def _capture_inputs(self, module: nn.Module) -> torch.Tensor:
        import torch

        from zoo.engine.caches import _StopForward

        box: list[torch.Tensor] = []

        def hook(_m: Any, args: Any) -> None:
            box.append(args[0].detach().float().cpu().flatten(1))
            raise _StopForward

        self.model.eval()
        handle = module.register_forward_pre_hook(hook)
        loader = self._every_sample_once()
        progress = self.progress_factory()
        progress.start("extracting features", len(self.data.samples))
        autocast = self.rt.autocast()
        try:
            with torch.no_grad(), autocast():
                for x, _y, _i in loader:
                    with contextlib.suppress(_StopForward):
                        self.model(self.rt.prepare(self.pre.normalize(x)))
                    progress.advance(len(x))
        finally:
            handle.remove()
            progress.finish()
        return torch.cat(box)

    def _run_feature_phase(self, pi: int, phase: Phase, completed: int, total: int) -> int:
        import torch

        example = self._example()
        classifier = find_classifier(self.model, self.backbone.head, example)
        features, labels = self._features(classifier)
        self._set_trainable(phase.trainable_at(0))
        classifier.train()
        opt = self._optimizer(phase)
        tr = torch.tensor(self.train_idx)
        va = torch.tensor(self.val_idx)
        bs = self.recipe.batch_size
        steps = phase.epochs * max(1, -(-len(tr) // bs))
        sched = WarmupCosine(opt, steps, int(self.recipe.warmup_epochs * (steps / phase.epochs)))
        dev = self.rt.device
        ftr, ytr = features[tr].to(dev), labels[tr].to(dev)
        t0 = time.monotonic()
        loss_sum, correct, count = 0.0, 0, 0
        progress = self.progress_factory()
        progress.start(
            f"epoch {completed + 1}/{total} ({phase.name}, {phase.epochs} passes "
            "over cached features)",
            phase.epochs,
        )
        for p in range(phase.epochs):
            seed_everything(epoch_seed(self.recipe.seed, completed * 1000 + p))
            order = torch.randperm(len(tr))
            loss_sum, correct, count = 0.0, 0, 0
            for s in range(0, len(order), bs):
                b = order[s : s + bs]
                logits = classifier(ftr[b]).float()
                loss = self.criterion(logits, ytr[b])
                self._check_loss(loss, completed + 1, s // bs, phase.lr)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * len(b)
                correct += int((logits.argmax(1) == ytr[b]).sum())
                count += len(b)
            progress.advance(1)
        progress.finish()
        classifier.eval()
        with torch.no_grad():
            logits = classifier(features[va].to(dev)).float()
            val_loss = float(self.criterion(logits, labels[va].to(dev)))
            preds = logits.argmax(1).cpu()
        val_acc = float((preds == labels[va]).float().mean())
        self._last_eval = (labels[va].tolist(), preds.tolist())
        completed += phase.epochs
        record = {
            "epoch": completed,
            "phase": phase.name,
            "train_loss": loss_sum / max(1, count),
            "train_accuracy": correct / max(1, count),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": phase.lr,
            "seconds": time.monotonic() - t0,
        }
        self._epoch_done(record, pi, phase.epochs, None, None)
        return completed

    # image / prefix phase ----------------------------------------------------

    def _example(self) -> torch.Tensor:
        import torch

        samples = ImageSamples(self.data, self.val_idx[:2], self.pre, train=False)
        x = torch.stack([samples[i][0] for i in range(len(samples))])
        return self.rt.prepare(self.pre.normalize(x))

    def _prefix(self, phase: Phase) -> tuple[PrefixPlan, torch.Tensor] | None:
        """The frozen prefix's output for every image, when this phase can use it."""
        import torch

        if phase.augment or len(phase.trainable) != 1 or not self.recipe.cache_frozen:
            return None
        first = min(phase.trainable[0])
        if first == 0 or phase.reinit:
            return None
        example = self._example()
        plan = plan_prefix(self.model, self.stages, first, example)
        if plan is None or not verify_prefix(plan, example, self.rt.autocast()):
            _note(
                "the frozen stages cannot be cached for this backbone; training the "
                "whole forward pass",
                self.dist,
            )
            return None
        key = {
            "weights": state_hash([c for _, c in self.stages[:first]]),
            "data": self.data.digest,
            "preprocessing": self.pre.to_dict(),
            "first_trainable": self.names[first],
            "bf16": self.rt.bf16,
            "channels_last": self.rt.channels_last,
            "format": 1,
        }
        path = cache_path("prefix", key)
        cached = self._shared_cache(path)
        if cached is not None:
            return plan, cached["activations"]
        self.model.eval()
        loader = self._every_sample_once()
        progress = self.progress_factory()
        progress.start(
            f"caching the frozen stages below {self.names[first]}", len(self.data.samples)
        )
        outs = []
        autocast = self.rt.autocast()
        with torch.no_grad(), autocast():
            for x, _y, _i in loader:
                outs.append(plan.capture(self.rt.prepare(self.pre.normalize(x))).detach().cpu())
                progress.advance(len(x))
        progress.finish()
        activations = torch.cat(outs).contiguous()
        save_tensors(path, {"activations": activations}, {"key": json.dumps(key)})
        self.dist.barrier()
        return plan, activations

    def _run_phase(self, pi: int, phase: Phase, first: int, completed: int, total: int) -> int:

        if first == 0 and phase.reinit:
            for i in phase.reinit:
                for module in self.stages[i][1].modules():
                    reset = getattr(module, "reset_parameters", None)
                    if callable(reset):
                        reset()
        prefix = self._prefix(phase)
        opt = self._optimizer(phase)
        steps_per_epoch = self._steps_per_epoch(len(self.train_idx))
        sched = WarmupCosine(
            opt, phase.epochs * steps_per_epoch, int(self.recipe.warmup_epochs * steps_per_epoch)
        )
        if self.pending_optimizer is not None and first > 0:
            opt.load_state_dict(self.pending_optimizer)
            for group in opt.param_groups:  # keep the plan's learning rates authoritative
                group["base_lr"] = group.get("base_lr", group["lr"])
            sched.load_state_dict(dict(self.pending_scheduler or {}))
        for e in range(first, phase.epochs):
            g = completed + 1
            seed_everything(epoch_seed(self.recipe.seed, g))
            self._set_trainable(phase.trainable_at(e))
            record = self._train_epoch(phase, prefix, opt, sched, g, total)
            record.update(self._evaluate(prefix))
            completed = g
            self._epoch_done(record, pi, e + 1, opt, sched)
        return completed

    def _wrapped(self) -> nn.Module:
        if self.dist.world <= 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.rt.device.index] if self.rt.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _train_epoch(
        self, phase: Phase, prefix: Any, opt: Any, sched: Any, g: int, total: int
    ) -> dict[str, Any]:
        import torch

        t0 = time.monotonic()
        seed = epoch_seed(self.recipe.seed, g)
        per_rank = self.recipe.batch_size // self.dist.world
        model = self._wrapped()
        autocast = self.rt.autocast()
        progress = self.progress_factory() if self.dist.main else _Silent()
        progress.start(
            f"epoch {g}/{total} ({phase.name})", self._steps_per_epoch(len(self.train_idx))
        )
        loss_sum, correct, count, step = 0.0, 0, 0, 0
        seen: set[int] = set()
        seen_count = 0
        labels = torch.tensor(self.data.labels, dtype=torch.long)
        try:
            if prefix is not None:
                plan, acts = prefix
                tr = torch.tensor(self.train_idx)
                dummy: torch.Tensor | None = None
                with substituted(plan) as _:
                    for b in _tensor_batches(len(tr), per_rank, seed, self.dist, True):
                        idx = tr[b]
                        x = self.rt.prepare(acts[idx].float())
                        y = labels[idx].to(self.rt.device)
                        if dummy is None or dummy.shape[0] != len(idx):
                            c, h, w = self.pre.input_size
                            dummy = torch.zeros(len(idx), c, h, w, device=self.rt.device)
                        plan.inject.value = x
                        loss, logits = self._step(model, dummy, y, opt, sched, autocast, g, step)
                        loss_sum += float(loss) * len(idx)
                        correct += int((logits.argmax(1) == y).sum())
                        count += len(idx)
                        seen.update(int(i) for i in idx)
                        seen_count += len(idx)
                        step += 1
                        progress.advance(1)
            else:
                loader = _image_batches(
                    self.data,
                    self.train_idx,
                    self.pre,
                    train=phase.augment,
                    batch_size=per_rank,
                    seed=seed,
                    dist=self.dist,
                    workers=self.workers,
                    shuffle=True,
                )
                for x_u8, y_cpu, idx in loader:
                    x = self.rt.prepare(self.pre.normalize(x_u8))
                    y = y_cpu.to(self.rt.device)
                    loss, logits = self._step(model, x, y, opt, sched, autocast, g, step)
                    loss_sum += float(loss) * len(y)
                    correct += int((logits.argmax(1) == y).sum())
                    count += len(y)
                    seen.update(int(i) for i in idx)
                    seen_count += len(y)
                    step += 1
                    progress.advance(1)
        finally:
            progress.finish()
        self.seen[g] = len(seen)
        loss_total, correct_total, count_total = self.dist.all_sum(
            [loss_sum, float(correct), float(count)]
        )
        seconds = time.monotonic() - t0
        if self.dist.world > 1:
            self.rank_records = self.dist.gather(
                {"rank": self.dist.rank, "epoch": g, "seen": seen_count, "distinct": sorted(seen)}
            )
        return {
            "epoch": g,
            "phase": phase.name,
            "train_loss": loss_total / max(1.0, count_total),
            "train_accuracy": correct_total / max(1.0, count_total),
            "lr": max(group["lr"] for group in opt.param_groups),
            "seconds": seconds,
            "images_per_second": count_total / seconds if seconds > 0 else 0.0,
        }

    def _step(
        self, model: Any, x: Any, y: Any, opt: Any, sched: Any, autocast: Any, g: int, step: int
    ) -> tuple[Any, Any]:
        with autocast():
            logits = model(x)
        logits = logits.float()
        loss = self.criterion(logits, y)
        self._check_loss(loss, g, step, max(gr["lr"] for gr in opt.param_groups))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        return loss.detach(), logits.detach()

    def _evaluate(self, prefix: Any) -> dict[str, Any]:
        preds, labels_out = self._predict(prefix)
        import torch

        labels = torch.tensor(labels_out)
        p = torch.tensor(preds["pred"])
        loss_sum, correct, count = self.dist.all_sum(
            [preds["loss"], float(int((p == labels).sum())), float(len(labels))]
        )
        gathered = self.dist.gather((labels_out, preds["pred"]))
        self._last_eval = (
            [v for part in gathered for v in part[0]],
            [v for part in gathered for v in part[1]],
        )
        return {"val_loss": loss_sum / max(1.0, count), "val_accuracy": correct / max(1.0, count)}

    def _predict(
        self, prefix: Any, *, everything: bool = False
    ) -> tuple[dict[str, Any], list[int]]:
        """Predictions on this process's share of the validation set (all of it when
        ``everything``)."""
        import torch

        self.model.eval()
        dist = Dist() if everything else self.dist
        autocast = self.rt.autocast()
        all_labels = torch.tensor(self.data.labels, dtype=torch.long)
        preds: list[int] = []
        labels: list[int] = []
        loss_sum = 0.0
        bs = self.recipe.batch_size
        with torch.no_grad(), autocast():
            if prefix is not None:
                plan, acts = prefix
                va = torch.tensor(self.val_idx)
                with substituted(plan) as sub:
                    for b in _tensor_batches(len(va), bs, 0, dist, False):
                        idx = va[b]
                        c, h, w = self.pre.input_size
                        plan.inject.value = self.rt.prepare(acts[idx].float())
                        logits = sub(torch.zeros(len(idx), c, h, w, device=self.rt.device))
                        y = all_labels[idx]
                        loss_sum += float(self.criterion(logits.float().cpu(), y)) * len(idx)
                        preds.extend(logits.argmax(1).cpu().tolist())
                        labels.extend(y.tolist())
            else:
                loader = _image_batches(
                    self.data,
                    self.val_idx,
                    self.pre,
                    train=False,
                    batch_size=bs,
                    seed=0,
                    dist=dist,
                    workers=self.workers,
                )
                for x_u8, y, _idx in loader:
                    logits = self.model(self.rt.prepare(self.pre.normalize(x_u8))).float().cpu()
                    loss_sum += float(self.criterion(logits, y)) * len(y)
                    preds.extend(logits.argmax(1).tolist())
                    labels.extend(y.tolist())
        return {"pred": preds, "loss": loss_sum}, labels

    def _epoch_done(
        self, record: dict[str, Any], pi: int, phase_epoch: int, opt: Any, sched: Any
    ) -> None:
        self.history.append(record)
        self.completed = int(record["epoch"])
        improved = record["val_accuracy"] > self.best["val_accuracy"]
        if improved:
            self.best = {
                "eval": [list(self._last_eval[0]), list(self._last_eval[1])],
                "epoch": record["epoch"],
                "val_accuracy": record["val_accuracy"],
                "val_loss": record["val_loss"],
            }
            self.save_best()
        self.save(record["epoch"], pi, phase_epoch, opt, sched)
        self.dist.barrier()
        self.log_epoch(record)
        _note(
            f"epoch {record['epoch']}/{self.plan.epochs} ({record['phase']}): train loss "
            f"{record['train_loss']:.4f} acc {record['train_accuracy']:.3f}, val loss "
            f"{record['val_loss']:.4f} acc {record['val_accuracy']:.3f}"
            + (" (best so far)" if improved else ""),
            self.dist,
        )

    # ------------------------------------------------------------- finishing

    def finish(self, seconds: float, resumed: int | None) -> FinetuneResult:
        import torch

        from zoo.engine import report

        final_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        best = load_checkpoint(self.dir / BEST_FILE) if (self.dir / BEST_FILE).exists() else None
        if best is not None:
            self.model.load_state_dict(best["model"])
        name = self.recipe.model_name()
        ranks = getattr(self, "rank_records", [])
        if not self.dist.main:
            self.dist.barrier()
            return self._result(name, {}, seconds, resumed, ranks)
        labels, predicted = self.best["eval"]  # the best epoch's validation predictions
        n = len(self.data.classes)
        matrix = report.confusion(labels, predicted, n)
        per_class = report.per_class_accuracy(matrix, self.data.classes)
        accuracy = sum(matrix[i][i] for i in range(n)) / max(1, len(labels))
        figures = self.dir / "figures"
        figures.mkdir(exist_ok=True)
        cm_png = report.plot_confusion(matrix, self.data.classes, figures / "confusion_matrix.png")
        curves_png = report.plot_curves(self.history, figures / "training_curves.png")
        last = self.history[-1] if self.history else {}
        metrics: dict[str, float] = {
            "val_accuracy": accuracy,
            "val_loss": float(self.best.get("val_loss", 0.0)),
            "best_epoch": float(self.best["epoch"]),
            "epochs": float(self.plan.epochs),
            "train_accuracy": float(last.get("train_accuracy", 0.0)),
            "train_loss": float(last.get("train_loss", 0.0)),
            "train_seconds": seconds,
            "num_train": float(len(self.train_idx)),
            "num_val": float(len(self.val_idx)),
        }
        for cls, acc in per_class.items():
            metrics[f"val_accuracy.{report.metric_key(cls)}"] = acc
        if not self.register:
            self.model.to("cpu").to(memory_format=torch.contiguous_format)
            save_checkpoint(self.dir / "final.pt", {"model": final_state})
            self.dist.barrier()
            return self._result(
                name,
                metrics,
                seconds,
                resumed,
                ranks,
                optimizer_groups=self.optimizer_groups,
                backbone=self.backbone,
            )
        from zoo import store

        mc = store.client()
        if self.run_id:
            for key, value in metrics.items():
                mc.log_metric(self.run_id, f"final.{key}" if key == "val_accuracy" else key, value)
            for png in (cm_png, curves_png):
                mc.log_artifact(self.run_id, str(png), artifact_path="figures")
            atomic_write_text(
                self.dir / "confusion_matrix.json",
                json.dumps({"classes": list(self.data.classes), "matrix": matrix}),
            )
            mc.log_artifact(self.run_id, str(self.dir / "confusion_matrix.json"))
        from zoo.registry import register_derivative

        self.model.to(memory_format=torch.contiguous_format)
        example = self._example().detach().cpu().float().contiguous()
        self.model.to("cpu")
        parent_ref, parent_sha, parent_license = self._parent_pin()
        settings = dict(self.plan.settings)
        settings["plan"] = _plan_to_dict(self.plan, self.names)
        settings["recipe"] = {
            k: v
            for k, v in self.recipe.to_dict().items()
            if k not in {"ref", "data", "name", "license", "license_override", "device", "workers"}
        }
        dataset = self.data.record()
        dataset["split"] = {
            "val_split": self.recipe.val_split,
            "seed": self.recipe.seed,
            "train": len(self.train_idx),
            "val": len(self.val_idx),
        }
        try:
            version = register_derivative(
                self.model,
                name=name,
                parent=parent_ref,
                parent_sha256=parent_sha,
                parent_license=parent_license,
                license=self.recipe.license,
                license_override=self.recipe.license_override,
                strategy=self.recipe.strategy,
                strategy_settings=settings,
                strategy_plugin=self.strategy_plugin,
                dataset=dataset,
                metrics=metrics,
                input_example=example,
                preprocessing=self.pre.to_dict(),
                class_names=list(self.data.classes),
                artifacts={
                    "figures/confusion_matrix.png": cm_png,
                    "figures/training_curves.png": curves_png,
                },
                run_id=self.run_id,
                experiment=EXPERIMENT,
            )
        except BaseException:
            self.end_tracking("FAILED")
            raise
        self.end_tracking("FINISHED")
        result = self._result(
            version.name,
            metrics,
            seconds,
            resumed,
            ranks,
            version=version.version,
            model_uri=version.model_uri,
            run_id=self.run_id,
        )
        save_checkpoint(self.dir / "final.pt", {"model": final_state})
        atomic_write_text(self.dir / DONE_FILE, json.dumps(result.to_dict(), indent=2))
        self.dist.barrier()
        return result

    def _every_sample_once(self) -> Any:
        """Every image once, in order, without augmentation, on this process alone: the
        pass that fills the feature and frozen-prefix caches."""
        return _image_batches(
            self.data,
            range(len(self.data.samples)),
            self.pre,
            train=False,
            batch_size=self.recipe.batch_size,
            seed=0,
            dist=Dist(),
            workers=self.workers,
        )

    def _shared_cache(self, path: Path) -> dict[str, Any] | None:
        """Read a tensor cache the DDP way: rank 0 looks first; the other ranks wait at a
        barrier until rank 0 has found it (and releases them) or written it."""
        cached = load_tensors(path) if self.dist.main else None
        if cached is None and not self.dist.main:
            self.dist.barrier()
            cached = load_tensors(path)
        if cached is not None and self.dist.main:
            self.dist.barrier()
        return cached

    def _result(
        self,
        name: str,
        metrics: dict[str, float],
        seconds: float,
        resumed: int | None,
        ranks: list[dict[str, Any]],
        **extra: Any,
    ) -> FinetuneResult:
        """The run's result record; ``extra`` fills version, model_uri, run_id and the like."""
        return FinetuneResult(
            name=name,
            version=extra.pop("version", None),
            model_uri=extra.pop("model_uri", None),
            run_id=extra.pop("run_id", None),
            metrics=metrics,
            best_epoch=int(self.best["epoch"]),
            epochs=self.plan.epochs,
            resumed_from=resumed,
            skipped=list(self.data.bad),
            seconds=seconds,
            world_size=self.dist.world,
            run_dir=str(self.dir),
            recipe=self.recipe.to_dict(),
            plan=_plan_to_dict(self.plan, self.names),
            history=self.history,
            ranks=ranks,
            **extra,
        )

    def _parent_pin(self) -> tuple[str, str | None, str | None]:
        if self.parent is not None:
            return self.parent.reference, None, self.parent.license
        info = self.backbone.info
        if self.recipe.random_init:
            return info.reference, None, info.license
        return info.reference, getattr(self.backbone, "weights_sha256", None), info.license


class _Silent:
    def start(self, description: str, total: float | None, unit: str = "items") -> None: ...

    def advance(self, amount: float) -> None: ...

    def finish(self) -> None: ...


def _progress() -> Any:
    from zoo.progress import make_progress

    return make_progress()


def _default_workers(dist: Dist) -> int:
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cores or 1) // max(1, dist.world)))


def finetune(
    recipe: Recipe, *, resume: bool = False, restart: bool = False, register: bool = True
) -> FinetuneResult:
    """Run (or resume) one fine-tuning recipe and register its best epoch.

    ``register=False`` trains and evaluates without MLflow or the registry (library use,
    experiments); the result then carries the trained backbone.
    """
    engine = _Engine(recipe, resume=resume, restart=restart, register=register)
    return engine.run()


def clean_run(recipe: Recipe) -> None:
    """Remove a run's checkpoints (``--restart`` does this before starting)."""
    shutil.rmtree(run_dir(recipe), ignore_errors=True)
