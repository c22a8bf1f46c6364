"""``zoo predict``: classify an image or a folder with an export, whatever its format.

The model is an :class:`~zoo.deploy.exported.ExportedModel` (the file opened by its
exporter's runtime, with the training preprocessing); the images are read as training
evaluated them (images.py), a few batches ahead; unreadable files are reported, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import DataError, UsageError
from zoo.deploy.images import decode_images, find_images

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from zoo.deploy.exported import ExportedModel

__all__ = ["PredictRun", "Prediction", "predict", "softmax"]


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
    model: ExportedModel,
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
