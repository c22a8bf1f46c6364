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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import NotFoundError, UsageError
from zoo.home import STAGING_LOCK, staging_dir
from zoo.types import CheckSet, ExportOptions, ExportResult

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo.data.preprocess import Preprocessing
    from zoo.registry import RegisteredVersion

__all__ = [
    "CALIBRATION_IMAGES",
    "CHECK_IMAGES",
    "ExportOutcome",
    "Source",
    "build_check_set",
    "clean_staging",
    "export_model",
    "load_source",
]

STAGING_PREFIX = ".zoo-export-"  # beside --out: the folder an export is assembled in
CHECK_IMAGES = 200  # real validation images the gates run on (at most)
CALIBRATION_IMAGES = 128  # training images int8 is calibrated on (at most), every class its share
RANDOM_IMAGES = 16  # random inputs when there are no real images: batches 1, 2, 7 and 6
DEFAULT_VAL_FRACTION, DEFAULT_SEED = 0.2, 0  # the training engine's split defaults


@dataclass
class Source:
    """The model to export and what is known about it."""

    reference: str  # canonical: models:/NAME/N or a provider reference
    module: nn.Module
    preprocessing: Preprocessing
    class_names: tuple[str, ...] = ()
    license: str = "unknown"
    version: RegisteredVersion | None = None
    data_root: str | None = None  # training data recorded in the lineage
    # (val_split, seed, test_split, split digest) as the training engine recorded them
    split: tuple[float, int, float, str | None] = (DEFAULT_VAL_FRACTION, DEFAULT_SEED, 0.0, None)


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


# ----------------------------------------------------------------------------- source


def load_source(ref: str) -> Source:
    """Load a registered version or build a catalogue backbone (pretrained weights)."""
    from zoo.catalog import provider_for, resolve
    from zoo.data.preprocess import Preprocessing

    parsed = resolve(ref)
    if parsed.is_registered:
        from zoo import registry

        module, version = registry.load_model(str(parsed))
        if version.tags.get("zoo.relation") == "export" or version.name.endswith(".onnx"):
            raise UsageError(
                f"{version.model_uri} is itself an export: export the version it was "
                f"derived from ({version.tags.get('zoo.derived_from', 'see zoo registry')})"
            )
        from zoo.inference import preprocessing_from

        dataset = version.lineage.get("dataset") or {}
        recorded = dataset.get("split") or {}  # the training engine's split settings
        split = (
            float(recorded.get("val_split", DEFAULT_VAL_FRACTION)),
            int(recorded.get("seed", DEFAULT_SEED)),
            float(recorded.get("test_split", 0.0)),
            recorded.get("digest"),
        )
        return Source(
            reference=version.model_uri,
            module=module,
            preprocessing=preprocessing_from(version.preprocessing),
            class_names=tuple(version.class_names),
            license=version.license,
            version=version,
            data_root=dataset.get("root") if isinstance(dataset, Mapping) else None,
            split=split,
        )
    provider = provider_for(parsed)
    pretrained = provider.describe(parsed).pretrained  # architectures without weights too
    backbone = provider.build(parsed, pretrained=pretrained)
    info = backbone.info
    return Source(
        reference=info.reference,
        module=backbone.model,
        preprocessing=Preprocessing.from_info(info),
        license=info.license,
    )


# -------------------------------------------------------------------------- check set


def _stack(paths: Sequence[str], prep: Preprocessing) -> torch.Tensor:
    import numpy as np
    import torch

    from zoo.inference import decode_images

    arrays = []
    for path, array, error in decode_images([Path(p) for p in paths], prep):
        if array is None:
            raise UsageError(f"{path}: {error}")
        arrays.append(array)
    return torch.from_numpy(np.stack(arrays))


def _no_step(_detail: str) -> None:
    pass


def build_check_set(
    source: Source,
    data: Path | None,
    *,
    say: Callable[[str], None],
    step: Callable[[str], None] = _no_step,
) -> CheckSet:
    """Real images split as training split them, or seeded random inputs; ``step`` is
    told what it reads."""
    import torch

    root = data
    if root is None and source.data_root and Path(source.data_root).is_dir():
        root = Path(source.data_root)
        say(f"checking on the training data recorded for {source.reference}: {root}")
    if root is None:
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(RANDOM_IMAGES, *source.preprocessing.input_size, generator=gen)
        return CheckSet(images=images, real=False)

    from zoo.data import load_dataset, split_dataset

    prep = source.preprocessing
    step(f"reading the images in {root}")
    dataset = load_dataset(root, resize=prep.resize, interpolation=prep.interpolation)
    # The engine's own split of the same files (it follows their content, not their
    # order): calibration from the training part, the gates on the validation part, and
    # the test part, if any, left for the figure it was held out for.
    val_split, seed, test_split, digest = source.split
    split = split_dataset(dataset.labels, val_split, seed, test_split, dataset.classes)
    if digest and data is None and split.digest([s.sha256 for s in dataset.samples]) != digest:
        say(
            f"the images in {root} changed since {source.reference} was trained: its "
            "validation split is not the one that chose its epoch"
        )
    train, val = list(split.train), list(split.val)
    index = {name: i for i, name in enumerate(source.class_names)}
    if source.class_names:
        labels = [index.get(dataset.classes[s.label], -1) for s in dataset.samples]
    else:
        labels = [-1] * len(dataset.samples)
    total = len(val)
    val = _spread(val, CHECK_IMAGES)
    train = _stratified(train, [s.label for s in dataset.samples], CALIBRATION_IMAGES)
    some = f"{len(val)} of the {total}" if len(val) < total else f"all {total}"
    say(f"check set: {some} validation images and {len(train)} calibration images from {root}")
    step(f"decoding {len(val)} validation and {len(train)} calibration images")
    validation = _stack([dataset.samples[i].path for i in val], prep)
    return CheckSet(
        images=validation,
        real=True,
        labels=tuple(labels[i] for i in val),
        calibration=_stack([dataset.samples[i].path for i in train], prep),
        validation=validation,
        validation_labels=tuple(labels[i] for i in val),
    )


def _stratified(indices: Sequence[int], labels: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` indices, taken from the classes in turn (each class's own spread
    evenly), so that any leading part of the list covers every class about equally."""
    by_class: dict[int, list[int]] = {}
    for i in indices:
        by_class.setdefault(labels[i], []).append(i)
    if len(indices) <= limit:
        share = {c: len(v) for c, v in by_class.items()}
    else:
        share = dict.fromkeys(by_class, 0)
        left = limit
        while left:  # one more per class in turn, while the class has images left
            grew = False
            for c in sorted(by_class):
                if left and share[c] < len(by_class[c]):
                    share[c] += 1
                    left -= 1
                    grew = True
            if not grew:
                break
    picked = {c: _spread(v, share[c]) for c, v in by_class.items()}
    out: list[int] = []
    for rank in range(max(share.values(), default=0)):
        out += [picked[c][rank] for c in sorted(picked) if rank < len(picked[c])]
    return out


def _spread(indices: Sequence[int], limit: int) -> list[int]:
    """At most ``limit`` indices, evenly spread (so every class keeps a share)."""
    if len(indices) <= limit:
        return list(indices)
    step = len(indices) / limit
    return [indices[int(i * step)] for i in range(limit)]


# ----------------------------------------------------------------------------- export


def exporter_for(fmt: str) -> Any:
    from zoo.plugins import get_plugin_manager

    exporters = get_plugin_manager().exporters()
    if fmt not in exporters:
        names = ", ".join(sorted(exporters)) or "none"
        raise NotFoundError(
            f"no exporter for format '{fmt}' is installed (installed: {names}); see `zoo plugins`"
        )
    return exporters[fmt]


def _default_out(source: Source, precision: str) -> Path:
    from zoo.home import subdir

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
    import torch

    exporter = exporter_for(fmt)
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
    from zoo.home import remove_stale_staging

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
    from zoo.inference import SIDECAR

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
