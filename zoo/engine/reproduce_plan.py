"""What `zoo registry reproduce` runs again: a registered fine-tune's recipe, rebuilt from
its lineage, and what may make the new weights differ, said before anything trains.

A version zoo fine-tuned records (``zoo.lineage``): its recipe (the strategy settings'
``recipe``: every setting but the reference, the data, the name, the licence, the device
and the workers), its parents pinned (reference, weights SHA-256), its data (digest, the
folder or CSV manifest it read: ``dataset.path``, or ``dataset.root`` for a folder before
zoo recorded the path), the split and seed, the library versions, where it trained
(``runtime``: device kind, processes) and its weights' SHA-256. A version without a
recipe (registered through ``zoo.registry.register_derivative``, not ``zoo finetune``, or
an export) cannot be reproduced, and is refused in one line that says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.contract.errors import NotFoundError, UsageError
from zoo.engine.recipe import Recipe

__all__ = ["Reproduction", "plan_reproduction"]

# Libraries whose version decides the bytes of trained weights (mlflow and onnx do not).
_DECIDING = ("python", "torch", "torchvision", "timm", "safetensors", "zoo")


@dataclass(frozen=True)
class Reproduction:
    """A recipe to run again, and what the registered version says it should give."""

    model_uri: str
    recipe: Recipe
    data: str
    digest: str  # the recorded dataset digest
    weights_sha256: str | None  # the registered weights' SHA-256
    metrics: Mapping[str, float]  # the registered metrics
    preprocessing: Mapping[str, Any]
    dataset: Mapping[str, Any]  # the lineage's dataset record (counts, classes)
    parents: list[dict[str, Any]]  # pinned: reference, kind, sha256, licence
    notes: list[str] = field(default_factory=list)  # causes of other bytes, one line each


def plan_reproduction(
    model_uri: str, data: str | None = None, *, device: str | None = None
) -> Reproduction:
    """The recipe of ``model_uri`` on ``data`` (default: the recorded path, when it still
    exists), or one line saying why it cannot run; reads the store, writes nothing."""
    from zoo.registry.read import get_version
    from zoo.registry.records import parents_of

    version = get_version(model_uri)
    uri = version.model_uri
    lineage = version.lineage
    if version.relation == "export":
        raise UsageError(
            f"{uri} is an export of {version.tags.get('zoo.derived_from') or 'a version'}: "
            "reproduce the fine-tuned version it was exported from"
        )
    settings = (lineage.get("strategy") or {}).get("settings") or {}
    recorded = settings.get("recipe")
    if not isinstance(recorded, Mapping):
        raise UsageError(
            f"{uri} records no recipe in its lineage (registered by "
            f"zoo {version.tags.get('zoo.zoo_version') or 'unknown'} through "
            "register_derivative or before zoo recorded recipes): there is nothing to "
            "run again; fine-tune its parent anew with `zoo finetune`"
        )
    dataset = lineage.get("dataset") or {}
    digest = str(dataset.get("digest") or version.tags.get("zoo.dataset_digest") or "")
    if not digest:
        raise UsageError(f"{uri} records no dataset digest: its data cannot be checked")
    source = data or _recorded_data(uri, dataset)
    recipe = _recipe(uri, version, lineage, recorded, source, device)
    notes = _notes(uri, lineage, settings, recorded, recipe)
    return Reproduction(
        model_uri=uri,
        recipe=recipe,
        data=source,
        digest=digest,
        weights_sha256=version.tags.get("zoo.weights_sha256")
        or (lineage.get("weights") or {}).get("sha256"),
        metrics={k: float(v) for k, v in (lineage.get("metrics") or {}).items()},
        preprocessing=dict(version.preprocessing),
        dataset=dict(dataset),
        parents=parents_of(lineage),
        notes=notes,
    )


def _recorded_data(uri: str, dataset: Mapping[str, Any]) -> str:
    """The data the version read, where the lineage says it was; one line when gone."""
    path = dataset.get("path")
    if not path and dataset.get("source") == "folder":
        path = dataset.get("root")  # registered before zoo recorded the path itself
    if not path:
        raise UsageError(
            f"{uri} records its data's folder but not its CSV manifest (registered before "
            "zoo recorded the data's path): pass DATA, the manifest it was trained on"
        )
    if not Path(str(path)).exists():
        raise NotFoundError(
            f"{uri} was trained on {path}, which no longer exists: pass DATA, a copy of "
            "the same images (their digest is checked before anything trains)"
        )
    return str(path)


def _recipe(
    uri: str,
    version: Any,
    lineage: Mapping[str, Any],
    recorded: Mapping[str, Any],
    data: str,
    device: str | None,
) -> Recipe:
    from zoo.contract.refs import JOINER
    from zoo.registry.records import parents_of

    parents = parents_of(lineage)
    if not parents:
        raise UsageError(f"{uri} records no parent: there is nothing to fine-tune again")
    lic = lineage.get("license") or {}
    settings = dict(recorded)
    settings.update(
        ref=JOINER.join(str(p["reference"]) for p in parents),
        data=data,
        name=version.name,
        # a licence declared at registration (not inherited) is declared again, with the
        # override's reason if one was given: the same licence decision, before the data
        license=None if lic.get("inherited", True) else lic.get("id"),
        license_override=lic.get("override") or None,
        device=device or "auto",
        workers=None,
        nproc_per_node=1,  # in this process: one process (said when it was more)
    )
    try:
        return Recipe.from_dict(settings)
    except UsageError as exc:
        raise UsageError(
            f"{uri}'s recorded recipe does not load here ({exc}): reproduce it with the "
            f"zoo that registered it ({version.tags.get('zoo.zoo_version') or 'unknown'})"
        ) from None


def _notes(
    uri: str,
    lineage: Mapping[str, Any],
    settings: Mapping[str, Any],
    recorded: Mapping[str, Any],
    recipe: Recipe,
) -> list[str]:
    """Each cause of other bytes, one line each: said before the run."""
    from zoo.registry.lineage import library_versions

    notes: list[str] = []
    if not recorded.get("deterministic"):
        notes.append(
            f"{uri} was not trained in deterministic mode: its weights are not expected "
            "to match bit for bit; the metrics are compared"
        )
    then = lineage.get("versions") or {}
    now = library_versions()
    changed = [
        f"{lib} {then.get(lib)} -> {now.get(lib)}"
        for lib in _DECIDING
        if lib in then and then.get(lib) != now.get(lib)
    ]
    plugin = (lineage.get("strategy") or {}).get("plugin") or {}
    current = _strategy_plugin(recipe.strategy)
    if plugin.get("distribution") and (
        current.get("distribution"),
        current.get("version"),
    ) != (plugin.get("distribution"), plugin.get("version")):
        changed.append(
            f"strategy plugin {plugin['distribution']} {plugin.get('version')} -> "
            f"{current.get('distribution') or 'none'} {current.get('version') or ''}".rstrip()
        )
    if changed:
        notes.append(
            f"library versions differ from the recorded ones ({', '.join(changed)}): "
            "a cause for other bytes"
        )
    elif not then:
        notes.append(f"{uri} records no library versions: whether they differ is unknown")
    runtime = settings.get("runtime")
    if isinstance(runtime, Mapping):
        if int(runtime.get("processes") or 1) > 1:
            notes.append(
                f"{uri} was trained on {runtime['processes']} processes; reproduced in one "
                "(the same global batch): a cause for other bytes"
            )
        here = _device_kind(recipe.device)
        if runtime.get("device") and here and runtime["device"] != here:
            notes.append(
                f"{uri} was trained on {runtime['device']}, reproduced on {here}: a cause for "
                "other bytes (--device chooses)"
            )
    else:
        notes.append(
            f"{uri} records no device or process count (registered before zoo recorded "
            "them): whether they differ is unknown"
        )
    return notes


def _device_kind(device: str) -> str | None:
    """``cpu`` or ``cuda``: the kind of device ``device`` (auto included) will train on."""
    if device == "cpu":
        return "cpu"
    try:
        import torch

        if device.startswith(("auto", "cuda")) and torch.cuda.is_available():
            return "cuda"
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return "cpu" if device == "auto" else device.split(":")[0]


def _strategy_plugin(strategy: str) -> dict[str, Any]:
    from zoo.registry.lineage import strategy_plugin_of

    return strategy_plugin_of(strategy, None)
