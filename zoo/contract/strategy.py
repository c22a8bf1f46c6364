"""A registered strategy's optional members, known once, at registration.

``zoo.Strategy`` declares its optional members (``zoo.contract.protocols``:
``PlansOnSummary``, ``PreparesModel``, ``FinalizesModel``, ``Chooses``;
``STRATEGY_EXTRAS``). ``zoo.contract.checks`` checks that those a strategy has accept
the arguments zoo passes; the plugin manager then hands the strategy out as a
:class:`DeclaredStrategy`, so the engine calls every member without asking whether it is
there (no ``getattr``, no ``inspect`` at run time).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zoo.contract.protocols import STRATEGY_EXTRAS

__all__ = ["DeclaredStrategy", "StrategyExtras", "signature", "strategy_extras", "takes_summary"]


def signature(value: Any) -> inspect.Signature | None:
    """``value``'s signature, or None when Python cannot tell (a builtin, some C types)."""
    try:
        return inspect.signature(value)
    except (TypeError, ValueError):
        return None


def takes_summary(plan: Any) -> bool:
    """``plan`` declares a ``summary`` parameter (or ``**kwargs``): zoo passes one."""
    sig = signature(plan)
    if sig is None:
        return False
    params = sig.parameters
    return "summary" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@dataclass(frozen=True)
class StrategyExtras:
    """Which optional members (``protocols.STRATEGY_EXTRAS``) a registered strategy has."""

    plan_summary: bool = False  # plan(stages, settings, summary=...)
    prepare_model: bool = False
    finalize_model: bool = False
    candidates: bool = False  # a choosing strategy (auto)


def strategy_extras(strategy: object) -> StrategyExtras:
    """Read once, at registration, from a strategy that passed its contract."""
    return StrategyExtras(
        plan_summary=takes_summary(getattr(strategy, "plan", None)),
        **{member: hasattr(strategy, member) for member in STRATEGY_EXTRAS},
    )


_NOT_GIVEN: Any = object()


class DeclaredStrategy:
    """A registered strategy as the engine calls it: every optional member is there, and
    does what zoo does without it when the strategy has none (plan without the summary,
    train by stage, register the model as it is). ``extras`` says which it has; any other
    attribute is the strategy's own (through its :class:`zoo.contract.call.PluginObject`)."""

    def __init__(self, strategy: Any, extras: StrategyExtras) -> None:
        self._strategy = strategy
        self.extras = extras

    def __getattr__(self, member: str) -> Any:
        if member == "_strategy":  # not set yet (copying): no recursion
            raise AttributeError(member)
        return getattr(self._strategy, member)

    def __repr__(self) -> str:
        return repr(self._strategy)

    @property
    def name(self) -> str:
        return str(self._strategy.name)

    @property
    def summary(self) -> str:
        return str(self._strategy.summary)

    def plan(self, stages: Sequence[str], settings: Any, summary: Any = _NOT_GIVEN) -> Any:
        if self.extras.plan_summary and summary is not _NOT_GIVEN:
            return self._strategy.plan(stages, settings, summary=summary)
        return self._strategy.plan(stages, settings)

    def prepare_model(self, model: Any, stages: Any, phase: Any, plan: Any) -> Iterable[Any] | None:
        if not self.extras.prepare_model:
            return None
        chosen: Iterable[Any] | None = self._strategy.prepare_model(model, stages, phase, plan)
        return chosen

    def finalize_model(self, model: Any) -> Any:
        return self._strategy.finalize_model(model) if self.extras.finalize_model else model

    def candidates(self, *args: Any, **kwargs: Any) -> Any:
        if not self.extras.candidates:
            raise AttributeError(f"strategy '{self.name}' offers no candidates")
        return self._strategy.candidates(*args, **kwargs)
