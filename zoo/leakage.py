"""Lineage-aware leakage: does a fine-tune train on images an ancestor held out?

Fine-tuning a registered version walks its parents (``zoo.registry.lineage.parents_of``)
up to the root; for every ancestor that is a zoo version it compares, by content
(sha256), the new training split with the files that ancestor held out as its test and
validation splits:

- read from the ancestor's ``split.json`` artifact (zoo/data/split_record.py);
- for a version registered before that record existed: recomputed from the seed and
  fractions its lineage records, when its dataset digest is that of the data used now
  (the split is a function of the files' contents), and checked against the split digest
  it recorded;
- otherwise the leakage is *unknown*, and said so.

An overlap is one warning line per ancestor (``--strict``: refused, exit 2, before the
model is built, so nothing is trained or written); the findings go into the new
version's lineage (``dataset.split.leakage``). Docs: docs/finetune.md, "Leakage across
a lineage".
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from zoo.errors import DataError, ZooError

if TYPE_CHECKING:  # pragma: no cover
    from zoo.registry.records import RegisteredVersion

__all__ = ["Finding", "check_ancestors", "check_lineage", "leakage_text", "record_split"]

HELD_OUT = ("test", "validation")  # the parts of an ancestor's split a child must not train on


@dataclass(frozen=True)
class Finding:
    """What one ancestor's held-out images say about the new training split."""

    ancestor: str  # models:/NAME/N
    checked_with: str  # "split.json", "recomputed" or "unknown"
    in_training: Mapping[str, int] | None = None  # part -> its images in the training split
    held: Mapping[str, int] | None = None  # part -> images the ancestor held out there
    reason: str = ""  # unknown: why
    examples: tuple[str, ...] = ()  # a few of the files, relative to the data's folder
    fix: str = ""  # how to train without them

    @property
    def leaked(self) -> int:
        return sum((self.in_training or {}).values())

    @property
    def result(self) -> str:
        if self.in_training is None:
            return "unknown"
        return "leak" if self.leaked else "clean"

    def summary(self) -> str:
        """What was found, without the fix."""
        if self.in_training is None:
            return f"leakage unknown: {self.ancestor} {self.reason}"
        held = self.held or {}
        how = "its split.json" if self.checked_with == "split.json" else "its recomputed split"
        if not self.leaked:
            if not sum(held.values()):
                return f"leakage check: {self.ancestor} held out no images ({how})"
            counts = ", ".join(f"{part} {held.get(part, 0)}" for part in HELD_OUT)
            return (
                f"leakage check: none of the {sum(held.values())} images {self.ancestor} held "
                f"out ({counts}; {how}) are in this training split"
            )
        parts = ", ".join(f"{n} in its {part} split" for part, n in self.in_training.items() if n)
        return (
            f"leakage: {self.leaked} training image(s) were held out by {self.ancestor} "
            f"({parts}, per {how}; e.g. {', '.join(self.examples)})"
        )

    def line(self) -> str:
        """The one line zoo prints (a leak: with the fix)."""
        if not self.leaked:
            return self.summary()
        return f"{self.summary()}: add --strict to refuse, or {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ancestor": self.ancestor,
            "checked_with": self.checked_with,
            "result": self.result,
            "in_training": dict(self.in_training) if self.in_training is not None else None,
            "held_out": dict(self.held) if self.held is not None else None,
            "line": self.line(),
        }


def _ancestors(
    version: RegisteredVersion, get_version: Callable[[str], RegisteredVersion]
) -> tuple[list[RegisteredVersion], list[str]]:
    """``version`` and every registered ancestor, nearest first, each once; and the
    references of ancestors no longer in the registry."""
    from zoo.errors import NotFoundError
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


def _fix(version: RegisteredVersion, data: ImageDataset, has_record: bool) -> str:
    dataset = version.lineage.get("dataset") or {}
    recorded = dataset.get("split") or {}
    leave_out = "leave those files out of the data"
    if has_record:
        leave_out += f" ({version.model_uri}'s split.json lists them by sha256)"
    if dataset.get("digest") == data.digest and "seed" in recorded and "val_split" in recorded:
        same = (
            f"--seed {recorded['seed']} --val-split {float(recorded['val_split']):g} "
            f"--test-split {float(recorded.get('test_split') or 0.0):g}"
        )
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
    ``split.train`` of ``data``, nearest first. Exports are walked through, not checked
    (they hold their source's split)."""
    if get_version is None:
        from zoo.registry.read import get_version as read_version

        get_version = read_version
    ancestors, gone = _ancestors(version, get_version)
    training = split_shas(data, split)["train"]
    findings = []
    for ancestor in ancestors:
        if ancestor.relation == "export":
            continue
        uri = ancestor.model_uri
        record = _read_record(ancestor)
        if record is not None:
            held, how, why = held_out(record), "split.json", ""
        else:
            recomputed, why = _recompute(ancestor, data)
            held, how = (recomputed or {}), "recomputed"
        if not held:
            findings.append(Finding(uri, "unknown", reason=why))
            continue
        leaked = {part: training & held[part] for part in HELD_OUT}
        examples = _examples(data, set().union(*leaked.values()))
        findings.append(
            Finding(
                uri,
                how,
                in_training={part: len(leaked[part]) for part in HELD_OUT},
                held={part: len(held[part]) for part in HELD_OUT},
                examples=examples,
                fix=_fix(ancestor, data, record is not None),
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
    said in one line on stderr (``show``), a leak refused under ``strict`` (DataError,
    exit 2); the findings as the lineage records them. ``version``: the registered
    version being fine-tuned (None: a provider or local backbone, nothing to check)."""
    import click

    if version is None:
        if strict and show:
            click.echo("zoo: leakage check: no registered ancestor, nothing to check", err=True)
        return []

    findings = check_ancestors(version, data, split)
    leaks = [f for f in findings if f.leaked]
    if strict and leaks:
        first = leaks[0]
        more = f" (and {len(leaks) - 1} more ancestor(s))" if len(leaks) > 1 else ""
        raise DataError(
            f"{first.summary()}{more}: --strict refuses to train "
            f"on them, nothing was trained or registered; {first.fix}, or drop --strict"
        )
    if show:
        for finding in findings:
            warning = "warning: " if finding.leaked else ""
            click.echo(f"zoo: {warning}{finding.line()}", err=True)
    return [f.to_dict() for f in findings]


def record_split(state: Any, dataset: dict[str, Any]) -> dict[str, Path]:
    """At registration (zoo/engine/finish.py): write the run's ``split.json`` into its
    folder and return it as an artifact; the lineage's ``dataset.split`` names it and
    records the leakage check (``state.leakage``)."""
    from zoo.home import atomic_write_text

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


def leakage_text(lineage: Mapping[str, Any]) -> str:
    """The leakage check a version's lineage records, one line per ancestor ("" when it
    had no registered ancestor or predates the check): for ``zoo registry show``."""
    split = (lineage.get("dataset") or {}).get("split") or {}
    found = split.get("leakage") or []
    return "\n".join(str(f.get("line")) for f in found if isinstance(f, Mapping))
