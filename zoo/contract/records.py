"""The plugin manager's records: what `zoo plugins` shows of each plugin, and the
registries of names (who registered what; who wins a name registered twice)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

__all__ = ["NameRegistry", "PluginInfo", "distribution_of"]

T = TypeVar("T")


@dataclass
class PluginInfo:
    """One plugin as `zoo plugins` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    module: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # None: loaded and working
    api: int | None = None  # the plugin API it declares it needs (zoo_plugin_api)
    # what it registered, by kind: {"provider": ["timm"], "command": ["hello"], ...}
    registered: dict[str, list[str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)  # refused, the rest kept working
    printed: str = ""  # what it wrote to stdout/stderr while loading (a note, never JSON)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "failed"
        return "conflict" if self.conflicts else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": list(self.hooks),
            "status": self.status,
            "error": self.error,
            "api": self.api,
            "registered": {k: list(v) for k, v in sorted(self.registered.items())},
            "conflicts": list(self.conflicts),
        }


class NameRegistry(Generic[T]):
    """Name -> object, with the plugin that registered each name.

    Names claimed by several plugins are kept aside in ``claims`` until :meth:`settle`
    decides them (zoo's own plugin wins; otherwise nobody does).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.items: dict[str, T] = {}
        self.owners: dict[str, str] = {}
        self.claims: dict[str, list[tuple[str, T]]] = {}
        self.conflicted: dict[str, list[str]] = {}  # name -> plugins, none of them used

    def add(self, plugin: str, name: str, obj: T) -> None:
        self.claims.setdefault(name, []).append((plugin, obj))

    def settle(self, first_party: Callable[[str], bool]) -> dict[str, str]:
        """Fill ``items``; return {plugin: conflict message} for every losing claim."""
        losers: dict[str, str] = {}
        for name, claims in self.claims.items():
            if len(claims) == 1:
                self.owners[name], self.items[name] = claims[0]
                continue
            plugins = [plugin for plugin, _ in claims]
            own = [(plugin, obj) for plugin, obj in claims if first_party(plugin)]
            if len(own) == 1:
                winner = own[0][0]
                self.owners[name], self.items[name] = own[0]
                for plugin in plugins:
                    if plugin != winner:
                        losers[plugin] = (
                            f"registers {self.kind} '{name}', which zoo's own plugin "
                            f"'{winner}' provides: not used (rename it in the plugin, or "
                            "uninstall the plugin)"
                        )
                continue
            self.conflicted[name] = plugins
            for plugin in plugins:
                others = ", ".join(f"'{p}'" for p in plugins if p != plugin)
                losers[plugin] = (
                    f"registers {self.kind} '{name}', as does plugin {others}: neither is "
                    "used (uninstall one, or set ZOO_LOAD_PLUGINS)"
                )
        return losers


@functools.lru_cache(maxsize=64)
def _parsed(text: str) -> tuple[str | None, str | None]:
    from email.parser import HeaderParser

    headers = HeaderParser().parsestr(text)
    return headers.get("Name"), headers.get("Version")


def distribution_of(dist: metadata.Distribution | None) -> tuple[str | None, str | None]:
    """A plugin's distribution name and version from its core metadata, parsed once per
    distribution (zoo's own plugins share one; ``dist.name`` and ``dist.version`` would
    parse it twice for each plugin: a tenth of a warm ``zoo list``)."""
    if dist is None:
        return None, None
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    return _parsed(text) if text else (None, None)
