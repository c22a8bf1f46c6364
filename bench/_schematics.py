"""The drawings of the `schematics` set (bench/datasets.py): QElectroTech's element files
(.elmt, XML) drawn as 64x64 grayscale PNGs, black on white. Deterministic: no randomness
here (the seeded sample per class is bench/datasets.py's); the bytes depend only on the
.elmt file and Pillow (static text is drawn in Pillow's own default font).

What is drawn: the element's lines, polygons, rectangles, circles, ellipses, arcs and
static texts, with QElectroTech's line weights and black/white fillings. Not drawn: the
terminals, the label fields (`input`, `dynamic_text`: placeholders the user fills in),
dash patterns (drawn solid) and hatched fillings (drawn unfilled). The element's own box
(width, height, hotspot) is scaled to span FILL of the image, centred."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

SIZE = 64  # the image: SIZE x SIZE pixels, grayscale
RENDER = 4 * SIZE  # drawn at this size first, then reduced (area-averaged)
FILL = 0.9  # the element's box spans FILL * SIZE pixels along its longer side
# Line widths in pixels of the final image, by QElectroTech's line-weight.
WEIGHTS = {"none": 0.0, "thin": 0.5, "normal": 1.0, "hight": 2.0, "eleve": 3.0}
COLOURS = {"black": 0, "white": 255}


def _style(node: ET.Element) -> dict[str, str]:
    pairs = (item.split(":", 1) for item in node.get("style", "").split(";") if ":" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def _num(node: ET.Element, name: str, default: float = 0.0) -> float:
    value = node.get(name)
    return float(value) if value not in (None, "") else default


def render(path: Path) -> bytes | None:
    """The element as PNG bytes; None when it draws nothing (no shape, no text)."""
    from PIL import Image, ImageDraw, ImageFont

    root = ET.parse(path).getroot()
    description = root.find("description")
    width, height = _num(root, "width", 1.0), _num(root, "height", 1.0)
    scale = FILL * RENDER / max(width, height, 1.0)
    left = _num(root, "hotspot_x") + (RENDER / scale - width) / 2
    top = _num(root, "hotspot_y") + (RENDER / scale - height) / 2

    def at(x: float, y: float) -> tuple[float, float]:
        return ((x + left) * scale, (y + top) * scale)

    image = Image.new("L", (RENDER, RENDER), 255)
    draw = ImageDraw.Draw(image)
    drawn = False
    for node in description if description is not None else ():
        style = _style(node)
        ink = COLOURS.get(style.get("color", "black"), 0)
        fill = COLOURS.get(style.get("filling", "none"))
        line = round(WEIGHTS.get(style.get("line-weight", "normal"), 1.0) * RENDER / SIZE)
        outline = ink if line > 0 else None
        if node.tag == "line":
            points = [
                at(_num(node, "x1"), _num(node, "y1")),
                at(_num(node, "x2"), _num(node, "y2")),
            ]
            if line > 0:
                draw.line(points, fill=ink, width=line)
        elif node.tag == "polygon":
            points = []
            while node.get(f"x{len(points) + 1}") is not None:
                n = len(points) + 1
                points.append(at(_num(node, f"x{n}"), _num(node, f"y{n}")))
            if len(points) < 2:
                continue
            closed = node.get("closed", "true") != "false"
            if closed and len(points) > 2:
                draw.polygon(points, fill=fill, outline=outline, width=max(line, 1))
            elif line > 0:
                draw.line(points, fill=ink, width=line, joint="curve")
        elif node.tag in ("rect", "ellipse", "circle", "arc"):
            x, y = _num(node, "x"), _num(node, "y")
            if node.tag == "circle":
                w = h = _num(node, "diameter")
            else:
                w, h = _num(node, "width"), _num(node, "height")
            (x0, y0), (x1, y1) = at(x, y), at(x + w, y + h)
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            if node.tag == "rect":
                draw.rectangle(box, fill=fill, outline=outline, width=line)
            elif node.tag in ("ellipse", "circle"):
                draw.ellipse(box, fill=fill, outline=outline, width=line)
            elif line > 0:  # Qt: degrees counter-clockwise from 3 o'clock; Pillow: clockwise
                start, span = _num(node, "start"), _num(node, "angle")
                first, last = sorted((-start, -(start + span)))
                draw.arc(box, first, last, fill=ink, width=line)
        elif node.tag == "text" and node.get("text", "").strip():
            font = ImageFont.load_default(size=max(1.0, _num(node, "size", 9.0) * scale))
            xy = at(_num(node, "x"), _num(node, "y"))
            draw.text(xy, node.get("text", ""), fill=ink, font=font, anchor="ls")
        else:
            continue  # terminals, label fields
        drawn = True
    if not drawn:
        return None
    out = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def collect(base: Path) -> dict[str, dict[str, bytes]]:
    """Every element under each part folder of BASE that draws something, by class (the
    part folder's name): {part: {file name: PNG bytes}}; the file name is the element's
    path under its part, "/" joined as "_", ".png" for ".elmt"; links left out."""
    found: dict[str, dict[str, bytes]] = {}
    for part in sorted(d for d in base.iterdir() if d.is_dir()):
        for path in sorted(p for p in part.rglob("*.elmt") if not p.is_symlink()):
            image = render(path)
            if image is not None:
                file = "_".join(path.relative_to(part).with_suffix(".png").parts)
                found.setdefault(part.name, {})[file] = image
    return found
