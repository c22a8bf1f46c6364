"""``zoo export``: resolve a model, build its check set, run an exporter, register the result.

The exporter (a plugin, e.g. ``onnx``) converts and verifies; this module decides what it
is verified on and what happens to the result:

- the source is a registered version (``models:/NAME/N``, ``@ALIAS``, a bare name), loaded
  with the registry's pickle-free loader, or any catalogue backbone built by its provider;
- the check set is real images when there are any (``--calibration DATA``, else the
  training data recorded in the version's lineage when it still exists), split as
  training split them; otherwise seeded random inputs (then only the allclose gate holds);
- everything is written to a hidden folder inside ``--out`` first; a refused export
  leaves nothing there and registers nothing. A registered source's export is registered
  as a version of ``NAME.onnx`` (``zoo.derived_from`` -> the source version).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import UsageError
from zoo.contract.types import CheckSet, ExportOptions, ExportResult
from zoo.deploy.check_set import build_check_set
from zoo.deploy.exporters import exporter_for
from zoo.deploy.source import Source, load_source
from zoo.disk.paths import STAGING_LOCK, staging_dir

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from zoo.registry import RegisteredVersion

__all__ = [
    "ExportOutcome",
    "clean_staging",
    "export_model",
]

STAGING_PREFIX = ".zoo-export-"  # beside --out: the folder an export is assembled in


@dataclass
class ExportOutcome:
    result: ExportResult
    out_dir: Path
    path: Path  # the artifact in out_dir
    source: Source
    registered: RegisteredVersion | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.reference,
            "path": str(self.path),
            "out_dir": str(self.out_dir),
            "format": self.result.format,
            "precision": self.result.precision,
            "exporter": self.result.exporter,
            "registered": self.registered.model_uri if self.registered else None,
            "license": self.source.license,
            "metrics": dict(self.result.metrics),
            "report": dict(self.result.report),
            "notes": list(self.notes),
        }


# ----------------------------------------------------------------------------- export


def _no_step(_detail: str) -> None:
    pass


def _default_out(source: Source, precision: str) -> Path:
    from zoo.disk.paths import subdir

    name = source.reference.replace("models:/", "").replace(":", "-").replace("/", "-")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return subdir("exports") / f"{name}-{precision}-{stamp}"


def export_model(
    ref: str,
    *,
    fmt: str = "onnx",
    precision: str = "fp32",
    opset: int | None = None,
    dynamic_batch: bool = True,
    calibration: Path | None = None,
    out: Path | None = None,
    benchmark: bool = True,
    register: bool = True,
    say: Callable[[str], None] = lambda _line: None,
    step: Callable[[str], None] = _no_step,
    source: Source | None = None,
) -> ExportOutcome:
    """Export, verify, write to ``out`` and register; refusals leave nothing behind.
    ``say`` gets the lines that stay (notes), ``step`` what the export does now (the
    CLI's progress line; the exporter gets it as ``ExportOptions.step``)."""
    exporter = exporter_for(fmt)  # before torch: a missing exporter is said at once
    import torch

    if precision not in exporter.precisions:
        raise UsageError(
            f"the {fmt} exporter supports --precision {', '.join(exporter.precisions)}, "
            f"not {precision}"
        )
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder: choose another")
    if source is None:
        say(f"loading {ref}")
        step("building the model and reading its weights")
        source = load_source(ref)
    source.module.eval()
    check = build_check_set(source, calibration, say=say, step=step)
    batch = 2 if dynamic_batch else 1
    example = check.images[:batch].clone()
    if example.shape[0] < batch:
        example = torch.randn(batch, *source.preprocessing.input_size)

    target = out or _default_out(source, precision)
    created = not target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_staging(target.parent)
    with staging_dir(target.parent, STAGING_PREFIX) as work:
        return _export_into(
            work,
            target,
            created,
            exporter,
            source,
            check,
            example,
            say=say,
            step=step,
            fmt=fmt,
            precision=precision,
            opset=opset,
            dynamic_batch=dynamic_batch,
            benchmark=benchmark,
            register=register,
        )


def clean_staging(parent: Path) -> list[Path]:
    """Remove ``.zoo-export-*`` folders in ``parent`` that killed exports left (none a
    live export holds)."""
    from zoo.disk.paths import remove_stale_staging

    return remove_stale_staging(parent, STAGING_PREFIX)


def _export_into(
    work: Path,
    target: Path,
    created: bool,
    exporter: Any,
    source: Source,
    check: CheckSet,
    example: torch.Tensor,
    *,
    say: Callable[[str], None],
    step: Callable[[str], None],
    fmt: str,
    precision: str,
    opset: int | None,
    dynamic_batch: bool,
    benchmark: bool,
    register: bool,
) -> ExportOutcome:
    try:
        say(f"exporting {source.reference} to {fmt} ({precision})")
        options = ExportOptions(
            out_dir=str(work),
            check=check,
            precision=precision,
            opset=opset,
            dynamic_batch=dynamic_batch,
            benchmark=benchmark,
            step=step,
        )
        result: ExportResult = exporter.export(source.module, example, options)
        artifact = Path(result.path)
        notes = list(result.notes)
        sidecar = _write_sidecar(work, source, result, artifact)
        files = {name: Path(path) for name, path in result.files.items()}
        files[sidecar.name] = sidecar
        registered = None
        if register and source.version is not None:
            from zoo import registry

            step(f"registering it as a version of {source.version.name}.{fmt}")
            registered = registry.register_export(
                source.version,
                artifact,
                fmt=fmt,
                input_example=example[:1].numpy(),
                files=files,
                metrics=dict(result.metrics),
                evaluation=result.report.get("evaluation") or {"precision": result.precision},
            )
        elif source.version is None:
            notes.append(
                f"{source.reference} is not a registered version: the export is written "
                "to the output folder only (register a fine-tune to track its exports)"
            )
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(work.iterdir()):
            if item.name != STAGING_LOCK:
                item.replace(target / item.name)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    final = ExportResult(
        path=str(target / artifact.name),
        format=result.format,
        precision=result.precision,
        exporter=result.exporter,
        report=result.report,
        metrics=result.metrics,
        files={name: str(target / Path(p).name) for name, p in files.items()},
        notes=tuple(notes),
    )
    return ExportOutcome(
        result=final,
        out_dir=target,
        path=target / artifact.name,
        source=source,
        registered=registered,
        notes=notes,
    )


def _write_sidecar(folder: Path, source: Source, result: ExportResult, artifact: Path) -> Path:
    """zoo-export.json: what ``zoo predict`` needs to run the file as training evaluated."""
    from zoo.deploy.exported import SIDECAR

    doc = {
        "format": result.format,
        "file": artifact.name,
        "precision": result.precision,
        "exporter": result.exporter,
        "source": source.reference,
        "license": source.license,
        "preprocessing": source.preprocessing.to_dict(),
        "class_names": list(source.class_names),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = folder / SIDECAR
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path
