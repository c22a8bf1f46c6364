"""The MLflow pyfunc of a registered ONNX export: images in, classes and probabilities out.

MLflow loads this file as a model from code (``mlflow.pyfunc.log_model(python_model=<this
file>)``: no pickle). Its artifacts are the ONNX file and the export's ``zoo-export.json``
(the training preprocessing and the class names); each request row carries an ``image``
(the file's bytes; base64 in JSON) or a ``path`` (a file under the server's
``ZOO_SERVE_ROOT``). The image is decoded and preprocessed by zoo's own evaluation path
(``zoo.load_image``, the function ``zoo predict`` uses) and run with ONNX Runtime
(``zoo_onnx.runtime.OnnxModel``: TensorRT, CUDA, then CPU; ``ZOO_PROVIDER=cpu`` pins one),
so a served prediction is ``zoo predict``'s.

Output, one row per input row: ``class`` (top-1 name), ``index``, ``probability`` (its
softmax probability), ``probabilities`` (every class name -> probability) and ``error``
(why the image could not be decoded; the other fields are then empty).

What a client may make the server read is bounded before anything is read: ``path`` rows
only when the server's environment names ``ZOO_SERVE_ROOT``, and then only regular files
under it (resolved, so no symlink leads out; FIFOs and devices refused from ``fstat`` of
a non-blocking, no-follow descriptor before any read); every image at most
``ZOO_SERVE_MAX_BYTES`` (default 32 MiB) before decoding, and within Pillow's pixel
limit (its warning is a refusal here). A refused row fails the whole request with HTTP
400 and one line; a path outside the root is refused with the same text whether it
exists, is missing, a folder or a device, so answers tell nothing about the host's files.
This file is self-contained on purpose: MLflow stores a copy of it with each export.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

ONNX_ARTIFACT, EXPORT_ARTIFACT = "onnx", "export"  # the names of the two artifacts
COLUMNS = ("image", "path")  # the request columns (the signature's inputs)
ROOT_ENV, MAX_BYTES_ENV = "ZOO_SERVE_ROOT", "ZOO_SERVE_MAX_BYTES"
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
# The one answer for every path outside the root, whatever is (or is not) there.
OUTSIDE_ROOT = f"the path is not a file under {ROOT_ENV}; nothing was read"


class Refused(Exception):
    """A request the server will not serve (HTTP 400): one line saying why and what to do."""


def serving_limits(environ: dict[str, str] | None = None) -> tuple[Path | None, int]:
    """(the resolved ``ZOO_SERVE_ROOT`` or None, ``ZOO_SERVE_MAX_BYTES``) from the server's
    environment; a bad value stops the server at start, naming the variable."""
    env = os.environ if environ is None else environ
    text = env.get(MAX_BYTES_ENV, "").strip()
    max_bytes = DEFAULT_MAX_BYTES
    if text:
        try:
            max_bytes = int(text)
        except ValueError:
            max_bytes = 0
        if max_bytes < 1:
            raise ValueError(f"{MAX_BYTES_ENV}={text!r}: give a positive number of bytes")
    root_text = env.get(ROOT_ENV, "").strip()
    if not root_text:
        return None, max_bytes
    root = Path(root_text).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"{ROOT_ENV}={root_text}: no such folder; create it or unset it")
    return root, max_bytes


def read_under_root(text: str, root: Path | None, max_bytes: int, *, read: bool = True) -> bytes:
    """The bytes of a regular file under ``root``, at most ``max_bytes``; Refused otherwise
    (``read=False``: the checks alone, nothing read).

    The path is resolved (symlinks followed) and must stay under the root; the file is
    opened without following a last-moment symlink and without blocking (a FIFO), and
    ``fstat`` of that descriptor decides before any read: a regular file, within bounds."""
    if root is None:
        raise Refused(
            f"'path' rows are refused: this server names no {ROOT_ENV}; send the image's "
            f"bytes in 'image', or start the server with {ROOT_ENV}=/srv/inbox"
        )
    if not text or "\x00" in text:
        raise Refused(OUTSIDE_ROOT)
    try:
        real = (root / text).resolve()  # an absolute path replaces the root
    except (OSError, RuntimeError):  # a symlink loop
        raise Refused(OUTSIDE_ROOT) from None
    if real == root or not real.is_relative_to(root):
        raise Refused(OUTSIDE_ROOT)
    name = real.relative_to(root)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise Refused(f"cannot open {name} under {ROOT_ENV} ({reason})") from None
    try:
        if not _opened_under(fd, root):  # a folder on the way became a symlink meanwhile
            raise Refused(OUTSIDE_ROOT)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{name} under {ROOT_ENV} is not a regular file; nothing was read")
        if info.st_size > max_bytes:
            raise Refused(_too_large(f"{name} ({info.st_size} bytes)", max_bytes))
        if not read:
            return b""
        chunks, size = [], 0
        while size <= max_bytes:  # a file that grew since fstat stops at the bound
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise Refused(_too_large(f"{name} (grew while read)", max_bytes))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _opened_under(fd: int, root: Path) -> bool:
    """Where the descriptor really points (Linux: /proc/self/fd) is under the root."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc: the resolved path was checked
        return True
    return Path(target).is_relative_to(root)


def image_bytes(value: Any, max_bytes: int) -> bytes:
    """An ``image`` cell as bytes within the bound (a base64 string is measured before
    it is decoded: 4/3 of the bound)."""
    if isinstance(value, str):
        if len(value) > (max_bytes + 2) // 3 * 4 + 4:
            raise Refused(_too_large(f"the base64 image ({len(value)} characters)", max_bytes))
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(
                "an 'image' cell is not base64; send the file's bytes in base64"
            ) from None
    data = bytes(value)
    if len(data) > max_bytes:
        raise Refused(_too_large(f"the image ({len(data)} bytes)", max_bytes))
    return data


def check_pixels(data: bytes) -> None:
    """Refuse an image above Pillow's pixel limit from its header alone (no decoding):
    Pillow only warns between one and two times the limit; here that is a refusal."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)):
                pass
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refused(
            f"an image has more pixels than Pillow's limit ({Image.MAX_IMAGE_PIXELS}); "
            "send a smaller image"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        pass  # not an image: the row's error says so when it is decoded


def _too_large(what: str, max_bytes: int) -> str:
    return f"{what} is over {MAX_BYTES_ENV}={max_bytes} bytes; send a smaller image"


class OnnxImageClassifier(PythonModel):
    """Images (bytes or paths under the root) -> class names with probabilities."""

    def load_context(self, context: Any) -> None:
        import zoo
        from zoo_onnx.runtime import OnnxModel

        meta = json.loads(Path(context.artifacts[EXPORT_ARTIFACT]).read_text(encoding="utf-8"))
        self.preprocessing = zoo.preprocessing_from(meta.get("preprocessing") or {})
        self.class_names = tuple(str(c) for c in meta.get("class_names") or ())
        self.root, self.max_bytes = serving_limits()
        self.model = OnnxModel(
            context.artifacts[ONNX_ARTIFACT],
            provider=os.environ.get("ZOO_PROVIDER", "auto"),
            preprocessing=self.preprocessing,
            class_names=self.class_names,
        )

    # A DataFrame in, a DataFrame out: MLflow infers no schema from these hints (the
    # signature logged with the model is the schema), and without hints it warns at every
    # import of this file (`zoo export`, each server worker), past any warnings filter.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            return self._predict(frame)
        except Refused as exc:  # INVALID_PARAMETER_VALUE: MLflow's server answers 400
            raise MlflowException.invalid_parameter_value(str(exc)) from None

    def _predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        import numpy as np

        import zoo

        if not any(c in frame.columns for c in COLUMNS):  # MLflow drops unknown columns
            raise Refused(
                f"the request has none of the columns {', '.join(COLUMNS)}: send each "
                "image's bytes (base64 in JSON) in 'image', or a file under "
                f"{ROOT_ENV} in 'path'"
            )
        cells = [(_cell(r, "image"), _cell(r, "path")) for _, r in frame.iterrows()]
        for i, (image, path) in enumerate(cells):  # every row checked before any is read
            with _row(i):
                if image is not None:
                    image_bytes(image, self.max_bytes)
                elif path is not None:
                    read_under_root(str(path), self.root, self.max_bytes, read=False)
        rows: list[dict[str, Any]] = []
        arrays: list[Any] = []
        for i, (image, path) in enumerate(cells):  # then one image in memory at a time
            row: dict[str, Any] = dict.fromkeys(
                ("class", "index", "probability", "probabilities", "error")
            )
            rows.append(row)
            if image is None and path is None:
                row["error"] = "the row has neither an 'image' (bytes) nor a 'path'"
                continue
            with _row(i):
                if image is not None:
                    data = image_bytes(image, self.max_bytes)
                else:
                    data = read_under_root(str(path), self.root, self.max_bytes)
                check_pixels(data)
            try:
                arrays.append((row, zoo.load_image(data, self.preprocessing)))
            except zoo.ZooError as exc:
                cause, name = exc.__cause__, None if image is not None else path
                row["error"] = f"cannot read image {name}: {cause}" if name and cause else str(exc)
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


@contextlib.contextmanager
def _row(index: int) -> Iterator[None]:
    """A refusal names the row it is about."""
    try:
        yield
    except Refused as exc:
        raise Refused(f"row {index}: {exc}") from None


def _cell(record: Any, column: str) -> Any:
    """The value of ``column`` in a row, or None when the column is absent or empty."""
    if column not in record.index:
        return None
    value = record[column]
    if value is None or (not isinstance(value, (bytes, bytearray, str)) and pd.isna(value)):
        return None
    if isinstance(value, (bytes, bytearray, str)) and len(value) == 0:
        return None
    return value


mlflow.models.set_model(OnnxImageClassifier())
