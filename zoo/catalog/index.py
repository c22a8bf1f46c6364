"""The catalogue: resolves references through the registered providers.

``zoo list`` must not pay for importing timm on every call, so each provider's index is
cached under ``$ZOO_HOME/catalog/`` and rebuilt when the provider's version (its
package version) changes. The index is JSON Lines: a header holding every reference, then
one entry per line, so a listing matches its pattern on the references and parses only
the lines it shows (timm's index is 1.2 MB; parsed whole it was most of a warm listing).
``zoo info`` likewise: what a provider's ``describe`` answered (sizes counted on the meta
device, the stage names) is kept beside the index, per reference, under the same rule, so
asking again imports neither timm nor torch. Providers that index local state (the
Hugging Face cache, local imports) set ``cache_index = False`` and are asked on every call.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zoo.contract.errors import (
    BadReferenceError,
    NotFoundError,
    UnknownModelError,
    UsageError,
)
from zoo.contract.plugins import get_plugin_manager
from zoo.contract.protocols import Provider
from zoo.contract.refs import Ref, parse_ref
from zoo.contract.types import BackboneInfo
from zoo.disk.paths import ReadOnlyHomeError, atomic_write_text, home, subdir

__all__ = [
    "INDEX_FORMAT",
    "answer_registered_names",
    "build_indexes",
    "cached_fact",
    "cached_index",
    "describe",
    "index",
    "index_path",
    "provider_for",
    "providers",
    "resolution_note",
    "resolve",
]

INDEX_FORMAT = 3  # 2: entries carry license_source; 3: JSON Lines, the references first

# Whether a bare NAME is a registered model: the registry sits above the catalogue, so it
# is given here (zoo/__init__.py gives zoo.registry.has_model) rather than imported.
_is_registered: Callable[[str], bool] | None = None


def answer_registered_names(check: Callable[[str], bool] | None) -> None:
    """Tell :func:`resolve` how to ask the registry whether a bare name is a registered
    model (None: bare names resolve to local imports only)."""
    global _is_registered
    _is_registered = check


def providers() -> dict[str, Provider]:
    return get_plugin_manager().providers()


def provider_for(ref: Ref) -> Provider:
    """The provider answering ``ref``'s scheme, once ``ref``'s name is checked against its
    grammar (a ``Ref`` made in code was never parsed); what it builds is checked too."""
    from zoo.contract.checks import CheckedProvider, grammar_of

    pm = get_plugin_manager()
    found = pm.providers()
    if ref.scheme in found:
        if (grammar := grammar_of(found[ref.scheme])) is not None:
            grammar.check(ref)
        return CheckedProvider(found[ref.scheme], pm.owner("provider", ref.scheme) or "?")
    claimants = pm.conflicted("provider", ref.scheme)
    if claimants:
        raise UnknownModelError(
            f"provider '{ref.scheme}' is registered by plugins "
            f"{' and '.join(repr(p) for p in claimants)}, so neither is used for '{ref}': "
            "uninstall one (see `zoo plugins`)"
        )
    names = ", ".join(sorted(found)) or "none"
    failed = sorted(p.name for p in pm.failures)
    why = f"; plugins that failed to load: {', '.join(failed)}" if failed else ""
    raise UnknownModelError(
        f"no provider '{ref.scheme}' is installed for '{ref}' (installed: {names}{why}); "
        "see `zoo plugins`"
    )


def index_path(provider_name: str) -> Path:
    return subdir("catalog") / f"{provider_name}.jsonl"


def _index_file(provider_name: str) -> Path:
    """Like :func:`index_path`, without creating the folder (a read-only home)."""
    try:
        return index_path(provider_name)
    except ReadOnlyHomeError:
        return home() / "catalog" / f"{provider_name}.jsonl"


def cached_index(
    provider: Provider,
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
    *,
    named: Callable[[str], bool] | None = None,
) -> list[BackboneInfo] | None:
    """The provider's entries from its on-disk index, or None when it must be (re)built.

    ``named`` is asked of each reference in the header, before its line is parsed, and
    ``keep`` of each parsed record, before an entry is built: a listing reads thousands
    and shows a few."""
    path = _index_file(provider.name)
    if not path.exists():
        return None
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
        header = json.loads(lines[0])
        if header.get("format") != INDEX_FORMAT or header.get("provider_version") != (
            provider.version()
        ):
            return None
        references = header["references"]
        if len(lines) < len(references) + 1:
            return None  # cut short: rebuild it
        entries = []
        for line, reference in enumerate(references, start=1):
            if named is not None and not named(reference):
                continue
            record = json.loads(lines[line])
            if keep is None or keep(record):
                entries.append(BackboneInfo.from_dict(record))
        return entries
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None  # unreadable index: rebuild it


def _build_index(provider: Provider) -> list[BackboneInfo]:
    entries = list(provider.index())
    header = {
        "format": INDEX_FORMAT,
        "provider": provider.name,
        "provider_version": provider.version(),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "references": [e.reference for e in entries],
    }
    # json.dumps without indent writes no newline: one record per line
    lines = [json.dumps(header), *(json.dumps(e.to_dict()) for e in entries)]
    path = _index_file(provider.name)
    with contextlib.suppress(OSError):  # a read-only home: list without caching the index
        atomic_write_text(path, "\n".join(lines) + "\n")
        path.with_suffix(".json").unlink(missing_ok=True)  # format 2's file, now unread
    return entries


def build_indexes(stale: list[Provider]) -> dict[str, list[BackboneInfo]]:
    """Build the indexes of ``stale`` providers, saying so while it lasts (timm's takes
    half a minute on a loaded machine): the warm path never comes here."""
    from zoo.progress import waiting

    folder = _index_file(stale[0].name).parent
    first = not (folder.is_dir() and any(folder.glob("*.jsonl")))
    title = "building the catalogue index" + (
        " (first run)" if first else " (new or updated providers)"
    )
    names = [p.name for p in stale]
    count = f"{len(names)} provider{'s' if len(names) != 1 else ''}"
    built: dict[str, list[BackboneInfo]] = {}
    with waiting(title, f"{count} ({', '.join(names)})") as wait:
        for i, prov in enumerate(stale, start=1):
            wait.update(f"{prov.name} ({i} of {len(stale)})")
            built[prov.name] = _build_index(prov)
    return built


def index(provider: Provider, *, rebuild: bool = False) -> list[BackboneInfo]:
    """The provider's entries, from the on-disk index while its version is unchanged."""
    if not getattr(provider, "cache_index", True):
        return list(provider.index())
    cached = None if rebuild else cached_index(provider)
    if cached is not None:
        return cached
    return build_indexes([provider])[provider.name]


def _suggestions(prov: Provider, ref: Ref) -> list[str]:
    """Close names, the obvious one first: a name the typed one starts (``resnet5`` ->
    ``resnet50``) before a merely similar one; architectures for a reference without a
    tag, full ``ARCH.TAG`` names for one with a tag."""
    try:
        names = [e.name for e in index(prov)]
    except Exception:
        return []
    typed = ref.name.lower()
    pool = sorted({n.split(".", 1)[0] for n in names}) if "." not in typed else names

    def score(name: str) -> tuple[bool, float, int]:
        low = name.lower()
        ratio = difflib.SequenceMatcher(None, typed, low).ratio()
        return (low.startswith(typed), ratio, -len(low))

    scored = [(score(n), n) for n in pool]
    close = [n for sc, n in scored if sc[1] >= 0.75 or (sc[0] and len(typed) >= 3)]
    close.sort(key=lambda n: score(n), reverse=True)
    return [f"{prov.name}:{n}" for n in close[:3]]


def _described_file(provider: Provider) -> Path | None:
    if not getattr(provider, "cache_index", True):
        return None
    return _index_file(provider.name).with_name(f"{provider.name}.described.json")


def _read_described(provider: Provider) -> dict[str, Any]:
    path = _described_file(provider)
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") == INDEX_FORMAT and data.get("provider_version") == (
            provider.version()
        ):
            entries = data.get("entries")
            return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _remember(provider: Provider, keys: list[str], **facts: Any) -> None:
    """Add ``facts`` to the described-cache entries of ``keys`` (best effort)."""
    path = _described_file(provider)
    if path is None:
        return
    entries = _read_described(provider)
    for key in keys:
        entries.setdefault(key, {}).update(facts)
    payload = {
        "format": INDEX_FORMAT,
        "provider": provider.name,
        "provider_version": provider.version(),
        "entries": entries,
    }
    with contextlib.suppress(OSError, ReadOnlyHomeError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(payload))


def cached_fact(reference: str, fact: str, compute: Callable[[], Any]) -> Any:
    """A fact about a provider reference computed once per provider version and kept
    with the catalogue (``zoo info``'s stage names). ``compute`` runs on a miss; a None
    result is not kept."""
    ref = parse_ref(reference)
    try:
        prov = provider_for(ref)
    except UnknownModelError:
        return compute()
    hit = _read_described(prov).get(reference) or {}
    if fact in hit:
        return hit[fact]
    value = compute()
    if value is not None:
        _remember(prov, [reference], **{fact: value})
    return value


def describe(ref: Ref | str) -> BackboneInfo:
    """Full information on one reference; unknown names raise with close matches."""
    ref = resolve(ref)
    if ref.is_registered:
        raise UsageError(
            f"'{ref}' is a registered model: use `zoo registry show {ref}` to describe it"
        )
    prov = provider_for(ref)
    key = str(ref)
    hit = _read_described(prov).get(key) or {}
    if isinstance(hit.get("info"), dict):
        with contextlib.suppress(TypeError, ValueError):
            return BackboneInfo.from_dict(hit["info"])
    try:
        info = prov.describe(ref)
    except UnknownModelError as exc:
        close = _suggestions(prov, ref)
        if close:
            raise UnknownModelError(
                f"unknown model '{ref}': did you mean {' or '.join(close)}?"
            ) from exc
        raise UnknownModelError(
            f"unknown model '{ref}': {exc}; find one with `zoo list 'PATTERN' "
            f"--provider {prov.name}`"
        ) from exc
    _remember(prov, sorted({key, info.reference}), info=info.to_dict())
    return info


def resolve(ref: Ref | str) -> Ref:
    """Parse, and turn a bare NAME into ``local:NAME`` or ``models:/NAME/latest``."""
    if isinstance(ref, str):
        ref = parse_ref(ref)
    if ref.scheme != "bare":
        return ref
    candidates: list[Ref] = []
    local = providers().get("local")
    if local is not None:
        try:
            local.describe(Ref("local", ref.name))
            candidates.append(Ref("local", ref.name))
        except NotFoundError:
            pass
    if _is_registered is not None and _is_registered(ref.name):
        candidates.append(Ref("models", ref.name, version="latest"))
    if len(candidates) == 2:
        raise UsageError(
            f"'{ref.name}' is both a registered model and a local import: write "
            f"models:/{ref.name}/latest or local:{ref.name}"
        )
    if not candidates:
        raise UnknownModelError(
            f"no registered model or local import is named '{ref.name}': give a provider "
            f"reference such as timm:ARCH.TAG, or see `zoo list` and `zoo registry list`"
        )
    return candidates[0]


def resolution_note(asked: Ref | str, resolved: str, *, option: str = "") -> str | None:
    """The line saying that a reference without a tag was given its provider's default
    tag (``timm:resnet50`` -> ``timm:resnet50.a1_in1k``), or None when nothing was filled
    in. ``option`` names the flag it came from (``--arch``)."""
    try:
        asked = parse_ref(asked) if isinstance(asked, str) else asked
        got = parse_ref(resolved)
    except BadReferenceError:
        return None
    if asked.scheme in ("bare", "local", "models") or asked.tag is not None or got.tag is None:
        return None
    if got.scheme != asked.scheme or got.arch != asked.arch:
        return None
    shown = str(Ref(got.scheme, got.name))  # the tag filled in; a pinned revision aside
    prefix = f"{option} " if option else ""
    return f"{prefix}{asked} resolved to {shown} ({asked.scheme}'s default pretrained tag)"
