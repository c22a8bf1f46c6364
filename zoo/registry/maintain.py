"""Keeping the registry sound: aliases, deletes that respect lineage, the invariant scan.

The invariant zoo keeps: **no version points at missing artifacts**. ``check()`` proves
it over the whole store and lists orphans (runs killed before their version existed);
``check(clean=True)`` deletes those orphans' logged models and runs (``zoo registry
check --clean`` also removes the staging folders that killed imports and exports left
under the zoo home). ``check(verify=True)`` also
re-hashes every version's weights file against the SHA-256 its lineage recorded at
registration, and compares ``lineage.json`` with the record in the version's tags, so
files replaced behind zoo's back (even by other valid files) are reported.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from zoo.contract.errors import NotFoundError, UsageError
from zoo.contract.refs import parse_ref
from zoo.disk.paths import disk_full
from zoo.registry.read import WEIGHTS_FILE, get_version, list_versions
from zoo.registry.records import TAG, RegisteredVersion
from zoo.registry.store import client

__all__ = [
    "CheckReport",
    "check",
    "children",
    "delete",
    "plan_delete",
    "set_alias",
]


def set_alias(name: str, version: int, alias: str) -> RegisteredVersion:
    from mlflow.exceptions import MlflowException

    parse_ref(f"models:/{name}@{alias}")  # validates the alias's shape
    if alias == "latest" or (alias.lower().startswith("v") and alias[1:].isdigit()):
        raise UsageError(f"'{alias}' is reserved by MLflow: choose another alias")
    get_version(f"models:/{name}/{version}")
    try:
        with disk_full(f"alias '{alias}' into the MLflow store"):
            client().set_registered_model_alias(name, alias, str(version))
    except MlflowException as exc:
        raise UsageError(f"cannot set alias '{alias}' on {name}/{version}: {exc.message}") from exc
    return get_version(f"models:/{name}@{alias}")


def children(version: RegisteredVersion) -> list[RegisteredVersion]:
    """Versions whose parent (or export source) is ``version``."""
    uri = version.model_uri
    return [v for v in list_versions() if v.parent == uri or v.tags.get(TAG.DERIVED_FROM) == uri]


def plan_delete(ref: str, *, cascade: bool = False) -> list[RegisteredVersion]:
    """What ``delete`` would remove, children first; raises while children exist and
    ``cascade`` is off."""
    targets = _targets(ref)
    order: list[RegisteredVersion] = []
    seen: set[str] = set()

    def visit(v: RegisteredVersion) -> None:
        if v.model_uri in seen:
            return
        seen.add(v.model_uri)
        for child in children(v):
            visit(child)
        order.append(v)

    target_uris = {t.model_uri for t in targets}
    for t in targets:
        kids = [c for c in children(t) if c.model_uri not in target_uris]
        if kids and not cascade:
            named = ", ".join(c.model_uri for c in kids[:3])
            raise UsageError(
                f"{t.model_uri} is the parent of {named}: delete those first or pass --cascade"
            )
        visit(t)
    return order


def delete(ref: str, *, cascade: bool = False) -> list[RegisteredVersion]:
    """Delete a version (or every version of a bare NAME), children first with cascade.

    Refuses while other versions name it as their parent unless ``cascade``.
    Returns the versions deleted, in order.
    """
    order = plan_delete(ref, cascade=cascade)
    mc = client()
    for v in order:
        mc.delete_model_version(v.name, str(v.version))
        model_id = v.tags.get(TAG.MODEL_ID)
        if model_id:
            with contextlib.suppress(Exception):  # artifacts already gone: fine
                mc.delete_logged_model(model_id)
    for name in {v.name for v in order}:
        if not mc.search_model_versions(f"name = '{name}'"):
            mc.delete_registered_model(name)
    return order


def _targets(ref: str) -> list[RegisteredVersion]:
    parsed = parse_ref(ref)
    if parsed.scheme == "bare":
        versions = list_versions(parsed.name)
        if not versions:
            raise NotFoundError(f"no registered model named '{parsed.name}'")
        return versions
    return [get_version(parsed)]


@dataclass
class CheckReport:
    versions: int = 0
    problems: list[str] = field(default_factory=list)  # versions pointing at missing files
    altered: list[str] = field(default_factory=list)  # files whose content changed (--verify)
    orphans: list[str] = field(default_factory=list)  # run ids of unfinished registrations
    cleaned: list[str] = field(default_factory=list)
    verified: int = 0  # files re-hashed
    staging_removed: list[str] = field(default_factory=list)  # leftover folders (--clean)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.altered

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "versions": self.versions,
            "problems": self.problems,
            "altered": self.altered,
            "verified": self.verified,
            "orphans": self.orphans,
            "cleaned": self.cleaned,
            "staging_removed": self.staging_removed,
        }


def _verify(v: RegisteredVersion, fmt: str, report: CheckReport) -> None:
    """Re-hash the version's weights file and compare lineage.json with the tag."""
    import json
    import tempfile
    from pathlib import Path

    from zoo.registry.read import download_artifact, sha256_file

    weights = v.lineage.get("weights") or {}
    want = v.tags.get(TAG.WEIGHTS_SHA256) or weights.get("sha256")
    inner = WEIGHTS_FILE if fmt == "pytorch" else str(weights.get("file") or "")
    with tempfile.TemporaryDirectory(prefix="zoo-verify-") as tmp:
        if want and inner:
            local = download_artifact(v, inner, Path(tmp) / "w")
            have = sha256_file(local)
            report.verified += 1
            if have != want:
                report.altered.append(
                    f"{v.model_uri}: {inner} has sha256 {have[:16]}..., its lineage "
                    f"recorded {want[:16]}..."
                )
        if v.lineage:
            local = download_artifact(v, "lineage.json", Path(tmp) / "l")
            report.verified += 1
            try:
                stored = json.loads(local.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                stored = None
            if stored != dict(v.lineage):
                report.altered.append(
                    f"{v.model_uri}: lineage.json differs from the lineage recorded at registration"
                )


def check(*, clean: bool = False, verify: bool = False) -> CheckReport:
    """Scan every version's artifacts, and find registrations that never finished.

    ``verify``: also re-hash what the lineage recorded (see the module doc).
    """
    from zoo.registry.write import REQUIRED_FILES, missing_files

    mc = client()
    report = CheckReport()
    for v in list_versions():
        report.versions += 1
        model_id = v.tags.get(TAG.MODEL_ID)
        if not model_id:
            if v.base:
                report.problems.append(f"{v.model_uri}: no {TAG.MODEL_ID} tag")
            continue
        fmt = v.tags.get(TAG.FORMAT, "pytorch")
        required = v.lineage.get("required_files") or REQUIRED_FILES.get(fmt, ("MLmodel",))
        missing = missing_files(mc, model_id, required)
        if missing:
            report.problems.append(f"{v.model_uri}: missing {', '.join(missing)}")
            continue
        try:
            status = str(mc.get_logged_model(model_id).status)
        except Exception as exc:
            report.problems.append(f"{v.model_uri}: logged model {model_id} unreadable: {exc}")
            continue
        if "READY" not in status:
            report.problems.append(f"{v.model_uri}: logged model {model_id} is {status}")
            continue
        if verify:
            try:
                _verify(v, fmt, report)
            except Exception as exc:
                report.problems.append(f"{v.model_uri}: artifacts unreadable: {exc}")
    experiments = [e.experiment_id for e in mc.search_experiments()]
    if experiments:
        runs = mc.search_runs(
            experiments, filter_string=f"tags.`{TAG.RUN_REGISTRATION}` LIKE 'pending %'"
        )
        for run in runs:
            report.orphans.append(run.info.run_id)
            if clean:
                _remove_run(mc, run)
                report.cleaned.append(run.info.run_id)
    return report


def _remove_run(mc: Any, run: Any) -> None:
    for output in getattr(run.outputs, "model_outputs", None) or []:
        with contextlib.suppress(Exception):
            mc.delete_logged_model(output.model_id)
    mc.delete_run(run.info.run_id)
