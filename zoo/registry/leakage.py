"""Lineage-aware leakage: does a fine-tune train on images an ancestor held out, or
measure itself on images an ancestor trained on?

Fine-tuning a registered version walks its parents (``zoo.registry.lineage.parents_of``)
up to the root; for every ancestor that is a zoo version it compares, by content
(sha256), the new training split with the files that ancestor held out as its test and
validation splits, and the new test and validation splits with the files that ancestor
trained on. The ancestor's split is

- read from the ancestor's ``split.json`` artifact (zoo/data/split_record.py);
- for a version registered before that record existed: recomputed from the seed and
  fractions its lineage records, when its dataset digest is that of the data used now
  (the split is a function of the files' contents), and checked against the split digest
  it recorded;
- otherwise the leakage is *unknown*, and said so.

An overlap is one warning line per ancestor and direction (``--strict``: refused, exit 2,
before the model is built, so nothing is trained or written); the findings
(zoo/registry/leakage_finding.py) go into the new version's lineage (``dataset.split.leakage``).
Docs: docs/finetune.md, "Leakage across a lineage".
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import DataError, ZooError
from zoo.data.check import ImageDataset
from zoo.data.split import Split, split_dataset
from zoo.data.split_record import (
    SPLIT_FILE,
    held_out,
    read_split_record,
    relative_path,
    split_record,
    split_shas,
)
from zoo.registry.leakage_finding import HELD_OUT, Finding, leakage_text, seen_fix

if TYPE_CHECKING:  # pragma: no cover
    from zoo.registry.records import RegisteredVersion

__all__ = ["Finding", "check_ancestors", "check_lineage", "leakage_text", "record_split"]


def _ancestors(
    version: RegisteredVersion, get_version: Callable[[str], RegisteredVersion]
) -> tuple[list[RegisteredVersion], list[str]]:
    """``version`` and every registered ancestor, nearest first, each once; and the
    references of ancestors no longer in the registry."""
    from zoo.contract.errors import NotFoundError
    from zoo.registry.lineage import parents_of

    found, gone, seen = [version], [], {version.model_uri}
    queue = [version]
    while queue:
        current = queue.pop(0)
        for parent in parents_of(current.lineage):
            ref = str(parent.get("reference") or "")
            if not ref.startswith("models:/") or ref in seen:
                continue
            seen.add(ref)
            try:
                ancestor = get_version(ref)
            except NotFoundError:
                gone.append(ref)
                continue
            found.append(ancestor)
            queue.append(ancestor)
    return found, gone


def _read_record(version: RegisteredVersion) -> dict[str, Any] | None:
    """The version's split.json, when its lineage says it has one and it reads."""
    split = (version.lineage.get("dataset") or {}).get("split") or {}
    if split.get("record") != SPLIT_FILE:
        return None  # registered before split.json existed: nothing to download
    from zoo.registry.read import download_artifact

    with tempfile.TemporaryDirectory(prefix="zoo-split-") as tmp:
        try:
            path = download_artifact(version, SPLIT_FILE, Path(tmp))
        except Exception:  # deleted behind zoo's back, or the store failed: recompute
            return None
        return read_split_record(path)


def _recompute(
    version: RegisteredVersion, data: ImageDataset
) -> tuple[dict[str, set[str]] | None, str]:
    """The ancestor's held-out files recomputed on ``data``, or (None, why not)."""
    dataset = version.lineage.get("dataset") or {}
    recorded = dataset.get("split") or {}
    if recorded.get("record") == SPLIT_FILE:  # it had one: deleted, or the store failed
        none = f"has a {SPLIT_FILE} that cannot be read now"
    else:
        none = "has no split record"
    if dataset.get("digest") != data.digest:
        return None, f"{none} and was trained on other data"
    if "seed" not in recorded or "val_split" not in recorded:
        return None, f"{none} and records no seed and fractions to recompute it"
    try:
        split = split_dataset(
            data.labels,
            float(recorded["val_split"]),
            int(recorded["seed"]),
            float(recorded.get("test_split") or 0.0),
            data.classes,
        )
    except (ZooError, TypeError, ValueError):
        return None, f"{none}, and its seed and fractions do not split this data"
    want = recorded.get("digest")
    if want and split.digest([s.sha256 for s in data.samples]) != want:
        return None, (
            f"{none}, and recomputing it from its seed and fractions does not give the "
            "split it recorded"
        )
    return split_shas(data, split), ""


def _same_split(version: RegisteredVersion, data: ImageDataset) -> str:
    """The options that give ``version``'s split again on ``data`` ("" when they do not:
    other data, or no seed and fractions recorded)."""
    dataset = version.lineage.get("dataset") or {}
    recorded = dataset.get("split") or {}
    if dataset.get("digest") != data.digest or not {"seed", "val_split"} <= recorded.keys():
        return ""
    return (
        f"--seed {recorded['seed']} --val-split {float(recorded['val_split']):g} "
        f"--test-split {float(recorded.get('test_split') or 0.0):g}"
    )


def _fix(version: RegisteredVersion, data: ImageDataset, has_record: bool) -> str:
    leave_out = "leave those files out of the data"
    if has_record:
        leave_out += f" ({version.model_uri}'s split.json lists them by sha256)"
    same = _same_split(version, data)
    if same:
        return f"train on its training split (the same data with {same}), or {leave_out}"
    return leave_out


def _examples(data: ImageDataset, shas: set[str], n: int = 2) -> tuple[str, ...]:
    paths = [relative_path(data.root, s.path) for s in data.samples if s.sha256 in shas]
    return tuple(sorted(paths)[:n])


def check_ancestors(
    version: RegisteredVersion,
    data: ImageDataset,
    split: Split,
    *,
    get_version: Callable[[str], RegisteredVersion] | None = None,
) -> list[Finding]:
    """One finding per registered ancestor (``version`` included) of a run that trains on
    ``split.train`` of ``data`` and measures itself on ``split.val`` and ``split.test``,
    nearest first. Exports are walked through, not checked
    (they hold their source's split)."""
    if get_version is None:
        from zoo.registry.read import get_version as read_version

        get_version = read_version
    ancestors, gone = _ancestors(version, get_version)
    mine = split_shas(data, split)
    training = mine["train"]
    evaluated = {part: len(mine[part]) for part in HELD_OUT}
    findings = []
    for ancestor in ancestors:
        if ancestor.relation == "export":
            continue
        uri = ancestor.model_uri
        record = _read_record(ancestor)
        if record is not None:
            theirs, how, why = held_out(record), "split.json", ""
        else:
            recomputed, why = _recompute(ancestor, data)
            theirs, how = (recomputed or {}), "recomputed"
        if not theirs:
            findings.append(Finding(uri, "unknown", reason=why))
            continue
        # this training split in their held-out parts; their training split in this
        # split's held-out parts (the figures measured there are optimistic)
        leaked = {part: training & theirs[part] for part in HELD_OUT}
        seen = {part: mine[part] & theirs["train"] for part in HELD_OUT}
        findings.append(
            Finding(
                uri,
                how,
                in_training={part: len(leaked[part]) for part in HELD_OUT},
                held={part: len(theirs[part]) for part in HELD_OUT},
                seen={part: len(seen[part]) for part in HELD_OUT},
                evaluated=evaluated,
                trained=len(theirs["train"]),
                examples=_examples(data, set().union(*leaked.values())),
                seen_examples=_examples(data, set().union(*seen.values())),
                fix=_fix(ancestor, data, record is not None),
                seen_fix=seen_fix(
                    [part for part in HELD_OUT if seen[part]], _same_split(ancestor, data)
                ),
            )
        )
    findings += [Finding(ref, "unknown", reason="is no longer in the registry") for ref in gone]
    return findings


def check_lineage(
    version: RegisteredVersion | None,
    data: ImageDataset,
    split: Split,
    *,
    strict: bool,
    show: bool,
) -> list[dict[str, Any]]:
    """The engine's check before the model is built (zoo/engine/setup.py): each finding
    said on stderr (``show``; one line per ancestor, and one more when it trained on
    images of this validation or test split), a leak in either direction refused under
    ``strict`` (DataError, exit 2); the findings as the lineage records them.
    ``version``: the registered version being fine-tuned (None: a provider or local
    backbone, nothing to check)."""
    import click

    if version is None:
        if strict and show:
            click.echo("zoo: leakage check: no registered ancestor, nothing to check", err=True)
        return []

    findings = check_ancestors(version, data, split)
    refused = [r for f in findings for r in f.refusals()]
    if strict and refused:
        (what, fix), more = refused[0], len(refused) - 1
        also = f" (and {more} more leak(s); --dry-run without --strict says each)" if more else ""
        raise DataError(f"{what}{also}, nothing was trained or registered; {fix}, or drop --strict")
    if show:
        for finding in findings:
            for warned, line in finding.lines():
                click.echo(f"zoo: {'warning: ' if warned else ''}{line}", err=True)
    return [f.to_dict() for f in findings]


def record_split(state: Any, dataset: dict[str, Any]) -> dict[str, Path]:
    """At registration (zoo/engine/finish.py): write the run's ``split.json`` into its
    folder and return it as an artifact; the lineage's ``dataset.split`` names it and
    records the leakage check (``state.leakage``)."""
    from zoo.disk.paths import atomic_write_text

    record = split_record(
        state.data,
        state.split,
        seed=state.recipe.seed,
        val_fraction=state.recipe.val_split,
        test_fraction=state.recipe.test_split,
    )
    path = state.dir / SPLIT_FILE
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
    split = dataset.setdefault("split", {})
    split["record"] = SPLIT_FILE
    split["leakage"] = list(getattr(state, "leakage", None) or [])
    return {SPLIT_FILE: path}
