"""The run's caches: pooled features for the head, a stage's pooled output, and the frozen
prefix's output, each computed once over every sample and stored under the zoo home.

Rows follow the dataset's sample order, which follows the files (sha256), and every key
holds the dataset digest, so the same files give the same rows however they were listed.
Each cache is a folder of row shards (:mod:`zoo.engine.rows`), read a batch at a time:
under DDP every process computes its share of the rows (the model is in eval mode, so a
row does not depend on which process computes it, up to rounding) and writes them to its
own shard; nothing is gathered in memory.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.contract.types import Phase
from zoo.engine.batches import example, image_batches
from zoo.engine.caches import (
    PrefixPlan,
    StopForward,
    cache_dir,
    plan_prefix,
    record_calls,
    state_hash,
    verify_prefix,
)
from zoo.engine.context import Dist
from zoo.engine.fold import folded
from zoo.engine.rows import Fill, Rows, open_rows

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo.engine.state import RunState

__all__ = [
    "CACHE_FORMAT",
    "classifier",
    "find_classifier",
    "frozen_prefix",
    "head_features",
    "stage_features",
    "stage_probe",
]

CACHE_FORMAT = 3  # 3: folders of row shards; 2: one file, rows in the files' order


def _key(state: RunState, modules: list[nn.Module], **extra: Any) -> dict[str, Any]:
    return {
        "weights": state_hash(modules),
        "data": state.data.digest,
        "preprocessing": state.pre.to_dict(),
        "bf16": state.rt.bf16,
        "format": CACHE_FORMAT,
        **extra,
    }


def _labels(state: RunState) -> torch.Tensor:
    import torch

    return torch.tensor(state.data.labels, dtype=torch.long)


class _Quiet:
    def start(self, description: str, total: float | None, unit: str = "items") -> None: ...

    def advance(self, amount: float) -> None: ...

    def finish(self) -> None: ...


def _my_samples(state: RunState) -> tuple[Any, int]:
    """This process's share of every sample, unaugmented, in the dataset's order (a
    DataLoader of it), and how many samples there are in all."""
    n = len(state.data.samples)
    loader = image_batches(
        state,
        list(state.dist.share(n)),
        train=False,
        batch_size=state.recipe.batch_size,
        seed=0,
        dist=Dist(),
        shuffle=False,
    )
    return loader, n


def _capture(
    state: RunState, modules: list[nn.Module], label: str, folders: list[Path], *, inputs: bool
) -> list[Rows]:
    """One pass over every sample, the rows of each module written to its cache folder:
    its input (flattened) or its output (averaged over space or tokens). The forward
    stops once the last of them has run."""
    import torch

    fills: list[Fill] = []
    remaining = [0]

    def pooled(t: Any) -> torch.Tensor:
        t = (t[0] if isinstance(t, (tuple, list)) else t).detach().float()
        if not inputs and t.dim() == 4:
            t = t.mean(dim=(2, 3))
        elif not inputs and t.dim() == 3:
            t = t.mean(dim=1)
        return t.cpu().flatten(1)

    seen: list[Any] = [None for _ in modules]

    def hook_for(i: int) -> Any:
        def keep(value: Any) -> None:
            rows = pooled(value)
            if fills:
                fills[i].append("features", rows)
            else:  # an example pass: the rows' shape, before anything is written
                seen[i] = rows
            remaining[0] -= 1
            if remaining[0] == 0:
                raise StopForward

        if inputs:
            return lambda _m, args: keep(args)
        return lambda _m, _args, out: keep(out)

    model = state.model
    was_training = model.training
    model.eval()
    register = "register_forward_hook" if not inputs else "register_forward_pre_hook"
    handles = [getattr(m, register)(hook_for(i)) for i, m in enumerate(modules)]
    n = len(state.data.samples)
    progress = state.progress() if state.dist.main else _Quiet()
    autocast = state.rt.autocast()
    sample = example(state)

    def example_rows() -> list[Any]:
        remaining[0] = len(modules)
        with contextlib.suppress(StopForward):
            model(sample)
        return list(seen)

    try:
        with torch.no_grad(), folded(model, example_rows), autocast():
            what = "feature cache" if inputs else "stage-feature cache"
            for folder, rows in zip(folders, example_rows(), strict=True):
                shape = tuple(rows.shape[1:]) if rows is not None else ()
                spec = {"features": (shape, torch.float32), "labels": ((), torch.long)}
                fills.append(Fill(folder, spec, n, state.dist, what))
            loader, _n = _my_samples(state)
            progress.start(label, len(state.dist.share(n)), unit="images")
            for x, y, _i in loader:
                remaining[0] = len(modules)
                with contextlib.suppress(StopForward):
                    model(state.rt.prepare(state.pre.normalize(x)))
                for fill in fills:  # with the features: the cache says what it holds
                    fill.append("labels", y)
                progress.advance(len(x))
            progress.finish()
        return [fill.finish()["features"] for fill in fills]
    except BaseException:
        for fill in fills:
            fill.abort()
        raise
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def classifier(state: RunState) -> nn.Module:
    return find_classifier(state.model, state.backbone.head, example(state))


def head_features(state: RunState, head: nn.Module | None = None) -> tuple[Rows, torch.Tensor]:
    """Pooled features (the classifier's input) and labels of every sample; ``head`` is
    the classifier when the caller has found it already. The features are read from
    their cache a batch at a time (``rows[idx]``; ``rows.load()`` for all of them)."""
    head = classifier(state) if head is None else head
    frozen = [c for _, c in state.stages[:-1]]
    folder = cache_dir("features", _key(state, frozen))
    cached = open_rows(folder, state.dist)
    if cached is not None:
        return cached["features"], _labels(state)
    (features,) = _capture(state, [head], "extracting features", [folder], inputs=True)
    return features, _labels(state)


def _stage_output(state: RunState, index: int) -> nn.Module:
    """The module whose output is the stage's output: the stage itself when the model
    calls it, else the stage's module that finishes last in a forward pass (stages are
    often groups of modules the model calls one by one)."""
    container = state.stages[index][1]
    model = state.model
    was_training = model.training
    model.eval()
    try:
        calls = record_calls(model, example(state))
    finally:
        model.train(was_training)
    if id(container) in calls:
        return container
    called = [m for m in container.modules() if id(m) in calls]
    if not called:
        raise UsageError(f"stage {state.names[index]} does not run in this model's forward pass")
    return max(called, key=lambda m: calls[id(m)][-1][1])


def stage_features(state: RunState, stage: str) -> tuple[Rows, torch.Tensor]:
    """The named stage's output, averaged over space or tokens, for every sample.

    The first request fills the cache of every stage below the head in the same pass
    (a strategy comparing stages pays one forward pass, not one per stage)."""
    names = state.names
    if stage not in names[:-1]:
        raise UsageError(f"no stage '{stage}' below the head (stages: {', '.join(names[:-1])})")

    def folder(index: int) -> Path:
        key = _key(state, [c for _, c in state.stages[: index + 1]], stage=names[index])
        return cache_dir("stage-features", key)

    index = names.index(stage)
    cached = open_rows(folder(index), state.dist)
    if cached is not None:
        return cached["features"], _labels(state)
    body = list(range(len(names) - 1))
    outputs = _capture(
        state,
        [_stage_output(state, i) for i in body],
        "extracting stage features",
        [folder(i) for i in body],
        inputs=False,
    )
    return outputs[index], _labels(state)


def stage_probe(state: RunState, head: nn.Module) -> tuple[torch.Tensor, torch.Tensor, nn.Module]:
    """A phase with ``features="stages"``: (features, labels, the head that trains on them).

    The features are every body stage's pooled output and the classifier's (``head``'s)
    input (unless the last stage's output is that input already), concatenated and
    standardised with the training rows' mean and std. The run's
    model becomes :class:`zoo.catalog.heads.StageProbe` (the backbone plus one new linear head on
    those features, the standardisation in its buffers), so the checkpoints, the
    registered epoch and the registered model are that one module; its head stage holds
    the backbone's head and the new one."""
    import torch
    from torch import nn

    from zoo.catalog.backbone import ModuleBackbone
    from zoo.catalog.heads import StageProbe

    names, model = state.names, state.model
    parts = [stage_features(state, name)[0].load() for name in names[:-1]]
    pre_rows, labels = head_features(state, head)
    pre = pre_rows.load()
    again = parts[-1].shape == pre.shape and bool(torch.equal(parts[-1], pre))
    features = torch.cat(parts if again else [*parts, pre], dim=1)
    path = {id(m): p for p, m in model.named_modules()}
    taps = [path[id(_stage_output(state, i))] for i in range(len(names) - 1)]
    classes = len(state.data.classes)
    probe = StageProbe(model, taps, None if again else path[id(head)], features.shape[1], classes)
    train = features[torch.tensor(list(state.split.train), dtype=torch.long)]
    probe.set_standardisation(train.mean(dim=0), train.std(dim=0))
    with torch.no_grad():  # near zero, as every new head (model.init_head)
        probe.head.weight.normal_(0.0, 0.01)
        probe.head.bias.zero_()
    standardised = (features - probe.mean) / probe.std
    probe.to(state.rt.device)
    group = nn.Module()  # the head stage: the backbone's head and the probe's
    group.add_module("backbone_head", state.stages[-1][1])
    group.add_module("probe_head", probe.head)
    state.backbone = ModuleBackbone(
        state.backbone.info,
        probe,
        [*state.stages[:-1], (names[-1], group)],
        weights_sha256=getattr(state.backbone, "weights_sha256", None),
    )
    return standardised, labels, probe.head


def frozen_prefix(state: RunState, phase: Phase) -> tuple[PrefixPlan, Rows] | None:
    """The frozen prefix's output for every sample, when this phase can train on it: no
    augmentation, one trainable set for the whole phase, nothing re-initialised. Read
    from its cache a batch at a time (``rows[idx]``)."""
    import torch

    if phase.augment or len(phase.trainable) != 1 or not state.recipe.cache_frozen:
        return None
    if state.prepared is not None:
        return None  # a strategy chose its own parameters: the stage boundary may not hold
    first = min(phase.trainable[0])
    if first == 0 or phase.reinit:
        return None
    x = example(state)
    plan = plan_prefix(state.model, state.stages, first, x)
    if plan is None or not verify_prefix(plan, x, state.rt.autocast()):
        state.note(
            "the frozen stages cannot be cached for this backbone; training the whole forward pass"
        )
        return None
    key = _key(
        state,
        [c for _, c in state.stages[:first]],
        first_trainable=state.names[first],
        channels_last=state.rt.channels_last,
    )
    folder = cache_dir("prefix", key)
    cached = open_rows(folder, state.dist)
    if cached is not None:
        return plan, cached["activations"]
    model = state.model
    model.eval()
    autocast = state.rt.autocast()
    with torch.no_grad(), autocast():
        out = plan.capture(x).detach()
    n = len(state.data.samples)
    spec = {"activations": (tuple(out.shape[1:]), out.dtype)}
    fill = Fill(folder, spec, n, state.dist, "frozen-prefix cache")
    try:
        loader, _n = _my_samples(state)
        progress = state.progress() if state.dist.main else _Quiet()
        progress.start(
            f"caching the frozen stages below {state.names[first]}",
            len(state.dist.share(n)),
            unit="images",
        )
        with torch.no_grad(), folded(model, lambda: plan.capture(x)), autocast():
            for x_u8, _y, _i in loader:
                x_n = state.rt.prepare(state.pre.normalize(x_u8))
                fill.append("activations", plan.capture(x_n))
                progress.advance(len(x_u8))
        progress.finish()
        return plan, fill.finish()["activations"]
    except BaseException:
        fill.abort()
        raise


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
    for module in candidates:  # modules() is outermost first
        if outputs.get(id(module)) is final:
            return module
    raise UsageError(
        "this backbone's head does not produce the model's output directly, so its "
        "features cannot be cached: use --strategy partial --unfreeze 0 instead"
    )
