"""The MLflow pyfunc of a registered ONNX export: images in, classes and probabilities out.

MLflow loads this file as a model from code (``mlflow.pyfunc.log_model(python_model=<this
file>)``: no pickle). Its artifacts are the ONNX file and the export's ``zoo-export.json``
(the training preprocessing and the class names); each request row carries an ``image``
(the file's bytes; base64 in JSON) or a ``path`` (a file the server can read). The image is
decoded and preprocessed by zoo's own evaluation path (``zoo.load_image``, the function
``zoo predict`` uses) and run with ONNX Runtime (``zoo.OnnxModel``: TensorRT, CUDA, then
CPU; ``ZOO_PROVIDER=cpu`` pins one), so a served prediction is ``zoo predict``'s.

Output, one row per input row: ``class`` (top-1 name), ``index``, ``probability`` (its
softmax probability), ``probabilities`` (every class name -> probability) and ``error``
(why the image could not be read; the other fields are then empty).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel

ONNX_ARTIFACT, EXPORT_ARTIFACT = "onnx", "export"  # the names of the two artifacts


class OnnxImageClassifier(PythonModel):
    """Images (bytes or paths) -> class names with probabilities, through zoo's runtime."""

    def load_context(self, context: Any) -> None:
        import zoo

        meta = json.loads(Path(context.artifacts[EXPORT_ARTIFACT]).read_text(encoding="utf-8"))
        self.preprocessing = zoo.preprocessing_from(meta.get("preprocessing") or {})
        self.class_names = tuple(str(c) for c in meta.get("class_names") or ())
        self.model = zoo.OnnxModel(
            context.artifacts[ONNX_ARTIFACT],
            provider=os.environ.get("ZOO_PROVIDER", "auto"),
            preprocessing=self.preprocessing,
            class_names=self.class_names,
        )

    # No type hints here: MLflow would read them as a schema of its own (the signature,
    # logged with the model, is the schema).
    def predict(self, context, model_input, params=None):
        import numpy as np
        import pandas as pd

        import zoo

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        rows: list[dict[str, Any]] = []
        arrays: list[Any] = []
        for _, record in frame.iterrows():
            image, path = _cell(record, "image"), _cell(record, "path")
            row: dict[str, Any] = {
                "class": None,
                "index": None,
                "probability": None,
                "probabilities": None,
                "error": None,
            }
            rows.append(row)
            source: bytes | str | None = None
            if image is not None:
                source = bytes(image)
            elif path is not None:
                source = str(path)
            if source is None:
                row["error"] = "the row has neither an 'image' (bytes) nor a 'path'"
                continue
            try:
                arrays.append((row, zoo.load_image(source, self.preprocessing)))
            except zoo.ZooError as exc:
                row["error"] = str(exc)
        if arrays:
            probs = zoo.softmax(self.model.run(np.stack([a for _, a in arrays])))
            for (row, _), p in zip(arrays, probs, strict=True):
                best = int(np.argmax(p))
                row["class"] = self._name(best)
                row["index"] = best
                row["probability"] = float(p[best])
                row["probabilities"] = {self._name(i): float(v) for i, v in enumerate(p)}
        columns = ["class", "index", "probability", "probabilities", "error"]
        return pd.DataFrame(rows, columns=columns, dtype=object)

    def _name(self, index: int) -> str:
        names = self.class_names
        return names[index] if 0 <= index < len(names) else str(index)


def _cell(record: Any, column: str) -> Any:
    """The value of ``column`` in a row, or None when the column is absent or empty."""
    import pandas as pd

    if column not in record.index:
        return None
    value = record[column]
    if value is None or (not isinstance(value, (bytes, bytearray, str)) and pd.isna(value)):
        return None
    if isinstance(value, (bytes, bytearray, str)) and len(value) == 0:
        return None
    return value


mlflow.models.set_model(OnnxImageClassifier())
