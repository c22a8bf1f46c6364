"""The characters of the `glyphs` set (the letters A-J) and of the `digits` set (0-9)
(bench/datasets.py): which fonts qualify, how one character of one font becomes a 64x64
grayscale PNG, which fonts are near copies of another, and a set's folders. Deterministic
but for the seeded choice of fonts (:func:`lay_out`'s SEED); the bytes depend only on
the font files, Pillow and the FreeType it bundles."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from PIL import Image

K = TypeVar("K")

LETTERS = "ABCDEFGHIJ"  # notMNIST's ten classes
DIGITS = "0123456789"
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


def qualifies(path: Path, chars: str = LETTERS) -> bool:
    """The cmap maps every one of CHARS to a glyph named for that character by the Adobe
    Glyph List (A, zero, uni0030, zero.alt), and the font is not a symbol font: a symbol
    font maps A, B, C to Alpha, Beta, Chi, a dingbat font A or 0 to a10, a105..., and
    either may say Pictorial in its panose."""
    from fontTools.agl import toUnicode
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        cmap = font.getBestCmap() or {}
        names = [cmap.get(ord(char)) for char in chars]
        panose = getattr(font.get("OS/2"), "panose", None)
        symbol = panose is not None and panose.bFamilyType == _PANOSE_SYMBOL
    named = all(
        name is not None and toUnicode(name) == c for name, c in zip(names, chars, strict=True)
    )
    return named and not symbol


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


def render(path: Path, char: str) -> bytes | None:
    """One character, black on white, as PNG bytes: drawn at RENDER_PX, then
    :func:`fitted` into SIZE x SIZE with FILL. None when the glyph has no ink."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    out = fitted(drawn(font, char), SIZE, FILL)
    if out is None:
        return None
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def render_all(path: Path, chars: str = LETTERS) -> list[bytes] | None:
    """The CHARS of one font, or None when one has no ink."""
    images: list[bytes] = []
    for char in chars:
        image = render(path, char)
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


def distinct(
    fonts: dict[Path, list[bytes]], reference: dict[Path, list[bytes]] | None = None
) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """The fonts (in the order given) that are no near copy of an earlier kept one nor of
    any REFERENCE font (another set's fonts, drawing the same characters), and (left out,
    the font it copies) for the others."""
    pixels = {(True, path): _pixels(images) for path, images in (reference or {}).items()}
    pixels |= {(False, path): _pixels(images) for path, images in fonts.items()}
    kept, copies = first_of_each(pixels, NEAR_COPY)
    return (
        [path for ref, path in kept if not ref],
        [(path, other) for (ref, path), (_, other) in copies if not ref],
    )


def drawn_fonts(roots: Iterable[Path], chars: str) -> dict[Path, list[bytes]]:
    """CHARS of every qualifying font file under ROOTS (unpacked packages) whose every
    character draws ink, sorted by path (package, then file)."""
    rendered: dict[Path, list[bytes]] = {}
    for path in sorted(p for root in roots for p in font_files(root)):
        images = render_all(path, chars) if qualifies(path, chars) else None
        if images is not None:
            rendered[path] = images
    return rendered


def lay_out(
    tmp: Path,
    rendered: dict[Path, list[bytes]],
    classes: dict[str, str],
    fonts: int,
    seed: int,
    reference: dict[Path, list[bytes]] | None = None,
) -> dict[str, int]:
    """A seeded sample of FONTS of RENDERED's :func:`distinct` fonts (in path order),
    written as TMP/<class>/<font file's stem, spaces as dashes>.png; CLASSES maps each
    character (in the order drawn) to its folder. A byte-identical image (the same outline
    in two files) is kept once. Returns the count per class."""
    import numpy as np

    kept, _copies = distinct(rendered, reference)
    if len(kept) > fonts:
        rng = np.random.default_rng(seed)
        kept = [kept[i] for i in sorted(rng.choice(len(kept), fonts, replace=False))]
    seen: set[bytes] = set()
    counts = dict.fromkeys(classes.values(), 0)
    for folder in counts:
        (tmp / folder).mkdir()
    for path in kept:
        for folder, image in zip(classes.values(), rendered[path], strict=True):
            target = tmp / folder / f"{path.stem.replace(' ', '-')}.png"
            if image in seen:
                continue  # the same outline in another file: kept once
            if target.exists():
                raise SystemExit(f"bench/datasets.py: two sampled fonts are named {target.name}")
            seen.add(image)
            target.write_bytes(image)
            counts[folder] += 1
    return counts
