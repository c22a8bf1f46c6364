"""Work computed once: pooled features for the head, and the frozen prefix's output.

- **Feature cache** (linear probe and LP-FT's probe phase): the backbone's pooled features
  of every image, a folder of row shards (:mod:`zoo.engine.rows`) under
  ``$ZOO_HOME/features/<key>/``. The key hashes the frozen
  weights themselves (so a random init or a different checkpoint never hits another's
  cache), the dataset digest, the preprocessing and the precision.
- **Prefix cache** (partial / LP-FT without augmentation): the output of the frozen stages
  below the first trainable one. Training then runs only the trainable suffix. It works on
  any backbone whose frozen stages run as a prefix of its forward pass; the engine finds
  that out by recording the call order of the modules, substitutes the prefix by a module
  that returns the cached tensor, and checks on real images that the substituted model
  gives the same output as the original. A backbone where that check fails trains the
  ordinary way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.disk.lock import hold_caches
from zoo.disk.paths import subdir

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = [
    "PrefixPlan",
    "StopForward",
    "cache_dir",
    "plan_prefix",
    "record_calls",
    "state_hash",
    "substituted",
]


def state_hash(modules: Sequence[nn.Module]) -> str:
    """sha256 over the parameters and buffers of ``modules`` (names, shapes, bytes)."""
    import torch

    h = hashlib.sha256()
    for i, module in enumerate(modules):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{i}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def cache_dir(kind: str, parts: dict[str, Any]) -> Path:
    """The folder of the ``kind`` cache keyed by ``parts`` (it may not exist yet)."""
    hold_caches()  # in use until this process exits: `zoo home prune` leaves them alone
    blob = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return subdir(kind) / hashlib.sha256(blob).hexdigest()[:32]


# ------------------------------------------------------------------------- prefix


class _Skip:
    """Stands in for a prefix module that does not need to run."""


def _identity_module() -> nn.Module:
    from torch import nn

    class Skip(nn.Module):
        def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
            return x

    return Skip()


def _inject_module() -> nn.Module:
    from torch import nn

    class Inject(nn.Module):
        """Returns the cached output of the frozen prefix, whatever its input."""

        value: Any = None

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.value

    return Inject()


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (only part of the model is needed)."""

    pass


@dataclass
class PrefixPlan:
    """Which real modules make up the frozen prefix, and which one's output is cached."""

    model: nn.Module
    replaced: list[tuple[nn.Module, str, nn.Module]]  # (parent, attribute, original)
    last: nn.Module  # the prefix module whose output feeds the trainable rest
    first_trainable: int  # stage index
    inject: nn.Module

    def capture(self, x: torch.Tensor) -> torch.Tensor:
        """Run only the prefix (the forward stops right after it) and return its output."""
        box: dict[str, Any] = {}

        def hook(_m: Any, _inp: Any, out: Any) -> None:
            box["out"] = out
            raise StopForward

        handle = self.last.register_forward_hook(hook)
        try:
            self.model(x)
        except StopForward:
            pass
        finally:
            handle.remove()
        if "out" not in box:
            raise RuntimeError("the prefix's last module did not run")
        out: torch.Tensor = box["out"]
        return out


@contextmanager
def substituted(plan: PrefixPlan, enabled: bool = True) -> Iterator[nn.Module]:
    """The model with its prefix modules replaced: ``plan.inject.value`` is the input."""
    if not enabled:
        yield plan.model
        return
    for parent, attr, original in plan.replaced:
        setattr(parent, attr, plan.inject if original is plan.last else _identity_module())
    try:
        yield plan.model
    finally:
        for parent, attr, original in plan.replaced:
            setattr(parent, attr, original)
        plan.inject.value = None  # type: ignore[assignment]


def record_calls(model: nn.Module, x: torch.Tensor) -> dict[int, list[tuple[int, int]]]:
    """id(module) -> [(pre index, post index), ...] for one forward pass."""
    import torch

    counter = [0]
    calls: dict[int, list[tuple[int, int]]] = {}
    open_calls: dict[int, list[int]] = {}
    handles = []

    def pre(m: Any, _inp: Any) -> None:
        counter[0] += 1
        open_calls.setdefault(id(m), []).append(counter[0])

    def post(m: Any, _inp: Any, _out: Any) -> None:
        counter[0] += 1
        start = open_calls[id(m)].pop()
        calls.setdefault(id(m), []).append((start, counter[0]))

    for _, module in model.named_modules():
        if module is model:
            continue
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def plan_prefix(
    model: nn.Module,
    stages: Sequence[tuple[str, nn.Module]],
    first_trainable: int,
    example: torch.Tensor,
) -> PrefixPlan | None:
    """Find the frozen prefix (stages below ``first_trainable``) as real modules of the
    model that run before anything else; None when the model is not laid out that way."""
    if first_trainable <= 0:
        return None
    prefix_children: list[nn.Module] = []
    for _, container in stages[:first_trainable]:
        if any(True for _ in container.named_parameters(recurse=False)):
            return None  # a bare parameter (a ViT's cls token) is used outside any module
        prefix_children.extend(child for _, child in container.named_children())
    if not prefix_children:
        return None
    trainable_modules = [
        m
        for _, container in stages[first_trainable:]
        for m in container.modules()
        if m is not container
    ]
    was_training = model.training
    model.eval()
    try:
        calls = record_calls(model, example)
    except Exception:
        return None
    finally:
        model.train(was_training)
    starts = [calls[id(m)][0][0] for m in trainable_modules if id(m) in calls]
    if not starts:
        return None
    boundary = min(starts)
    last, last_end = None, -1
    for module in prefix_children:
        seen = calls.get(id(module))
        if seen is None:
            continue  # never called (e.g. an unused module): nothing to skip
        if len(seen) != 1 or seen[0][1] > boundary:
            return None
        if seen[0][1] > last_end:
            last, last_end = module, seen[0][1]
    if last is None:
        return None
    owners: dict[int, tuple[nn.Module, str]] = {}
    for _, parent in model.named_modules():
        for attr, child in parent.named_children():
            owners.setdefault(id(child), (parent, attr))
    replaced = []
    for module in prefix_children:
        if id(module) not in calls:
            continue
        if id(module) not in owners:
            return None
        parent, attr = owners[id(module)]
        replaced.append((parent, attr, module))
    return PrefixPlan(model, replaced, last, first_trainable, _inject_module())


def verify_prefix(plan: PrefixPlan, x: torch.Tensor, autocast: Any) -> bool:
    """The substituted model gives the original's output on real inputs (eval mode)."""
    import torch

    model = plan.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast():
            reference = model(x).float()
            cached = plan.capture(x)
            with substituted(plan) as sub:
                plan.inject.value = cached
                out = sub(torch.zeros_like(x)).float()
    except Exception:
        return False
    finally:
        model.train(was_training)
    scale = float(reference.abs().max()) or 1.0
    return bool(torch.allclose(out, reference, rtol=1e-3, atol=1e-3 * scale))
