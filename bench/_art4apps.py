"""The pictures of the `art4apps` set (bench/datasets.py): the Art4Apps drawings that
Debian's `pysiogame` ships (cartoon drawings of words for children's apps, by Smart4Kids,
CC BY-SA per pysiogame's CREDITS.txt), one class per Art4Apps category folder but
`actions` (SKIPPED says why), each drawing a 128x128 RGB PNG. Deterministic: no
randomness here (the seeded sample per class is bench/datasets.py's); the bytes depend
only on the JPEG files and Pillow (with the libjpeg it bundles).

Not gcompris-qt-data (the issue's first idea): its vocabulary images are not in Debian's
package (gcompris downloads them at run time; `lang.rcc` holds 116 sample words, 44 of
them animals), and no other folder of its Qt resource files has 6 categories of 30
pictures of things. Not tuxpaint-stamps, nor pysiogame's other image folders: much of
them is openclipart, zoo's development set."""

from __future__ import annotations

import io
from pathlib import Path

from _capped import near_copies

BASE = "usr/share/games/pysiogame/res/images/art4apps"
SIZE = 128  # the image: SIZE x SIZE pixels, RGB (the drawings are 200x200 JPEGs)
SUFFIXES = (".jpg", ".jpeg", ".png")
# Art4Apps's categories are of things (nouns) but one: `actions` (verbs, drawn as people
# doing something) is no category of things, and it redraws other categories' pictures:
# 4 of its drawings are byte-identical to a job's (bake = jobs/cook), 2 are a body
# part's without its arrow (stare = body/eye), 1 a job's mirrored (catch =
# jobs/fisherman). Left out whole.
SKIPPED = ("actions",)
# Two drawings of different classes closer than NEAR_COPY grey levels (mean absolute
# difference of THUMB x THUMB grayscale thumbnails, the closer of the drawing and its
# mirror image) are one drawing under two labels: left out of both. Measured (actions
# left out): sport/sailing against transport/sail 4.7 and transport/ship 9.4 (one boat,
# recoloured); the next closest pair of different classes 15.1 (food/water_bottle,
# people/girl: two drawings). Within a class, near copies are kept (animals/lama and
# llama, 9.0 apart: one drawing recoloured).
THUMB, NEAR_COPY = 32, 10.0


def render(path: Path) -> bytes:
    """One drawing as PNG bytes: reduced (Lanczos, aspect kept) to fit SIZE x SIZE and
    centred on white (the drawings are square: a plain reduction)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        picture = image.convert("RGB")
    out = ImageOps.pad(picture, (SIZE, SIZE), method=Image.Resampling.LANCZOS, color="white")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def collect(root: Path) -> dict[str, dict[str, bytes]]:
    """Every drawing under each category folder of the unpacked package, by class (the
    folder's name): {category: {"cat.png": PNG bytes}} (the file's stem, ".png");
    SKIPPED, links and the near copies across classes (NEAR_COPY, bench/_capped.py) left
    out, folders and files sorted."""
    found: dict[str, dict[str, bytes]] = {}
    folders = (d for d in (root / BASE).iterdir() if d.is_dir() and d.name not in SKIPPED)
    for category in sorted(folders):
        files = (p for p in category.iterdir() if p.suffix.lower() in SUFFIXES)
        for path in sorted(p for p in files if p.is_file() and not p.is_symlink()):
            found.setdefault(category.name, {})[f"{path.stem}.png"] = render(path)
    for label, file in near_copies(found, THUMB, NEAR_COPY):
        del found[label][file]
    return found
