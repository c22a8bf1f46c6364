"""Inference on exports: the training preprocessing, predict, and ONNX Runtime sessions.

``zoo predict`` opens an export with the runtime of the exporter that made its format
(the exporter's ``open``); the ONNX exporter's runtime is :class:`OnnxModel` below.

Preprocessing is the training data loader's evaluation path (zoo.data: decode, resize,
centre crop, normalise) done with Pillow and numpy only, so ``zoo predict`` imports no
torch; tests pin it to the loader's own torch path on real images. Images are decoded in a
thread pool (Pillow releases the GIL while decoding and resizing).

Providers: TensorRT, then CUDA, then CPU, among those the installed onnxruntime offers.
GPU builds come from the ``onnxruntime-gpu`` wheel (installed in place of
``onnxruntime``); without one every request degrades to CPU with one line saying so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import DataError, NotFoundError, UsageError
from zoo.data.decode import ImageDecodeError, decode_image, resize_for_eval
from zoo.data.preprocess import Preprocessing

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "PROVIDERS",
    "SIDECAR",
    "ExportedModel",
    "OnnxModel",
    "Prediction",
    "Preprocessing",
    "choose_providers",
    "decode_images",
    "find_images",
    "load_image",
    "model_or_path",
    "open_model",
    "predict",
    "preprocessing_from",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SIDECAR = "zoo-export.json"  # written next to every exported file: preprocessing, classes

# --provider value -> ONNX Runtime execution providers, best first.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "cpu": ("CPUExecutionProvider",),
}
PROVIDERS["auto"] = PROVIDERS["tensorrt"]
_GPU = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider"})


# ------------------------------------------------------------------------ preprocessing


def preprocessing_from(data: Mapping[str, Any]) -> Preprocessing:
    """The training data's Preprocessing from a registered version's record."""
    missing = [k for k in ("input_size", "mean", "std") if not data.get(k)]
    if missing:
        raise DataError(
            f"the model records no {', '.join(missing)} for its preprocessing: re-export it "
            "with `zoo export` so its preprocessing travels with it"
        )
    full = {"interpolation": "bilinear", "crop_pct": 0.875, **dict(data)}
    return Preprocessing.from_dict(full)


def load_image(path: Path | str | bytes, prep: Preprocessing) -> np.ndarray:
    """One image file (its path or its bytes) as a (C, H, W) float32 array, exactly as
    training evaluates it.

    The same steps as the training data loader (zoo.data): decode to RGB (transparency on
    white), resize the shorter side, centre crop, then normalise the uint8 pixels with
    ``(x - 255 * mean) / (255 * std)``. Raises DataError naming the file.
    """
    import numpy as np

    try:
        img = resize_for_eval(decode_image(path), prep.resize, prep.interpolation)
    except (ImageDecodeError, OSError) as exc:
        name = f"({len(path)} bytes)" if isinstance(path, bytes) else str(path)
        raise DataError(f"cannot read image {name}: {exc}") from exc
    pixels = np.asarray(img, dtype=np.uint8)
    height, width = prep.crop
    h, w = pixels.shape[:2]
    if h < height or w < width:  # pad with zeros, as the centre crop does
        padded = np.zeros((max(h, height), max(w, width), 3), dtype=np.uint8)
        top, left = (padded.shape[0] - h) // 2, (padded.shape[1] - w) // 2
        padded[top : top + h, left : left + w] = pixels
        pixels, (h, w) = padded, padded.shape[:2]
    top = round((h - height) / 2.0)
    left = round((w - width) / 2.0)
    crop = pixels[top : top + height, left : left + width].astype(np.float32)
    mean = np.asarray(prep.mean, dtype=np.float32) * 255.0
    std = np.asarray(prep.std, dtype=np.float32) * 255.0
    return np.ascontiguousarray(((crop - mean) / std).transpose(2, 0, 1))


def find_images(path: Path) -> list[Path]:
    """An image file, or every image under a folder (recursively, sorted)."""
    if not path.exists():
        raise NotFoundError(f"no such file or folder: {path}")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataError(f"no images under {path} (looked for {suffixes})")
    return files


def decode_images(
    paths: Sequence[Path], prep: Preprocessing, *, workers: int | None = None
) -> Iterator[tuple[Path, np.ndarray | None, str | None]]:
    """(path, array or None, error or None) per file, in order, decoded in parallel.

    At most a few images per worker are decoded ahead of the consumer, so memory stays
    flat on large folders.
    """
    from collections import deque

    workers = workers or min(8, (os.cpu_count() or 1) + 1)

    def one(path: Path) -> tuple[Path, np.ndarray | None, str | None]:
        try:
            return path, load_image(path, prep), None
        except DataError as exc:
            return path, None, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        ahead: deque[Any] = deque()
        for path in paths:
            ahead.append(pool.submit(one, path))
            if len(ahead) >= 4 * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


# ---------------------------------------------------------------------------- sessions


def choose_providers(
    requested: str = "auto", available: Sequence[str] | None = None
) -> tuple[list[str], str | None]:
    """ONNX Runtime providers for a --provider value, and a note when it had to degrade."""
    if requested not in PROVIDERS:
        raise UsageError(f"unknown provider '{requested}': use {', '.join(PROVIDERS)}")
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    chosen = [p for p in PROVIDERS[requested] if p in available]
    note = None
    if requested != "cpu" and not any(p in _GPU for p in chosen):
        note = (
            f"--provider {requested}: this onnxruntime has no GPU provider, running on CPU "
            "(GPU users: pip install onnxruntime-gpu in place of onnxruntime)"
        )
    elif requested == "tensorrt" and "TensorrtExecutionProvider" not in chosen:
        note = "--provider tensorrt: TensorRT is not available, running on CUDA"
    return chosen, note


class OnnxModel:
    """An ONNX Runtime session for a classifier: one input batch in, logits out.

    On a GPU provider inputs and outputs go through IO binding (one copy each way, no
    per-call allocation of the output on the host).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        provider: str = "auto",
        preprocessing: Preprocessing | None = None,
        class_names: Sequence[str] = (),
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.providers, self.note = choose_providers(provider)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=self.providers
            )
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise DataError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.preprocessing = preprocessing
        self.class_names = tuple(class_names)
        self.on_gpu = self.session.get_providers()[0] in _GPU

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a (N, C, H, W) float32 batch."""
        import numpy as np

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.on_gpu:
            return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0])


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
        runnable = set(_runtimes())
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


def _runtimes() -> dict[str, Any]:
    """Installed exporters that can run their format for ``zoo predict``."""
    from zoo.contract.plugins import get_plugin_manager

    exporters = get_plugin_manager().exporters()
    return {name: e for name, e in exporters.items() if callable(getattr(e, "open", None))}


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
    else:
        artifact, meta, _ = _registered_export(ref, precision)
    recorded = meta.get("precision")
    if precision is not None and recorded and recorded != precision:
        raise UsageError(
            f"{ref} is a {recorded} export, not {precision}: name a {precision} export "
            "(or the registered version it was made from, or drop --precision)"
        )
    fmt = str(meta.get("format") or "onnx")
    runtime = _runtimes().get(fmt)
    if runtime is None:
        made_by = meta.get("exporter_plugin")
        by = f" (made by {made_by})" if made_by else ""
        raise NotFoundError(
            f"{artifact.name} is a '{fmt}' export{by} and no installed exporter can run "
            f"'{fmt}' for zoo predict: install its plugin (see `zoo plugins`)"
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


def _check_fits(model: ExportedModel, prep: Preprocessing, onnx_file: Path) -> None:
    """The recorded preprocessing and classes must fit the graph's fixed dimensions:
    a sidecar from another export would otherwise fail deep inside the runtime. Runtimes
    that do not expose an ONNX Runtime session are not checked here."""
    session = getattr(model.runtime, "session", None)
    if session is None or not hasattr(session, "get_inputs"):
        return
    want = [int(d) for d in prep.input_size]
    shape = list(session.get_inputs()[0].shape)[1:]
    fixed = [(i, d) for i, d in enumerate(shape) if isinstance(d, int) and d > 0]
    if len(shape) != len(want) or any(d != want[i] for i, d in fixed):
        raise DataError(
            f"{onnx_file} takes inputs of shape {shape}, but its {SIDECAR} says "
            f"input_size {want}: the sidecar does not belong to this model; export it again"
        )
    out = list(session.get_outputs()[0].shape)
    width = out[-1] if out else None
    if model.class_names and isinstance(width, int) and width != len(model.class_names):
        raise DataError(
            f"{onnx_file} gives {width} classes, but its {SIDECAR} names "
            f"{len(model.class_names)}: the sidecar does not belong to this model; export it again"
        )


# ----------------------------------------------------------------------------- predict


@dataclass(frozen=True)
class Prediction:
    """Top-k classes of one image, or the error that kept it from being read."""

    path: str
    top: tuple[tuple[str, float], ...] = ()  # (class name, probability), best first
    indices: tuple[int, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "top": [
                {"class": c, "index": i, "probability": p}
                for (c, p), i in zip(self.top, self.indices, strict=True)
            ],
            "error": self.error,
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    import numpy as np

    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


@dataclass
class PredictRun:
    """What ``predict`` did: the predictions, the provider, and notes for the user."""

    predictions: list[Prediction] = field(default_factory=list)
    provider: str = ""
    notes: list[str] = field(default_factory=list)


def predict(
    model: ExportedModel | OnnxModel,
    inputs: Path,
    *,
    top_k: int = 5,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> PredictRun:
    """Classify an image or every image under a folder; unreadable files are reported."""
    import numpy as np

    if top_k < 1 or batch_size < 1:
        raise UsageError("--top-k and --batch-size must be at least 1")
    if model.preprocessing is None:
        raise DataError(f"{model.path}: no preprocessing is known for this model")
    files = find_images(inputs)
    run = PredictRun(provider=model.provider)
    if model.note:
        run.notes.append(model.note)
    pending: list[tuple[Path, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        probs = softmax(model.run(np.stack([a for _, a in pending])))
        k = min(top_k, probs.shape[1])
        for (path, _), row in zip(pending, probs, strict=True):
            order = np.argsort(-row, kind="stable")[:k]
            names = [_class_name(model.class_names, int(i)) for i in order]
            run.predictions.append(
                Prediction(
                    path=str(path),
                    top=tuple((n, float(row[i])) for n, i in zip(names, order, strict=True)),
                    indices=tuple(int(i) for i in order),
                )
            )
        if on_batch is not None:
            on_batch(len(pending))
        pending.clear()

    for path, array, error in decode_images(files, model.preprocessing):
        if array is None:
            run.predictions.append(Prediction(path=str(path), error=error))
            continue
        pending.append((path, array))
        if len(pending) >= batch_size:
            flush()
    flush()
    order = {str(p): i for i, p in enumerate(files)}
    run.predictions.sort(key=lambda p: order[p.path])
    return run


def _class_name(names: Sequence[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)
