"""The plugin manager: loads the ``zoo`` entry points one by one, in isolation.

- A plugin that fails to import, needs a newer plugin API (``zoo_plugin_api``), implements
  an unknown hook, raises while registering, or registers an object that breaks its
  contract (zoo.contract.checks) is recorded (name, one-line error) and skipped; zoo keeps
  working. ``ZOO_STRICT_PLUGINS=1`` re-raises instead, for plugin authors.
- ``ZOO_LOAD_PLUGINS=a,b`` loads only the named entry points (empty: none).
- Each hook implementation is called on its own with only the arguments it declares.
- A plugin's ``zoo_plugin_api`` is read from its module's source before the module runs
  (zoo.contract.source); what a plugin prints while imported or registering is captured
  (``zoo plugins`` notes it; stdout stays clean for --json); ``sys.exit()`` in a plugin
  marks it failed instead of ending zoo.
- Registries (providers, strategies, exporters, metrics, data sources) are owned here: every
  registration is validated. A name registered twice: zoo's own plugin (distribution
  transfer-zoo) keeps it and the other plugin is marked ``conflict``; between two third
  parties, both are marked ``conflict`` and neither is used. A plugin's registrations
  from one hook count only when all of them pass. ``parse_ref`` asks here for the
  registered providers' name grammars (zoo.contract.refs).
- Registered objects are handed out wrapped (zoo.contract.call.PluginObject): an exception
  a plugin raises by mistake names the plugin and the method it failed in. A strategy is
  wrapped once more (zoo.contract.strategy.DeclaredStrategy): which optional members it
  has is read at registration, not looked up by the engine.
- A plugin command that would replace a built-in (or another plugin's) command is
  refused and recorded as a conflict; the original command stays.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

import pluggy

from zoo.contract import hookspecs
from zoo.contract.call import PluginObject
from zoo.contract.checks import check_registration, grammar_of
from zoo.contract.errors import PluginError
from zoo.contract.hookspecs import PLUGIN_API
from zoo.contract.protocols import DataSource, Exporter, Metric, Provider
from zoo.contract.records import NameRegistry, PluginInfo, distribution_of
from zoo.contract.refs import NameGrammar, answer_grammars, grammars_unasked
from zoo.contract.source import NOT_DECLARED, captured, declared_api
from zoo.contract.strategy import DeclaredStrategy, strategy_extras

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PLUGIN_API",
    "PluginInfo",
    "PluginManager",
    "get_plugin_manager",
    "reset_plugin_manager",
]

ENTRY_POINT_GROUP = "zoo"
FIRST_PARTY = "transfer-zoo"  # zoo's own distribution: its plugins win a name conflict
# kind of registered object -> the hook that registers it
KINDS = {
    "provider": "register_providers",
    "strategy": "register_strategies",
    "exporter": "register_exporters",
    "metric": "register_metrics",
    "data_source": "register_data_sources",
}
T = TypeVar("T")


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


def _call(impl: Any, **available: Any) -> Any:
    """Call one hook implementation with only the arguments it declares."""
    return impl.function(**{name: available[name] for name in impl.argnames})


class PluginManager:
    """zoo's pluggy manager plus the registries its registration hooks fill."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._registries: dict[str, NameRegistry[Any]] = {}
        self._lock = threading.RLock()
        if load_entry_points:
            with grammars_unasked():  # a plugin parsing a reference must not load plugins
                self.load_entry_points()

    # ------------------------------------------------------------------ loading

    def load_entry_points(self) -> None:
        allowed = _allowed()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if allowed is not None and ep.name not in allowed:
                continue
            if ep.name in self.plugins:
                continue
            distribution, version = distribution_of(getattr(ep, "dist", None))
            info = PluginInfo(
                name=ep.name, distribution=distribution, version=version, module=ep.value
            )
            self.plugins[ep.name] = info
            api = declared_api(ep.module)  # read from the source: the module has not run
            if api is not NOT_DECLARED and not self._api_ok(info, api):
                continue
            failure: tuple[str, BaseException] | None = None
            with captured() as out:
                try:
                    obj = ep.load()
                except SystemExit as exc:  # a plugin must not end zoo
                    failure = (f"called sys.exit({exc.code!r}) while imported", exc)
                except Exception as exc:  # isolation: one broken plugin must not break zoo
                    failure = (f"failed to import: {_one_line(exc)}", exc)
            info.printed += out.text
            if failure is not None:
                self._fail(info, *failure)
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

    def _api_ok(self, info: PluginInfo, api: object) -> bool:
        """Check a declared ``zoo_plugin_api``; mark the plugin failed when it does not fit."""
        if not isinstance(api, int) or isinstance(api, bool):
            self._fail(info, f"declares zoo_plugin_api = {api!r}: it must be an int", None)
            return False
        info.api = api
        if api > PLUGIN_API:
            self._fail(
                info,
                f"needs zoo plugin API {api}, this zoo has {PLUGIN_API}: upgrade "
                "transfer-zoo (pip install -U transfer-zoo) or install an older plugin",
                None,
            )
            return False
        return True

    def _register_checked(self, obj: object, info: PluginInfo) -> None:
        api = getattr(obj, "zoo_plugin_api", None)
        if api is not None and not self._api_ok(info, api):
            return
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
        wrappers = [
            impl.name
            for impl in self.pm.get_hookcallers(obj) or []
            for hookimpl in impl.get_hookimpls()
            if hookimpl.plugin is obj and (hookimpl.hookwrapper or hookimpl.wrapper)
        ]
        if wrappers:
            self.pm.unregister(name=info.name)
            self._fail(info, f"wraps hook {wrappers[0]}: zoo hooks take no wrappers", None)
            return
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(obj) or [])

    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None) -> None:
        """Mark a plugin failed (first error kept whole, later ones appended)."""
        message = message.removeprefix(f"plugin '{info.name}' ")
        info.error = message if info.error is None else f"{info.error}; {message}"
        if _strict():
            raise PluginError(f"plugin '{info.name}' {message}") from exc

    def _conflict(self, info: PluginInfo, message: str) -> None:
        info.conflicts.append(message)
        if _strict():
            raise PluginError(f"plugin '{info.name}' {message}")

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if not p.ok]

    # --------------------------------------------------------------- registries

    def _collect(self, kind: str) -> NameRegistry[Any]:
        """Call one registration hook plugin by plugin, so errors name their plugin.

        A plugin's objects are checked as it registers them and added only if its whole
        hook call succeeded; a plugin that breaks the contract is marked failed and
        skipped, the others register.
        """
        hook_name = KINDS[kind]
        registry: NameRegistry[Any] = NameRegistry(kind)
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():  # registration order
            plugin = impl.plugin_name
            info = self.plugins.get(plugin)
            if info is not None and not info.ok:
                continue  # failed in another hook: skipped whole
            staged: list[tuple[str, Any]] = []
            problems: list[PluginError] = []

            def register(
                obj: Any,
                _plugin: str = plugin,
                _staged: list[tuple[str, Any]] = staged,
                _problems: list[PluginError] = problems,
            ) -> None:
                try:
                    _staged.append((check_registration(kind, _plugin, obj), obj))
                except PluginError as exc:
                    _problems.append(exc)  # kept even if the plugin swallows it
                    raise

            with captured() as out:
                try:
                    _call(impl, register=register)
                except (Exception, SystemExit) as exc:
                    if not problems:
                        problems.append(PluginError(f"raised in {hook_name}: {_one_line(exc)}"))
            if info is not None:
                info.printed += out.text
            if problems:
                if info is None:
                    raise problems[0]
                self._fail(info, str(problems[0]), problems[0])
                continue
            for name, obj in staged:  # every method call is named after plugin and method
                wrapped: Any = PluginObject(obj, plugin, kind)
                if kind == "strategy":  # its optional members, known from now on
                    wrapped = DeclaredStrategy(wrapped, strategy_extras(obj))
                registry.add(plugin, name, wrapped)
            if info is not None and staged:
                info.registered[kind] = sorted(
                    {*info.registered.get(kind, []), *(n for n, _ in staged)}
                )
        for plugin, message in registry.settle(self._first_party).items():
            info = self.plugins.get(plugin)
            if info is None:  # registered in-process without a PluginInfo: cannot happen
                raise PluginError(f"plugin '{plugin}' {message}")
            if message not in info.conflicts:
                self._conflict(info, message)
        return registry

    def _first_party(self, plugin: str) -> bool:
        info = self.plugins.get(plugin)
        return info is not None and info.distribution == FIRST_PARTY

    def conflicted(self, kind: str, name: str) -> list[str]:
        """The plugins that all registered ``name`` (none of them used); [] if none."""
        return list(self._registry(kind).conflicted.get(name, []))

    def _registry(self, kind: str) -> NameRegistry[Any]:
        with self._lock:
            if kind not in self._registries:
                with grammars_unasked():
                    self._registries[kind] = self._collect(kind)
            return self._registries[kind]

    def providers(self) -> dict[str, Provider]:
        return self._registry("provider").items

    def grammars(self) -> dict[str, NameGrammar]:
        """The name grammar each registered provider declares, by scheme (docs/references.md)."""
        found = ((name, grammar_of(p)) for name, p in self.providers().items())
        return {name: grammar for name, grammar in found if grammar is not None}

    def strategies(self) -> dict[str, DeclaredStrategy]:
        return self._registry("strategy").items

    def exporters(self) -> dict[str, Exporter]:
        return self._registry("exporter").items

    def metrics(self) -> dict[str, Metric]:
        return self._registry("metric").items

    def data_sources(self) -> dict[str, DataSource]:
        return self._registry("data_source").items

    def owner(self, kind: str, name: str) -> str | None:
        """Which plugin registered a provider/strategy/exporter name."""
        registry = self._registries.get(kind)
        return registry.owners.get(name) if registry else None

    def owner_info(self, kind: str, name: str) -> PluginInfo | None:
        """The PluginInfo (distribution, version) of whoever registered ``name``."""
        self._registry(kind)
        owner = self.owner(kind, name)
        return self.plugins.get(owner) if owner else None

    def collect_all(self) -> list[str]:
        """Fill every registry; one line per registry that could not be built (duplicates)."""
        problems = []
        for kind in KINDS:
            try:
                self._registry(kind)
            except PluginError as exc:
                problems.append(str(exc))
        return problems

    def add_commands(self, cli: Any, on_conflict: Callable[[str, str], None] | None = None) -> None:
        """Let every plugin add its CLI commands.

        A plugin that raises has all of its commands removed and is marked failed; one that
        would replace an existing command keeps its other commands, the original stays,
        and the conflict is recorded (``zoo plugins`` shows it; ``on_conflict(plugin,
        message)`` hears of it too).
        """
        hook = self.pm.hook.register_commands
        for impl in hook.get_hookimpls():
            info = self.plugins.get(impl.plugin_name)
            if info is not None and not info.ok:
                continue
            before = dict(cli.commands)
            with captured() as out:
                try:
                    _call(impl, cli=cli)
                    raised: BaseException | None = None
                except (Exception, SystemExit) as error:
                    raised = error
            if info is not None:
                info.printed += out.text
            if raised is not None:
                cli.commands.clear()
                cli.commands.update(before)
                if info is None:
                    raise raised
                self._fail(info, f"raised in register_commands: {_one_line(raised)}", raised)
                continue
            added = sorted(name for name in cli.commands if name not in before)
            for name, cmd in before.items():
                if cli.commands.get(name) is not cmd:
                    cli.commands[name] = cmd
                    message = (
                        f"tried to replace the command 'zoo {name}' (kept the original; "
                        "rename the plugin's command)"
                    )
                    if on_conflict is not None:
                        on_conflict(impl.plugin_name, message)
                    if info is None:
                        raise PluginError(f"plugin '{impl.plugin_name}' {message}")
                    self._conflict(info, message)
            if info is not None and added:
                info.registered["command"] = added


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


# parse_ref's providers' grammars come from here: refs.py imports no plugin code.
answer_grammars(lambda: get_plugin_manager().grammars())
