"""Images as a model trained by zoo sees them at evaluation: the runtime-neutral half of
``zoo predict`` (and of the export gates' check set, and of an exporter's served model).

Preprocessing is the training data loader's evaluation path (zoo.data: decode, resize,
centre crop, normalise) done with Pillow and numpy only, so ``zoo predict`` imports no
torch; tests pin it to the loader's own torch path on real images. Images are decoded in a
thread pool (Pillow releases the GIL while decoding and resizing). Nothing here knows a
runtime or a format: an exporter's runtime gets the arrays.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import DataError, NotFoundError
from zoo.data.decode import ImageDecodeError, decode_image, resize_for_eval
from zoo.data.preprocess import Preprocessing

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "decode_images",
    "find_images",
    "load_image",
    "preprocessing_from",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


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
