"""Decoding one image file into RGB, whatever its mode, or saying why it cannot be used.

Modes handled: RGB; RGBA, LA and palette images with transparency (composited on white:
clip art and logos are drawn on a transparent background that means "paper"); palette;
grayscale; 16-bit grayscale (scaled, not clipped); CMYK; EXIF rotation. Files that cannot be
used raise :class:`ImageDecodeError` with a short reason: empty, not an image, truncated or
corrupt, or a decompression bomb. Pillow's own guard decides what a bomb is: images above
twice ``PIL.Image.MAX_IMAGE_PIXELS`` (about 179 megapixels by default) are refused, those
between one and two times the limit are decoded (Pillow only warns for them).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

__all__ = ["INTERPOLATIONS", "ImageDecodeError", "decode_image", "resize_for_eval", "to_rgb"]

# Interpolation names used in backbone configs -> Pillow resampling filter names.
INTERPOLATIONS = {
    "nearest": "NEAREST",
    "bilinear": "BILINEAR",
    "bicubic": "BICUBIC",
    "lanczos": "LANCZOS",
    "box": "BOX",
    "hamming": "HAMMING",
}


class ImageDecodeError(Exception):
    """A file that cannot be used as an image; ``reason`` is a short phrase."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_image(source: str | Path | bytes) -> PILImage.Image:
    """Decode a file (path or its bytes) into a fully loaded RGB image."""
    from PIL import Image, UnidentifiedImageError

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Between 1x and 2x the pixel limit Pillow only warns; above 2x it raises.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return _rgb(img, owned=True)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"decompression bomb refused by Pillow ({exc})") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageDecodeError(f"truncated or corrupt image ({text})") from None


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """Any Pillow mode -> a new RGB image (``img`` is left as it is); transparency
    composited on white."""
    return _rgb(img, owned=False)


def _rgb(img: PILImage.Image, *, owned: bool) -> PILImage.Image:
    """:func:`to_rgb`; ``owned``: ``img`` is the caller's to give away (decode_image's),
    so an RGB image without an EXIF turn is returned as it is, not copied.

    Each step over the pixels is a pass over the whole image, which is what decoding a
    large drawing costs beside inflating it (a 169-megapixel RGBA clip art: 2.8 s before
    the passes below were cut to two, 0.64 s after): an image is turned only when its EXIF
    says so, and transparency is composited with one masked paste onto white paper, which
    gives Pillow's ``alpha_composite`` on white bit for bit (tests/test_data.py checks all
    65,536 value and alpha pairs)."""
    import numpy as np
    from PIL import ExifTags, Image, ImageOps

    img.load()
    if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        img = ImageOps.exif_transpose(img)  # a turned copy
        owned = True
    mode = img.mode
    if mode == "RGB":
        return img if owned and not img.readonly else img.copy()
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (
        mode in {"L", "RGB"} and "transparency" in img.info
    ):
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        paper = Image.new("RGB", rgba.size, (255, 255, 255))
        paper.paste(rgba, mask=rgba)  # the alpha band is the mask
        return paper
    if mode.startswith("I;16") or mode in {"I", "F"}:
        arr = np.asarray(img).astype(np.float64)
        top = float(arr.max()) if arr.size else 0.0
        if mode.startswith("I;16") or top > 255.0:
            arr = arr * (255.0 / 65535.0)  # 16-bit range -> 8-bit
        elif mode == "F" and top <= 1.0:
            arr = arr * 255.0
        gray = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def resize_for_eval(
    img: PILImage.Image, size: int | tuple[int, int], interpolation: str
) -> PILImage.Image:
    """Resize as the backbone's eval transform does before its centre crop.

    ``size`` an int: the shorter side becomes ``size`` (aspect kept); a (height, width)
    pair: exactly that size.
    """
    from PIL import Image

    resample = getattr(Image.Resampling, INTERPOLATIONS.get(interpolation, "BILINEAR"))
    w, h = img.size
    if isinstance(size, int):
        if w <= h:
            new_w, new_h = size, max(1, int(size * h / w))  # as torchvision's Resize
        else:
            new_w, new_h = max(1, int(size * w / h)), size
    else:
        new_h, new_w = size
    if (new_w, new_h) == (w, h):
        return img
    # reducing_gap: large sources are first shrunk by an integer factor (fast, exact box
    # filter), then resampled; clip art of hundreds of megapixels decodes in seconds.
    return img.resize((new_w, new_h), resample, reducing_gap=3.0)
