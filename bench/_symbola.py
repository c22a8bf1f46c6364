"""The pictures of the `symbola` set (bench/datasets.py): the emoji of Symbola (George
Douros's monochrome outline font, Debian's `fonts-symbola`), one class per *group* of
Unicode's emoji-test.txt (Smileys & Emotion, Animals & Nature, ...), each drawn black on
white as a 64x64 grayscale PNG the way bench/_glyphs.py draws a letter. Deterministic:
no randomness here (the seeded sample per class is bench/_capped.py's); the bytes depend
only on the font file, the emoji-test.txt file and Pillow (with the FreeType it bundles).

The emoji are bench/_emoji.py's (one code point, fully qualified, no Component group)
that Symbola's cmap maps; each is drawn at RENDER_PX with Pillow's BASIC layout (Symbola
is plain TrueType outlines, so no shaping is needed), cropped to its ink, scaled so its
longer side spans FILL of the image and centred on its bounding box."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from _capped import near_copies
from _emoji import class_name, in_font, qualifying_groups
from _glyphs import drawn, fitted

FONT = "usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf"
EMOJI_TEST = "usr/share/unicode/emoji/emoji-test.txt"
SIZE = 64  # the image: SIZE x SIZE pixels, grayscale
FILL = 0.8  # the emoji's longer side spans FILL * SIZE pixels (bench/_glyphs.py's)
RENDER_PX = 256  # drawn at this font size first, then reduced (area-averaged)
# Two emoji of different groups closer than NEAR_COPY grey levels (mean absolute
# difference of the 64x64 images, the closer of the emoji and its mirror image) are one
# picture under two labels: left out of both. Measured over the 1,140 emoji Symbola
# draws: black heart (Smileys) against heart suit (Activities) 0.4, new moon (Travel)
# against black circle and record button (Symbols) 1.5, sparkling heart (Smileys; the
# heart suit with sparkles cut out) against heart suit 6.8; the next closest pair of
# different groups 14.1 (black nib, Objects; left arrow, Symbols: two shapes). Within a
# group near copies are kept (the clock faces, 2.1-3.5 from the closest; mirrored arrows).
NEAR_COPY = 10.0


def group_class(group: str) -> str:
    """A folder name for a group: "Smileys & Emotion" -> "smileys-and-emotion"."""
    return class_name(group).lower()


def render(font: Any, code: int) -> bytes | None:
    """One emoji of a Pillow FreeType font, black on white, as a SIZE x SIZE PNG; None
    when it draws no ink."""
    out = fitted(drawn(font, chr(code)), SIZE, FILL)
    if out is None:
        return None
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def drawn_emoji(font_root: Path, text_root: Path) -> dict[str, dict[str, bytes]]:
    """Every qualifying emoji Symbola maps and draws, by class: {"animals-and-nature":
    {"1f40e.png": PNG bytes}} (code point, lower-case hex, 5 digits); no leave-outs."""
    from PIL import ImageFont

    path = font_root / FONT
    mapped = in_font(path)
    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    found: dict[str, dict[str, bytes]] = {}
    for group, _subgroup, code in qualifying_groups(text_root / EMOJI_TEST):
        if code in mapped and (image := render(font, code)) is not None:
            found.setdefault(group_class(group), {})[f"{code:05x}.png"] = image
    return found


def collect(font_root: Path, text_root: Path) -> dict[str, dict[str, bytes]]:
    """:func:`drawn_emoji` less the near copies across groups (NEAR_COPY), both left out."""
    found = drawn_emoji(font_root, text_root)
    for label, file in near_copies(found, SIZE, NEAR_COPY):
        del found[label][file]
    return found
