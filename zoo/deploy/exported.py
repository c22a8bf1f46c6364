"""An export found and opened: a file or folder ``zoo export`` wrote, or a registered
export (or a registered version's newest one), run by the exporter that made its format.

``zoo predict`` opens an export with its exporter's ``open`` (docs/plugins/register_exporters.md):
zoo knows no runtime itself. The export's sidecar, ``zoo-export.json`` (written beside every
exported file: format, file, precision, preprocessing, classes), says which exporter and
how its inputs are prepared; what a runtime declares of its graph (``input_shape``,
``output_width``) is checked against it before any image is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import DataError, NotFoundError, UsageError
from zoo.data.preprocess import Preprocessing
from zoo.deploy.exporters import install_hint, runtimes
from zoo.deploy.images import preprocessing_from

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "SIDECAR",
    "ExportedModel",
    "latest_export_of",
    "model_or_path",
    "open_model",
    "read_sidecar",
]

SIDECAR = "zoo-export.json"  # written next to every exported file: preprocessing, classes


def read_sidecar(folder: Path) -> dict[str, Any]:
    path = folder / SIDECAR
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _onnx_in(folder: Path) -> Path:
    files = sorted(folder.rglob("*.onnx"))
    if not files:
        raise NotFoundError(f"no .onnx file under {folder}")
    preferred = [f for f in files if f.name == "model.onnx"]
    return (preferred or files)[0]


def _artifact_in(folder: Path, meta: Mapping[str, Any]) -> Path:
    """The exported file in ``folder``: the one its sidecar names (ONNX: any *.onnx)."""
    named = meta.get("file")
    if isinstance(named, str) and named:
        found = sorted(p for p in folder.rglob(Path(named).name) if p.is_file())
        if found:
            return found[0]
    if meta.get("format", "onnx") == "onnx":
        return _onnx_in(folder)
    raise NotFoundError(f"{folder} holds no {named or 'exported file'}")


def _exports_of(model_uri: str) -> list[tuple[int, str, str]]:
    """(created, models:/NAME.FMT/N, FMT) of every export registered from ``model_uri``."""
    from zoo.registry.store import client

    name = model_uri.split("/")[1]
    try:
        found = client().search_model_versions(f"name LIKE '{name}.%'")
    except Exception:
        return []
    out = []
    for v in found:
        tags = v.tags or {}
        if tags.get("zoo.derived_from") == model_uri:
            fmt = tags.get("zoo.format") or v.name.rsplit(".", 1)[-1]
            out.append((int(v.creation_timestamp or 0), f"models:/{v.name}/{v.version}", fmt))
    return sorted(out)


def _precision_of(model_uri: str) -> str | None:
    """The precision a registered export's sidecar records (None: it records none)."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="zoo-sidecar-") as tmp:
        try:
            got = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{model_uri}/{SIDECAR}", dst_path=tmp
            )
        except Exception:  # an export registered without a sidecar
            return None
        meta = read_sidecar(Path(got).parent)
    value = meta.get("precision")
    return str(value) if value else None


def _registered_export(ref: str, precision: str | None = None) -> tuple[Path, dict[str, Any], Any]:
    """Download a registered export (NAME.FMT/N, or the newest export of NAME/N, of
    ``precision`` when given)."""

    from zoo import registry
    from zoo.registry.read import download_files
    from zoo.registry.store import configure

    configure()
    version = registry.get_version(ref)
    if version.relation != "export":
        runnable = set(runtimes())
        exports = [e for e in _exports_of(version.model_uri) if e[2] in runnable]
        if not exports:
            raise NotFoundError(
                f"{version.model_uri} has no export zoo predict can run (formats with a "
                f"runtime: {', '.join(sorted(runnable)) or 'none'}): run "
                f"`zoo export {version.model_uri}`"
            )
        chosen = exports[-1][1]
        if precision is not None:
            found = [e for e in reversed(exports) if _precision_of(e[1]) == precision]
            if not found:
                raise NotFoundError(
                    f"{version.model_uri} has no {precision} export: run "
                    f"`zoo export {version.model_uri} --precision {precision}`"
                )
            chosen = found[0][1]
        version = registry.get_version(chosen)
    folder = download_files(version)
    meta = read_sidecar(folder)
    meta.setdefault("format", version.tags.get("zoo.format", "onnx"))
    meta.setdefault("preprocessing", dict(version.preprocessing))
    meta.setdefault("class_names", list(version.class_names))
    meta.setdefault("exporter_plugin", version.tags.get("zoo.exporter_plugin"))
    return _artifact_in(folder, meta), meta, version


def latest_export_of(model_uri: str, fmt: str = "onnx") -> str | None:
    """models:/NAME.FMT/N of the newest ``fmt`` export registered from ``model_uri``."""
    found = [uri for _, uri, f in _exports_of(model_uri) if f == fmt]
    return found[-1] if found else None


@dataclass
class ExportedModel:
    """An exported file opened by its exporter's runtime, with the training preprocessing."""

    path: Path
    runtime: Any  # the exporter's: run(batch) -> logits; provider, note optional
    preprocessing: Preprocessing | None
    class_names: tuple[str, ...] = ()
    format: str = "onnx"
    precision: str | None = None  # as the export's sidecar records it
    taken: str | None = None  # REF named a model and a path here: which one was taken
    # what was run, as the user can name it again: the registered export's models:/ URI
    # (its file was a temporary download), else the file's path
    source: str = ""

    @property
    def provider(self) -> str:
        return str(getattr(self.runtime, "provider", self.format))

    @property
    def note(self) -> str | None:
        return getattr(self.runtime, "note", None)

    def run(self, batch: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.asarray(self.runtime.run(np.ascontiguousarray(batch, dtype=np.float32)))


def open_model(ref: str, *, provider: str = "auto", precision: str | None = None) -> ExportedModel:
    """An export written by ``zoo export`` (its file or folder) or a registered export,
    opened with the runtime of the exporter that made its format. ``precision``: the
    export must be of that precision (a registered source: its newest one that is)."""
    path, taken = model_or_path(ref)
    if path is not None:
        if not path.exists():
            raise NotFoundError(f"no such file or folder: {path}")
        folder = path if path.is_dir() else path.parent
        meta = read_sidecar(folder)
        if not meta:
            raise DataError(
                f"{path} has no {SIDECAR} beside it, so its preprocessing is unknown: "
                "predict with a file written by `zoo export` or a registered version"
            )
        artifact = path if path.is_file() else _artifact_in(folder, meta)
        source = str(artifact)
    else:
        artifact, meta, version = _registered_export(ref, precision)
        source = str(version.model_uri)
    recorded = meta.get("precision")
    if precision is not None and recorded and recorded != precision:
        raise UsageError(
            f"{ref} is a {recorded} export, not {precision}: name a {precision} export "
            "(or the registered version it was made from, or drop --precision)"
        )
    fmt = str(meta.get("format") or "onnx")
    runtime = runtimes().get(fmt)
    if runtime is None:
        made_by = meta.get("exporter_plugin")
        by = f" (made by {made_by})" if made_by else ""
        raise NotFoundError(
            f"{artifact.name} is a '{fmt}' export{by} and no installed exporter can run "
            f"'{fmt}' for zoo predict: {install_hint(fmt)}"
        )
    prep = preprocessing_from(meta.get("preprocessing") or {})
    model = ExportedModel(
        path=artifact,
        runtime=runtime.open(artifact, provider=provider),
        preprocessing=prep,
        class_names=tuple(meta.get("class_names") or ()),
        format=fmt,
        precision=str(recorded) if recorded else None,
        taken=taken,
        source=source,
    )
    _check_fits(model, prep, artifact)
    return model


def model_or_path(ref: str) -> tuple[Path | None, str | None]:
    """What REF names: (a path, or None for a registered model; the line saying which was
    taken when a bare name is both). A path form (``./x``, ``/x``, ``x/``, ``~/x``) is a
    path; a bare name is the registered model of that name, or the file or folder of that
    name here when no model is registered so; when both exist, a folder loses to the
    model and a file wins over it."""
    from zoo.contract.errors import BadReferenceError
    from zoo.contract.refs import parse_ref

    if ref.startswith("models:"):
        return None, None
    path = Path(ref).expanduser()
    if ref.startswith("~") or "/" in ref or os.sep in ref:
        return path, None
    try:
        bare = parse_ref(ref).scheme == "bare"
    except BadReferenceError:
        bare = False

    def registered() -> bool:
        from zoo.registry import has_model  # mlflow: only for a bare name that may be both

        return bare and has_model(ref)

    if not path.exists():  # x.onnx: the file, or the registered export of that name
        return (path if path.suffix == ".onnx" and not registered() else None), None
    if not registered():
        return path, None
    if path.is_dir():
        return None, (
            f"'{ref}' is both a registered model and a folder here: took the registered "
            f"model (write ./{ref} for the folder)"
        )
    return path, (
        f"'{ref}' is both a registered model and a file here: took the file (write "
        f"models:/{ref}/latest for the model)"
    )


def _check_fits(model: ExportedModel, prep: Preprocessing, exported: Path) -> None:
    """The recorded preprocessing and classes must fit the graph's fixed dimensions, as
    the runtime declares them (``input_shape``: one input's dimensions after the batch,
    None where free; ``output_width``: the logits' last dimension, None when free): a
    sidecar from another export would otherwise fail deep inside the runtime. What a
    runtime does not declare is not checked."""
    want = [int(d) for d in prep.input_size]
    shape = getattr(model.runtime, "input_shape", None)
    if shape is not None:
        dims = list(shape)
        fixed = [(i, d) for i, d in enumerate(dims) if isinstance(d, int) and d > 0]
        if len(dims) != len(want) or any(d != want[i] for i, d in fixed):
            raise DataError(
                f"{exported} takes inputs of shape {dims}, but its {SIDECAR} says "
                f"input_size {want}: the sidecar does not belong to this model; export it again"
            )
    width = getattr(model.runtime, "output_width", None)
    if model.class_names and isinstance(width, int) and width != len(model.class_names):
        raise DataError(
            f"{exported} gives {width} classes, but its {SIDECAR} names "
            f"{len(model.class_names)}: the sidecar does not belong to this model; export it again"
        )
