"""Checking what plugins hand zoo: registered objects and the backbones providers build.

Every check raises :class:`zoo.PluginError` with one line naming the plugin, the object
and the member at fault, so ``zoo plugins`` can show it and the CLI can print it.

- Registered providers, strategies, exporters, metrics and data sources are checked
  member by member (callables callable, names in the reference grammar, strings and
  tuples of strings where the protocol says so, a provider's optional ``grammar`` a
  well-formed :class:`zoo.NameGrammar`), then against the ``runtime_checkable`` protocol.
- A strategy's ``plan`` and its optional members (``zoo.contract.protocols``,
  ``STRATEGY_EXTRAS``) must accept the arguments zoo passes them; the registry then hands
  it out as a ``zoo.contract.strategy.DeclaredStrategy``, which knows which it has.
- A provider's ``build`` is checked on every call that goes through the catalogue
  (:class:`CheckedProvider`): the result is a :class:`zoo.Backbone`, its stages partition
  the model's parameters (:func:`zoo.check_partition`) and its last stage is ``head``.

This module stays light: torch is imported only when a backbone is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import BadReferenceError, PluginError, ZooError
from zoo.contract.protocols import (
    STRATEGY_EXTRAS,
    Backbone,
    DataSource,
    Exporter,
    Metric,
    Provider,
)
from zoo.contract.refs import NameGrammar, parse_ref
from zoo.contract.strategy import signature, takes_summary

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "CONTRACTS",
    "CheckedProvider",
    "Contract",
    "check_backbone",
    "check_registration",
    "grammar_of",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RESERVED_SCHEMES = frozenset({"models", "bare"})


# ------------------------------------------------------------------ member checks
# Each returns None when the value is fine, else what it should be (for the message).


def _callable(value: Any) -> str | None:
    return None if callable(value) else "a callable"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def _texts(value: Any) -> str | None:
    ok = (
        isinstance(value, tuple | list)
        and bool(value)
        and all(isinstance(v, str) and v for v in value)
    )
    return None if ok else "a non-empty tuple of strings"


def _scheme(value: Any) -> str | None:
    """A provider name is the scheme of the references it answers (``NAME:...``)."""
    want = "a reference scheme: lowercase letters, digits, '_' or '-', starting with a letter"
    if not isinstance(value, str) or value in _RESERVED_SCHEMES:
        return want + " (not 'models')"
    try:  # the shared grammar only: no provider's grammar is asked (none may be loaded yet)
        ok = parse_ref(f"{value}:x", grammars={}).scheme == value
    except BadReferenceError:
        ok = False
    return None if ok else want


def _bare_name(value: Any) -> str | None:
    """Strategy and exporter names are written bare (``--strategy NAME``, ``NAME.FMT``)."""
    want = "a name of letters, digits, '_', '-' or '.' (the reference grammar's bare NAME)"
    if not isinstance(value, str) or " " in value:
        return want
    try:
        ok = parse_ref(value, grammars={}).scheme == "bare"
    except BadReferenceError:
        ok = False
    return None if ok else want


def _grammar(value: Any) -> str | None:
    """A provider's name grammar: a NameGrammar whose parts make sense."""
    want = "a zoo.NameGrammar (NameGrammar.simple(), .tagged() or .repo())"
    if not isinstance(value, NameGrammar):
        return want
    if not isinstance(value.pattern, re.Pattern):
        return want + " with a compiled `pattern`"
    texts = (value.form, value.refusal, value.no_revisions)
    if not all(isinstance(t, str) and t.strip() and "\n" not in t for t in texts):
        return want + " whose form, refusal and no_revisions are one-line strings"
    if ":" in value.form or " " in value.form:
        return want + " whose form is what follows 'SCHEME:' (no ':' or spaces)"
    if not isinstance(value.split_tag, bool) or not isinstance(value.revisions, bool):
        return want + " whose split_tag and revisions are True or False"
    try:
        value.no_revisions.format(scheme="x")
    except (KeyError, IndexError, ValueError):
        return want + " whose no_revisions names no field but {scheme}"
    return None


def grammar_of(provider: object) -> NameGrammar | None:
    """The name grammar a provider declares (its optional ``grammar``), or None."""
    grammar = getattr(provider, "grammar", None)
    return grammar if isinstance(grammar, NameGrammar) else None


def _accepts(positional: Sequence[str], keyword: Sequence[str] = ()) -> Check:
    """A callable that zoo can call with these arguments (the names say what they are)."""
    want = f"a callable taking ({', '.join([*positional, *keyword])})"

    def check(value: Any) -> str | None:
        if not callable(value):
            return want
        sig = signature(value)
        if sig is None:
            return None  # nothing to check against: the call will tell
        try:
            sig.bind(*positional, **{k: k for k in keyword})
        except TypeError:
            return want
        return None

    return check


def _plans(value: Any) -> str | None:
    """``plan(stages, settings)``, or ``plan(stages, settings, summary=...)`` when it
    declares a ``summary`` (protocols.PlansOnSummary)."""
    if takes_summary(value):
        return _accepts(("stages", "settings"), ("summary",))(value)
    return _accepts(("stages", "settings"))(value)


Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Contract:
    """What one kind of registered object must (and may) have."""

    kind: str  # "provider", "strategy", "exporter", "metric", "data_source"
    hook: str  # the registration hook, for the docs link
    protocol: type | None  # checked with isinstance once the members pass
    required: Mapping[str, Check]
    optional: Mapping[str, Check] = field(default_factory=dict)

    def doc(self) -> str:
        return f"docs/plugins/{self.hook}.md"


CONTRACTS: dict[str, Contract] = {
    "provider": Contract(
        "provider",
        "register_providers",
        Provider,
        required={
            "name": _scheme,
            "version": _callable,
            "index": _callable,
            "describe": _callable,
            "pull": _callable,
            "build": _callable,
        },
        optional={"search": _callable, "cache_index": _flag, "grammar": _grammar},
    ),
    # zoo.Strategy's optional members (protocols.STRATEGY_EXTRAS) are checked when present,
    # so that a strategy without them still registers.
    "strategy": Contract(
        "strategy",
        "register_strategies",
        None,
        required={"name": _bare_name, "summary": _text, "plan": _plans},
        optional={member: _accepts(*args) for member, args in STRATEGY_EXTRAS.items()},
    ),
    "metric": Contract(
        "metric",
        "register_metrics",
        Metric,
        required={
            "name": _bare_name,
            "summary": _text,
            "needs_source": _flag,
            "score": _callable,
        },
    ),
    "exporter": Contract(
        "exporter",
        "register_exporters",
        Exporter,
        required={
            "name": _bare_name,
            "summary": _text,
            "precisions": _texts,
            "export": _callable,
        },
        optional={"log_model": _callable, "open": _callable, "report_lines": _callable},
    ),
    "data_source": Contract(
        "data_source",
        "register_data_sources",
        DataSource,
        required={
            "name": _bare_name,
            "summary": _text,
            "claims": _accepts(("path",)),
            "images": _accepts(("path",)),
            "read": _accepts(("path", "name")),
        },
        optional={"count": _accepts(("path",))},
    ),
}


def check_registration(kind: str, plugin: str, obj: object) -> str:
    """The object's name if it honours its contract; else PluginError in one line."""
    contract = CONTRACTS[kind]
    name = getattr(obj, "name", None)
    label = f"{kind} '{name}'" if isinstance(name, str) and name else f"a {kind}"
    proto = f"zoo.{contract.protocol.__name__ if contract.protocol else kind.title()}"
    where = f"implement {proto}"
    for member, check in contract.required.items():
        if not hasattr(obj, member):
            raise PluginError(
                f"plugin '{plugin}' registered {label} without `{member}`: {where} "
                f"({contract.doc()})"
            )
        problem = check(getattr(obj, member))
        if problem:
            raise PluginError(
                f"plugin '{plugin}' registered {label} whose `{member}` is not {problem} "
                f"({contract.doc()})"
            )
    for member, check in contract.optional.items():
        if hasattr(obj, member):
            problem = check(getattr(obj, member))
            if problem:
                raise PluginError(
                    f"plugin '{plugin}' registered {label} whose optional `{member}` is not "
                    f"{problem} ({contract.doc()})"
                )
    if contract.protocol is not None and not isinstance(obj, contract.protocol):
        raise PluginError(f"plugin '{plugin}' registered {label} that is not a {proto}")
    return str(name)


# ---------------------------------------------------------------------- backbones


def check_backbone(plugin: str, provider: str, ref: object, backbone: object) -> None:
    """Raise PluginError unless ``backbone`` is what the engine relies on."""

    def refuse(why: str) -> PluginError:
        return PluginError(
            f"plugin '{plugin}': provider '{provider}' built '{ref}' {why} "
            "(docs/plugins/register_providers.md)"
        )

    for member in ("info", "model", "head", "stages", "weights_sha256"):
        if not hasattr(backbone, member):
            raise refuse(f"as an object without `{member}`: return a zoo.Backbone")
    if not isinstance(backbone, Backbone):
        raise refuse("as an object that is not a zoo.Backbone")
    sha = backbone.weights_sha256
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise refuse("with `weights_sha256` that is neither None nor a lowercase SHA-256")
    stages: Sequence[tuple[str, Any]] = list(backbone.stages())
    if not stages:
        raise refuse("with no stages")
    names = [s[0] if isinstance(s, tuple) and len(s) == 2 else None for s in stages]
    if any(not isinstance(n, str) or not n for n in names):
        raise refuse("with stages that are not (name, module) pairs")
    if len(set(names)) != len(names):
        raise refuse(f"with a stage name used twice ({', '.join(map(str, names))})")
    try:
        check_partition(backbone.model, stages)
    except ZooError as exc:
        raise refuse(f"with stages that do not partition the model: {exc}") from exc
    head_params = {id(p) for p in backbone.head.parameters()}
    last_params = {id(p) for p in stages[-1][1].parameters()}
    if head_params != last_params:
        raise refuse(
            f"whose last stage '{names[-1]}' is not its `head`: the head stage holds the "
            "classifier and only the classifier"
        )


class CheckedProvider:
    """A registered provider whose ``build`` results are checked before anyone uses them.

    Every other member is the provider's own (``describe.__self__`` is the provider).
    """

    def __init__(self, provider: Provider, plugin: str) -> None:
        self._provider = provider
        self._plugin = plugin

    def __getattr__(self, member: str) -> Any:
        return getattr(self._provider, member)

    @property
    def wrapped(self) -> Provider:
        return self._provider

    def build(self, ref: Any, **kwargs: Any) -> Backbone:
        backbone = self._provider.build(ref, **kwargs)
        check_backbone(self._plugin, self._provider.name, ref, backbone)
        return backbone


def check_partition(model: nn.Module, stages: Sequence[tuple[str, nn.Module]]) -> None:
    """Raise unless every parameter of ``model`` is in exactly one stage (and no other)."""
    owner: dict[int, str] = {}
    for stage_name, stage in stages:
        for param in stage.parameters():
            if id(param) in owner and owner[id(param)] != stage_name:
                raise ZooError(f"a parameter is in stages '{owner[id(param)]}' and '{stage_name}'")
            owner[id(param)] = stage_name
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [n for pid, n in names.items() if pid not in owner]
    if missing:
        raise ZooError(f"parameters in no stage: {', '.join(missing[:5])}")
    extra = [s for pid, s in owner.items() if pid not in names]
    if extra:
        raise ZooError(f"stage '{extra[0]}' holds a parameter the model does not have")
