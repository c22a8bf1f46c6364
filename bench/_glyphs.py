"""The letters of the `glyphs` set (bench/datasets.py): which fonts qualify, and how one
letter of one font becomes a 64x64 grayscale PNG. Deterministic: no randomness here (the
seeded choice of fonts is bench/datasets.py's); the bytes depend only on the font file,
Pillow and the FreeType it bundles."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

K = TypeVar("K")

LETTERS = "ABCDEFGHIJ"  # notMNIST's ten classes
SIZE = 64  # the image: SIZE x SIZE pixels, grayscale
FILL = 0.8  # the glyph's longer side spans FILL * SIZE pixels
RENDER_PX = 256  # drawn at this font size first, then reduced (area-averaged)
# A font whose ten letters differ from an already kept font's by less than this many
# grey levels (mean absolute difference, of 255) is a redrawing of the same outlines:
# left out. Measured: TeX Gyre's and FreeFont's redrawings of URW's base 35 against the
# originals 0.05-4.6; DejaVu Math TeX Gyre against DejaVu Serif 1.1; among the fonts of
# bench/datasets.py's packages, the next closest pair 9.6 (Cantarell Light, DejaVu Sans
# ExtraLight).
NEAR_COPY = 4.0
_PANOSE_SYMBOL = 5  # OS/2 panose bFamilyType "Latin Pictorial" (symbol and dingbat fonts)


def font_files(root: Path) -> list[Path]:
    """The TrueType and OpenType files of an unpacked package, sorted (no links)."""
    found = [p for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    return sorted(p for p in found if p.is_file() and not p.is_symlink())


def qualifies(path: Path) -> bool:
    """The cmap maps every one of A-J, to the glyphs named A-J, and the font is not a
    symbol font: a symbol font maps A, B, C to Alpha, Beta, Chi, a dingbat font to a10,
    a29..., and either may say Pictorial in its panose."""
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        cmap = font.getBestCmap() or {}
        names = [cmap.get(ord(letter)) for letter in LETTERS]
        panose = getattr(font.get("OS/2"), "panose", None)
        symbol = panose is not None and panose.bFamilyType == _PANOSE_SYMBOL
    return names == list(LETTERS) and not symbol


def drawn(font: Any, char: str) -> Image.Image:
    """One character of a Pillow FreeType font, black on white, with a margin of a
    sixteenth of the font size around its bounding box (bench/_chess.py draws with it too)."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = (int(v) for v in font.getbbox(char))
    pad = int(font.size) // 16
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 255)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), char, font=font, fill=0)
    return canvas


def fitted(gray: Image.Image, size: int, fill: float) -> Image.Image | None:
    """The ink of a black-on-white image cropped, reduced (area-averaged, aspect kept) so
    its longer side is ``fill * size`` and centred on its bounding box in a ``size`` x
    ``size`` image; None when it has no ink."""
    from PIL import Image, ImageOps

    box = ImageOps.invert(gray).getbbox()
    if box is None:
        return None
    ink = gray.crop(box)
    scale = fill * size / max(ink.size)
    shape = (max(1, round(ink.width * scale)), max(1, round(ink.height * scale)))
    ink = ink.resize(shape, Image.Resampling.BOX)
    out = Image.new("L", (size, size), 255)
    out.paste(ink, ((size - ink.width) // 2, (size - ink.height) // 2))
    return out


def render(path: Path, letter: str) -> bytes | None:
    """One letter, black on white, as PNG bytes: drawn at RENDER_PX, then :func:`fitted`
    into SIZE x SIZE with FILL. None when the glyph has no ink."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    out = fitted(drawn(font, letter), SIZE, FILL)
    if out is None:
        return None
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def render_all(path: Path) -> list[bytes] | None:
    """The ten letters of one font, or None when one has no ink."""
    images: list[bytes] = []
    for letter in LETTERS:
        image = render(path, letter)
        if image is None:
            return None
        images.append(image)
    return images


def _pixels(images: list[bytes]) -> np.ndarray:
    import numpy as np
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(b)), dtype=np.float32) for b in images])


def first_of_each(
    pixels: dict[K, np.ndarray], threshold: float
) -> tuple[list[K], list[tuple[K, K]]]:
    """The items (in the order given) whose pixels differ from every earlier kept one's
    by at least ``threshold`` grey levels (mean absolute difference), and (left out, the
    kept item it copies) for the others (bench/_chess.py uses it too)."""
    kept: list[tuple[K, np.ndarray]] = []
    copies: list[tuple[K, K]] = []
    for key, seen_now in pixels.items():
        near = [other for other, seen in kept if abs(seen_now - seen).mean() < threshold]
        if near:
            copies.append((key, near[0]))
        else:
            kept.append((key, seen_now))
    return [key for key, _ in kept], copies


def distinct(fonts: dict[Path, list[bytes]]) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """The fonts (in the order given) that are no near copy of an earlier kept one, and
    (left out, the kept font it copies) for the others."""
    return first_of_each({path: _pixels(images) for path, images in fonts.items()}, NEAR_COPY)
