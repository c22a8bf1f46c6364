"""The pictures of the `emoji` set (bench/datasets.py): which emoji qualify, their class,
and how one becomes a 72x72 RGBA PNG. Deterministic: no randomness here (the seeded
sample per class is bench/datasets.py's); the bytes depend only on the font file, the
emoji-test.txt file and Pillow (with the FreeType it bundles)."""

from __future__ import annotations

import io
from pathlib import Path

SIZE = 72  # the image: SIZE x SIZE pixels, RGBA, transparent background
# Noto Color Emoji holds one bitmap strike (CBDT), drawn at this size only.
STRIKE_PX = 109
SKIPPED_GROUPS = ("Component",)  # skin-tone and hair swatches: not pictures of things
_VS16 = 0xFE0F  # variation selector: presentation, not a different emoji


def qualifying_groups(emoji_test: Path) -> list[tuple[str, str, int]]:
    """(group, subgroup, code point) of every fully-qualified emoji of emoji-test.txt that
    is ONE code point once U+FE0F is dropped: no skin-tone modifier, no ZWJ sequence, no
    flag (two regional indicators), no keycap; the Component group left out. In file
    order (the `symbola` set's classes are the groups, bench/_symbola.py)."""
    found: list[tuple[str, str, int]] = []
    group = subgroup = ""
    for line in emoji_test.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            points, rest = line.split(";", 1)
            status = rest.split("#", 1)[0].strip()
            codes = [int(c, 16) for c in points.split() if int(c, 16) != _VS16]
            if status == "fully-qualified" and len(codes) == 1 and group not in SKIPPED_GROUPS:
                found.append((group, subgroup, codes[0]))
    return found


def qualifying(emoji_test: Path) -> list[tuple[str, int]]:
    """(subgroup, code point) of :func:`qualifying_groups`'s emoji, in file order."""
    return [(subgroup, code) for _, subgroup, code in qualifying_groups(emoji_test)]


def class_name(subgroup: str) -> str:
    """A folder name for a subgroup: "sky & weather" -> "sky-and-weather"."""
    return subgroup.replace(" & ", "-and-").replace(" ", "-")


def in_font(font: Path) -> set[int]:
    from fontTools.ttLib import TTFont

    return set(TTFont(str(font)).getBestCmap())


def render(font: Path, code: int) -> bytes:
    """One emoji, drawn from the font's colour bitmap, cropped to its ink (alpha > 0),
    scaled (Lanczos) so its longer side spans SIZE, centred on a transparent square."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(str(font), STRIKE_PX)
    canvas = Image.new("RGBA", (2 * STRIKE_PX, 2 * STRIKE_PX), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), chr(code), font=face, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        raise ValueError(f"U+{code:04X} draws nothing")
    ink = canvas.crop(box)
    scale = SIZE / max(ink.size)
    width, height = (max(1, round(side * scale)) for side in ink.size)
    ink = ink.resize((width, height), Image.Resampling.LANCZOS)
    out = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    out.paste(ink, ((SIZE - width) // 2, (SIZE - height) // 2))
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def collect(font_root: Path, text_root: Path) -> dict[str, dict[str, bytes]]:
    """Every qualifying emoji the font draws, by class: {class: {"1f436.png": PNG bytes}}
    (code point, lower-case hex, 5 digits). An emoji missing from the font is left out."""
    font = font_root / "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
    drawable = in_font(font)
    found: dict[str, dict[str, bytes]] = {}
    for subgroup, code in qualifying(text_root / "usr/share/unicode/emoji/emoji-test.txt"):
        if code in drawable:
            found.setdefault(class_name(subgroup), {})[f"{code:05x}.png"] = render(font, code)
    return found
