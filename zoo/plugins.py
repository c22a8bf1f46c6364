"""The plugin manager: loads the ``zoo`` entry points one by one, in isolation.

- A plugin that fails to import, implements an unknown hook, or raises while registering
  is recorded (name, error) and skipped; zoo keeps working. ``ZOO_STRICT_PLUGINS=1``
  re-raises instead, for plugin authors.
- ``ZOO_LOAD_PLUGINS=a,b`` loads only the named entry points (empty: none).
- Registries (providers, strategies, exporters) are owned here: every registration is
  validated and a duplicate name raises, naming both plugins.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

import pluggy

from zoo import hookspecs
from zoo.errors import PluginError
from zoo.types import Exporter, Provider, Strategy

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "reset_plugin_manager",
]

ENTRY_POINT_GROUP = "zoo"
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

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "hooks": list(self.hooks),
            "status": "ok" if self.ok else "failed",
            "error": self.error,
        }


def _strict() -> bool:
    return os.environ.get("ZOO_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


def _allowed() -> set[str] | None:
    raw = os.environ.get("ZOO_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class _Registry(Generic[T]):
    """Name -> object, with the plugin that registered each name."""

    def __init__(self, kind: str, protocol: type, required: tuple[str, ...]) -> None:
        self.kind = kind
        self.protocol = protocol
        self.required = required
        self.items: dict[str, T] = {}
        self.owners: dict[str, str] = {}

    def register(self, plugin: str, obj: T) -> None:
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin '{plugin}' registered a {self.kind} without a name")
        missing = [attr for attr in self.required if not hasattr(obj, attr)]
        if missing:
            raise PluginError(
                f"plugin '{plugin}' registered {self.kind} '{name}' without "
                f"{', '.join(missing)}: implement zoo.{self.protocol.__name__}"
            )
        if name in self.items:
            raise PluginError(
                f"{self.kind} '{name}' is registered twice: by plugin '{self.owners[name]}' "
                f"and by plugin '{plugin}'; uninstall one or set ZOO_LOAD_PLUGINS"
            )
        self.items[name] = obj
        self.owners[name] = plugin


class PluginManager:
    """zoo's pluggy manager plus the registries its registration hooks fill."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registries: dict[str, _Registry[Any]] = {}
        self._lock = threading.RLock()
        if load_entry_points:
            self.load_entry_points()

    # ------------------------------------------------------------------ loading

    def load_entry_points(self) -> None:
        allowed = _allowed()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allowed is not None and ep.name not in allowed:
                continue
            if ep.name in self.plugins:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(
                name=ep.name,
                distribution=dist.name if dist is not None else None,
                version=dist.version if dist is not None else None,
                module=ep.value,
            )
            self.plugins[ep.name] = info
            try:
                obj = ep.load()
            except Exception as exc:  # isolation: one broken plugin must not break zoo
                self._fail(info, f"failed to import: {_one_line(exc)}", exc)
                continue
            self._register_checked(obj, info)

    def register(self, obj: object, name: str, *, distribution: str | None = None) -> None:
        """Register a plugin object in-process (tests, embedding applications)."""
        with self._lock:
            if name in self.plugins:
                raise PluginError(f"a plugin named '{name}' is already loaded")
            info = PluginInfo(name=name, distribution=distribution, module=repr(obj))
            self.plugins[name] = info
            self._register_checked(obj, info)
            self._registries.clear()  # rebuilt on next use, with the new plugin

    def unregister(self, name: str) -> None:
        with self._lock:
            if self.pm.has_plugin(name):
                self.pm.unregister(name=name)
            self.plugins.pop(name, None)
            self._registries.clear()

    def _register_checked(self, obj: object, info: PluginInfo) -> None:
        try:
            self.pm.register(obj, name=info.name)
        except Exception as exc:
            self._fail(info, f"failed to register: {_one_line(exc)}", exc)
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=info.name)
            self._fail(info, f"implements an unknown hook: {_one_line(exc)}", exc)
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])

    def _fail(self, info: PluginInfo, message: str, exc: BaseException) -> None:
        info.error = message
        if _strict():
            raise PluginError(f"plugin '{info.name}' {message}") from exc

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if not p.ok]

    # --------------------------------------------------------------- registries

    def _collect(self, hook_name: str, registry: _Registry[T]) -> _Registry[T]:
        """Call one registration hook plugin by plugin, so errors name their plugin."""
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            plugin = impl.plugin_name

            def register(obj: T, _plugin: str = plugin) -> None:
                registry.register(_plugin, obj)

            try:
                impl.function(register=register)
            except PluginError:
                raise  # contract violations (duplicates) are the user's to resolve
            except Exception as exc:
                info = self.plugins.get(plugin)
                if info is None:
                    raise
                self._fail(info, f"raised in {hook_name}: {_one_line(exc)}", exc)
        return registry

    def _registry(
        self, kind: str, hook_name: str, protocol: type, required: tuple[str, ...]
    ) -> _Registry[Any]:
        with self._lock:
            if kind not in self._registries:
                self._registries[kind] = self._collect(
                    hook_name, _Registry(kind, protocol, required)
                )
            return self._registries[kind]

    def providers(self) -> dict[str, Provider]:
        return self._registry(
            "provider",
            "register_providers",
            Provider,
            ("version", "index", "describe", "pull", "build"),
        ).items

    def strategies(self) -> dict[str, Strategy]:
        return self._registry("strategy", "register_strategies", Strategy, ("summary",)).items

    def exporters(self) -> dict[str, Exporter]:
        return self._registry("exporter", "register_exporters", Exporter, ("summary",)).items

    def owner(self, kind: str, name: str) -> str | None:
        """Which plugin registered a provider/strategy/exporter name."""
        registry = self._registries.get(kind)
        return registry.owners.get(name) if registry else None

    def add_commands(self, cli: Any, on_conflict: Callable[[str, str], None] | None = None) -> None:
        """Let every plugin add its CLI commands; a taken name raises PluginError."""
        hook = self.pm.hook.register_commands
        for impl in hook.get_hookimpls():
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                info = self.plugins.get(impl.plugin_name)
                if info is None:
                    raise
                self._fail(info, f"raised in register_commands: {_one_line(exc)}", exc)
                continue
            for name, cmd in before.items():
                if cli.commands.get(name) is not cmd:
                    cli.commands[name] = cmd
                    raise PluginError(
                        f"plugin '{impl.plugin_name}' tried to replace the command "
                        f"'zoo {name}'; choose another name"
                    )


_MANAGER: PluginManager | None = None
_MANAGER_LOCK = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide manager, loaded from entry points on first use."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = PluginManager()
        return _MANAGER


def reset_plugin_manager() -> None:
    """Forget the loaded plugins (tests; after changing ZOO_LOAD_PLUGINS)."""
    global _MANAGER
    with _MANAGER_LOCK:
        _MANAGER = None
