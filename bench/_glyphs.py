"""The letters of the `glyphs` set (bench/datasets.py): which fonts qualify, and how one
letter of one font becomes a 64x64 grayscale PNG. Deterministic: no randomness here (the
seeded choice of fonts is bench/datasets.py's); the bytes depend only on the font file,
Pillow and the FreeType it bundles."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

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


def render(path: Path, letter: str) -> bytes | None:
    """One letter, black on white, as PNG bytes: drawn at RENDER_PX, cropped to its ink,
    reduced (aspect kept) so its longer side is FILL * SIZE, and centred on its bounding
    box in a SIZE x SIZE image. None when the glyph has no ink."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    left, top, right, bottom = (int(v) for v in font.getbbox(letter))
    pad = RENDER_PX // 16
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 255)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), letter, font=font, fill=0)
    ink = ImageOps.invert(canvas).getbbox()
    if ink is None:
        return None
    glyph = canvas.crop(ink)
    scale = FILL * SIZE / max(glyph.size)
    shape = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(shape, Image.Resampling.BOX)
    out = Image.new("L", (SIZE, SIZE), 255)
    out.paste(glyph, ((SIZE - glyph.width) // 2, (SIZE - glyph.height) // 2))
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


def distinct(fonts: dict[Path, list[bytes]]) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """The fonts (in the order given) that are no near copy of an earlier kept one, and
    (left out, the kept font it copies) for the others."""
    kept: list[tuple[Path, np.ndarray]] = []
    copies: list[tuple[Path, Path]] = []
    for path, images in fonts.items():
        pixels = _pixels(images)
        near = [other for other, seen in kept if abs(pixels - seen).mean() < NEAR_COPY]
        if near:
            copies.append((path, near[0]))
        else:
            kept.append((path, pixels))
    return [path for path, _ in kept], copies
