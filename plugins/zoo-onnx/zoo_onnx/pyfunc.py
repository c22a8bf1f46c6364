"""Save an ONNX export as an MLflow model that serves images (``mlflow models serve``).

One MLflow model, two flavours: ``python_function`` is :mod:`zoo_onnx.serving` (a model
from code: images in, class names with probabilities out, zoo's preprocessing before ONNX
Runtime) and ``onnx`` points at the same file, so ``mlflow.onnx.load_model`` still gives
the graph. The signature names the request columns; the input example is a real image.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zoo

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

SERVING_CODE = Path(__file__).with_name("serving.py")
ONNX_FILE = "model.onnx"


def signature() -> Any:
    """Request: an ``image`` (bytes; base64 in JSON) or a ``path`` per row. Response: the
    top-1 ``class``, its ``index`` and ``probability``, every class's probability, and an
    ``error`` for an image that could not be read."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, DataType, Map, Schema

    inputs = Schema(
        [
            ColSpec(DataType.binary, "image", required=False),
            ColSpec(DataType.string, "path", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec(DataType.string, "class", required=False),
            ColSpec(DataType.long, "index", required=False),
            ColSpec(DataType.double, "probability", required=False),
            ColSpec(Map(DataType.double), "probabilities", required=False),
            ColSpec(DataType.string, "error", required=False),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def example_image(meta: dict[str, Any], batch: np.ndarray | None) -> bytes:
    """A PNG of the export's example input (a real check image when there was one):
    the preprocessed tensor mapped back to pixels."""
    import numpy as np
    from PIL import Image

    prep = zoo.preprocessing_from(meta.get("preprocessing") or {})
    height, width = prep.crop
    if batch is None or np.asarray(batch).ndim != 4:
        pixels = np.full((height, width, 3), 128, dtype=np.uint8)
    else:
        x = np.asarray(batch[0], dtype=np.float32).transpose(1, 2, 0)
        mean = np.asarray(prep.mean, dtype=np.float32)
        std = np.asarray(prep.std, dtype=np.float32)
        pixels = np.clip(np.rint((x * std + mean) * 255.0), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def save_serving_model(
    onnx_path: Path, sidecar: Path, dest: Path, *, input_example: np.ndarray | None
) -> tuple[str, ...]:
    """Write the MLflow model into ``dest``; returns the files it must contain."""
    import onnx
    import pandas as pd
    from mlflow.models import Model

    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    example = pd.DataFrame({"image": [example_image(meta, input_example)]})
    with _quiet():
        _save(dest, onnx_path, sidecar, example)
    mlmodel = Model.load(str(dest))
    pyfunc = mlmodel.flavors["python_function"]
    # One copy of the graph, where mlflow.onnx keeps it and where the version's lineage
    # says its weights are (zoo registry check --verify re-hashes model.onnx): both
    # flavours point at it.
    (dest / str(pyfunc["artifacts"]["onnx"]["path"])).replace(dest / ONNX_FILE)
    pyfunc["artifacts"]["onnx"]["path"] = ONNX_FILE
    mlmodel.add_flavor("onnx", onnx_version=onnx.__version__, data=ONNX_FILE, code=None)
    mlmodel.save(str(dest / "MLmodel"))
    return ("MLmodel", ONNX_FILE, str(pyfunc["artifacts"]["export"]["path"]))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's notes while saving (its advice on type hints, "validating input example")
    are not the user's business: its logger and warnings are silenced meanwhile."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _save(dest: Path, onnx_path: Path, sidecar: Path, example: Any) -> None:
    import mlflow

    mlflow.pyfunc.save_model(
        str(dest),
        python_model=str(SERVING_CODE),
        artifacts={"onnx": str(onnx_path), "export": str(sidecar)},
        signature=signature(),
        input_example=example,
        pip_requirements=[
            f"transfer-zoo=={zoo.__version__}",
            *_requirements("zoo-onnx"),
            "onnx",
            "onnxruntime",
            "pillow",
            "pandas",
        ],
    )


def _requirements(*distributions: str) -> list[str]:
    """``NAME==VERSION`` of each installed distribution; none for one that is not installed
    (a checkout on PYTHONPATH: a requirement MLflow could not check against anything)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in distributions:
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{name}=={version(name)}")
    return out
