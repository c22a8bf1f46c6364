"""One wrapper around every call into a plugin's objects.

Registered objects (providers, strategies, exporters, metrics) are handed out wrapped in
:class:`PluginObject`: each public method call goes through :func:`call_plugin`, so an
exception a plugin did not mean to raise names the plugin and the method
(``plugin 'x' failed in strategy.plan: ZeroDivisionError: division by zero``) instead of
ending as "unexpected ZeroDivisionError". A ``zoo.ZooError`` (``UsageError``,
``UnknownModelError``...) a plugin raises on purpose already speaks to the user and
passes through unchanged, as do ``KeyboardInterrupt`` and ``GeneratorExit``. The original
exception is kept as ``__cause__``: ``zoo --debug`` (or ``ZOO_DEBUG=1``) prints it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from zoo.contract.errors import PluginError, ZooError

__all__ = ["PluginObject", "call_plugin", "unwrap"]

R = TypeVar("R")


def _failure(plugin: str, hook: str, exc: BaseException) -> PluginError:
    text = " ".join(str(exc).split())
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(what) > 300:
        what = what[:297] + "..."
    return PluginError(
        f"plugin '{plugin}' failed in {hook}: {what} (a bug in the plugin: report it to its "
        "authors; `zoo --debug` shows the traceback)"
    )


def call_plugin(plugin: str, hook: str, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``fn(*args, **kwargs)``, with any unintended exception named after plugin and hook.

    A generator result is wrapped too, so that an error raised while iterating it (a lazy
    ``index()``) is named the same way.
    """
    try:
        result = fn(*args, **kwargs)
    except (ZooError, KeyboardInterrupt, GeneratorExit):
        raise
    except (Exception, SystemExit) as exc:  # SystemExit: a plugin must not end zoo
        raise _failure(plugin, hook, exc) from exc
    if inspect.isgenerator(result):
        return _named_iteration(plugin, hook, result)  # type: ignore[return-value]
    return result


def _named_iteration(plugin: str, hook: str, gen: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from gen
    except (ZooError, KeyboardInterrupt, GeneratorExit):
        raise
    except (Exception, SystemExit) as exc:
        raise _failure(plugin, hook, exc) from exc


class PluginObject:
    """A registered object whose public methods are called through :func:`call_plugin`.

    Attributes that are not callables (``name``, ``summary``, ``precisions``) are the
    object's own; ``method.__self__`` is the plugin's own object, as without the proxy.
    """

    __slots__ = ("_zoo_kind", "_zoo_obj", "_zoo_plugin")

    def __init__(self, obj: Any, plugin: str, kind: str) -> None:
        object.__setattr__(self, "_zoo_obj", obj)
        object.__setattr__(self, "_zoo_plugin", plugin)
        object.__setattr__(self, "_zoo_kind", kind)

    def __getattr__(self, member: str) -> Any:
        value = getattr(self._zoo_obj, member)
        if member.startswith("_") or not callable(value) or isinstance(value, type):
            return value
        hook = f"{self._zoo_kind}.{member}"
        plugin = self._zoo_plugin

        @functools.wraps(value)
        def method(*args: Any, **kwargs: Any) -> Any:
            return call_plugin(plugin, hook, value, *args, **kwargs)

        owner = getattr(value, "__self__", None)
        if owner is not None:
            method.__self__ = owner  # type: ignore[attr-defined]
        return method

    def __setattr__(self, member: str, value: Any) -> None:
        setattr(self._zoo_obj, member, value)

    def __repr__(self) -> str:
        return f"<{self._zoo_kind} {self._zoo_obj!r} of plugin '{self._zoo_plugin}'>"


def unwrap(obj: Any) -> Any:
    """The plugin's own object behind a :class:`PluginObject` (or ``obj`` itself)."""
    return obj._zoo_obj if isinstance(obj, PluginObject) else obj
