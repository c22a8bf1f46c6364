"""The pieces of the `chess` set (bench/datasets.py): chess piece designs from two Debian
packages, one class per piece type (pawn, knight, bishop, rook, queen, king), the two
colours of a design in the same class (colour folded: what is learnt is the piece type),
each piece a 64x64 grayscale PNG, black on white. Deterministic: no randomness here; the
bytes depend only on the package files, Pillow and the FreeType it bundles.

A design is one of pychess's chess fonts (`usr/share/pychess/pieces/ttf/*.ttf`: a letter
per piece and colour, drawn as text) or one of scid's piece sets (a folder of strips, one
PNG or GIF per size, each holding the 12 pieces side by side in scid's order: white pawn,
knight, bishop, rook, queen, king, then black; the largest strip is cut). Each piece is
cropped to its ink, scaled so its longer side spans FILL of the image and centred on its
bounding box (so a pawn is as large as a king: the shape tells the piece). Left out: a
design any of whose 12 pieces draws nothing black on white (scid's Blindfold, blank;
Bauhaus, whose white pieces are white shapes without an outline), and a design that
redraws an earlier one (NEAR_COPY)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING

from _glyphs import drawn, first_of_each, fitted

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

PIECES = ("pawn", "knight", "bishop", "rook", "queen", "king")
COLOURS = ("white", "black")
SIZE = 64  # the image: SIZE x SIZE pixels, grayscale
FILL = 0.875  # the piece's longer side spans FILL * SIZE pixels
RENDER_PX = 256  # fonts are drawn at this size first, then reduced (area-averaged)
FONT_DIR = "usr/share/pychess/pieces/ttf"
STRIP_DIR = "usr/share/scid/img/pieces"
# The letters of the pieces, white then black, in PIECES order: the chess fonts' two
# layouts (Alpha-style fonts put the knight on h/j and the bishop on b/n).
LETTERS = ("pnbrqk", "omvtwl")
ALPHA_LETTERS = ("phbrqk", "ojntwl")
ALPHA_FONTS = ("alpha", "berlin", "cheq")
# A design whose 12 pieces differ from an already kept design's by less than this many
# grey levels (mean absolute difference, of 255) redraws it: left out. Measured: pychess's
# Cheq against Usual 2.1 (one font under two names), scid's Leipzig and Merida strips
# against pychess's fonts 6.9 and 8.0 (scid made them from those fonts), scid's Merida1
# against Merida 18.2; the next closest pair 28.4 (Merida, Cburnett: two designs).
NEAR_COPY = 20.0
_STRIP = re.compile(r"_(\d+)\.(png|gif)$", re.IGNORECASE)


def _fit(gray: Image.Image) -> Image.Image | None:
    """The ink of a black-on-white image, scaled and centred in SIZE x SIZE; None if blank."""
    return fitted(gray, SIZE, FILL)


def font_pieces(path: Path) -> list[Image.Image | None]:
    """The 12 pieces of a chess font (white then black, PIECES order)."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    letters = ALPHA_LETTERS if path.stem.lower() in ALPHA_FONTS else LETTERS
    return [_fit(drawn(font, letter)) for letter in "".join(letters)]


def strip_pieces(folder: Path) -> list[Image.Image | None] | None:
    """The 12 pieces of scid's largest strip in FOLDER, composited on white; None when
    the folder holds no strip."""
    from PIL import Image

    strips = []
    for path in folder.iterdir():
        size = _STRIP.search(path.name)
        if size is not None and path.is_file() and not path.is_symlink():
            strips.append((int(size[1]), path.name, path))
    if not strips:
        return None
    largest = max(strips)[2]
    with Image.open(largest) as image:
        strip = image.convert("RGBA")
    white = Image.new("RGBA", strip.size, (255, 255, 255, 255))
    white.alpha_composite(strip)
    gray, side = white.convert("L"), strip.height
    return [_fit(gray.crop((k * side, 0, (k + 1) * side, side))) for k in range(12)]


def designs(pychess_root: Path, scid_root: Path) -> dict[str, list[Image.Image]]:
    """Every design whose 12 pieces all draw something: pychess's fonts (sorted), then
    scid's sets (sorted), named "pychess-merida", "scid-good-companion"."""
    drawn: dict[str, list[Image.Image | None] | None] = {}
    for path in sorted((pychess_root / FONT_DIR).glob("*.ttf")):
        drawn[f"pychess-{path.stem.lower()}"] = font_pieces(path)
    for folder in sorted(d for d in (scid_root / STRIP_DIR).iterdir() if d.is_dir()):
        drawn[f"scid-{folder.name.lower().replace(' ', '-')}"] = strip_pieces(folder)
    found: dict[str, list[Image.Image]] = {}
    for name, pieces in drawn.items():
        complete = [p for p in pieces or () if p is not None]
        if len(complete) == 12:
            found[name] = complete
    return found


def distinct(found: dict[str, list[Image.Image]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The designs (in the order given) that redraw no earlier kept one, and (left out,
    the kept design it redraws) for the others."""
    import numpy as np

    pixels = {
        name: np.stack([np.asarray(p, dtype=np.float32) for p in pieces])
        for name, pieces in found.items()
    }
    return first_of_each(pixels, NEAR_COPY)


def collect(pychess_root: Path, scid_root: Path) -> dict[str, dict[str, bytes]]:
    """The pieces of the distinct designs by class: {"knight": {"scid-alpha-black.png":
    PNG bytes}}."""
    found = designs(pychess_root, scid_root)
    names, _copies = distinct(found)
    by_class: dict[str, dict[str, bytes]] = {piece: {} for piece in PIECES}
    for name in names:
        for k, image in enumerate(found[name]):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            file = f"{name}-{COLOURS[k // 6]}.png"
            by_class[PIECES[k % 6]][file] = buffer.getvalue()
    return by_class
