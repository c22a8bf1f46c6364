"""The evaluation sets of docs/protocol.md, laid out as image folders from Debian packages.

    python bench/datasets.py [DEST] [--sets icons fashion gnome-icons glyphs emoji schematics
                                         art4apps chess symbola digits]

Nothing in zoo was tuned on these images (docs/protocol.md); zoo's own test images
(openclipart, `python -m zoo.testdata where`) are the development set. The packages are
fetched with `apt-get download` and unpacked with `dpkg -x` into the cache folder
(`$ZOO_BENCH_DATA`, default `~/.cache/zoo-bench`), once; laying a set out again gives the
same files (idempotent: a finished layout is kept and reported).

- `icons`: Debian's `oxygen-icon-theme`, the 128x128 PNGs of the theme's category folders
  (one size only, so no icon's resized copies can cross a split). Symbolic links (aliases
  of another icon) and icon names filed under two categories are left out; byte-identical
  files are kept once (zoo's data check would drop them anyway). Class = category folder.
- `fashion`: Debian's `dataset-fashion-mnist` (Zalando, MIT/Expat), a seeded,
  class-stratified subsample of the 60,000 training images of the idx files, written as
  28x28 grayscale PNGs, one folder per class.
- `gnome-icons`: Debian's `gnome-icon-theme`, the 48x48 PNGs (GNOME_SIZE says why that
  size), one class per category folder, by the rules of `icons`: symbolic links, icon
  names filed under two categories and byte-identical copies left out, and every
  category keeping fewer than GNOME_MIN_ICONS icons (30 in `icons`: GNOME_MIN_ICONS
  says why not here). No category is subsampled: the set stays under ~450 images.
- `glyphs`: far from ImageNet, in the spirit of notMNIST: the letters A-J (10 classes)
  drawn from the fonts of GLYPH_PACKAGES, one 64x64 grayscale PNG per (font file,
  letter), black on white, the glyph scaled to span 80% of the box and centred on its
  bounding box (bench/_glyphs.py; no randomness). Only fonts whose cmap maps A-J to
  the letters, not symbol or dingbat fonts, and no near copy of another font's
  outlines; of those, a seeded sample of GLYPH_FONTS font files (sorted first).
  Byte-identical images (the same outline in two files) are kept once. The font is the
  unit that repeats across classes: a font's A may be in training and its B in test
  (notMNIST's set-up); what is learnt is the letter, not the font.
- `emoji` (bench/_emoji.py): Noto Color Emoji's single emoji (no skin tone, ZWJ sequence,
  flag or keycap), one class per subgroup of Unicode's emoji-test.txt, 72x72 RGBA.
- `schematics` (bench/_schematics.py): QElectroTech's EN 60617 symbols, one class per
  part of the standard, drawn as 64x64 grayscale line drawings.
- `art4apps` (bench/_art4apps.py): the Art4Apps drawings (Smart4Kids, CC BY-SA) that
  Debian's `pysiogame` ships, one class per Art4Apps category folder but `actions`,
  128x128 RGB; a drawing that is a near copy of one in another class is left out of both.
- `chess` (bench/_chess.py): the chess pieces of pychess's chess fonts and scid's piece
  sets, one class per piece type (both colours in it), 64x64 grayscale; a design that
  redraws an earlier one, or draws a piece as nothing, is left out.
- `symbola` (bench/_symbola.py): Symbola's monochrome emoji (the emoji of `emoji`, those
  the font maps), one class per group of emoji-test.txt, 64x64 grayscale like `glyphs`;
  an emoji that is a near copy of one in another group is left out of both.
  These five: classes of at least *_MIN images, no image under two classes, byte-identical
  copies kept once, each class capped at *_PER_CLASS by a seeded sample (bench/_capped.py).
- `digits`: the digits 0-9 drawn from the fonts of DIGIT_PACKAGES as `glyphs` draws its
  letters (bench/_glyphs.py), no near copy of another font nor of a `glyphs` font's
  digits; a seeded sample of DIGIT_FONTS font files, one folder per digit (zero ... nine).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _icons import keep_icons
from _layout import Layout, cache_dir, fetch_package, finished, publish, staging

ICONS_PACKAGE = "oxygen-icon-theme"
FASHION_PACKAGE = "dataset-fashion-mnist"
ICON_SIZE = "128x128"
# Categories of oxygen's 128x128 folder with at least 30 distinct icons (Debian 12:
# emotes has 12, emblems 2: left out).
ICON_CATEGORIES = ("actions", "apps", "categories", "devices", "mimetypes", "places", "status")
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle-boot")  # fmt: skip
FASHION_PER_CLASS = 80  # docs/protocol.md: sized for the bench's wall-time budget
FASHION_SEED = 0
GNOME_PACKAGE = "gnome-icon-theme"
# The size with (nearly) the most icons: 48x48 holds 370 PNG files (not links); 16x16
# and 22x22 hold 373 (4 more in actions and status, 1 fewer in emblems), 24x24 and
# 32x32 369, 256x256 222. 48x48 is taken over 16x16: the same icons but 3, drawn at 3x
# the resolution (zoo upsamples them to 224-260 px).
GNOME_SIZE = "48x48"
# `icons` left out categories of fewer than 30 icons; at 30 GNOME would keep 4 classes
# (actions 108, apps 30, devices 38, status 83), below the protocol's 6. Every other
# category holds 18-24 icons after the leave-outs, animations 1 (a spinner's frames):
# any minimum from 2 to 18 keeps the same 9 classes; 15 leaves each class at least 7
# training images under the protocol's split (0.2 validation, 0.3 test).
GNOME_MIN_ICONS = 15
# Fonts (Debian 12), chosen so that no two files redraw the same outlines: not
# fonts-texgyre nor fonts-freefont-ttf (both redraw URW's base 35: their letters differ
# from fonts-urw-base35's by 0.05-4.6 grey levels), not fonts-noto-core (not needed).
GLYPH_PACKAGES = (
    "fonts-dejavu-core",
    "fonts-dejavu-extra",
    "fonts-liberation2",
    "fonts-urw-base35",
    "fonts-crosextra-carlito",
    "fonts-crosextra-caladea",
    "fonts-cantarell",
)
# Of the 82 font files, 80 qualify (bench/_glyphs.py: D050000L, dingbats, and
# StandardSymbolsPS, Greek, do not) and 79 are distinct (DejaVu Math TeX Gyre's letters
# are DejaVu Serif's); a seeded sample of 45 (450 images at most): the brief's 40-45
# fonts, sized like the other sets (the bench's wall time grows with the images).
GLYPH_FONTS = 45
GLYPH_SEED = 0
EMOJI_PACKAGES = ("fonts-noto-color-emoji", "unicode-data")
EMOJI_MIN, EMOJI_PER_CLASS, EMOJI_SEED = 30, 50, 0
SCHEMATIC_PACKAGE = "qelectrotech-data"
SCHEMATIC_DIR = "usr/share/qelectrotech/elements/10_electric/91_en_60617"
SCHEMATIC_MIN, SCHEMATIC_PER_CLASS, SCHEMATIC_SEED = 30, 50, 0
ART4APPS_PACKAGE = "pysiogame"  # Debian 12: 4.20.01-1
ART4APPS_MIN, ART4APPS_PER_CLASS, ART4APPS_SEED = 30, 50, 0
CHESS_PACKAGES = ("pychess", "scid-data")  # Debian 12: 1.0.3-1, 1:4.7.4+dfsg1-2
CHESS_MIN, CHESS_PER_CLASS, CHESS_SEED = 30, 50, 0
SYMBOLA_PACKAGES = ("fonts-symbola", "unicode-data")  # Debian 12: 2.60-1.1 (Symbola 9.17)
# Distinct emoji per group after the leave-outs: smileys-and-emotion 136, people-and-body
# 124, animals-and-nature 111, food-and-drink 104, travel-and-places 199, activities 66,
# objects 197, symbols 190, flags 5. Any minimum from 67 to 104 keeps the same 7 groups,
# each of at least 100 images (activities would join at 66, as the only class under 100);
# 125 per class, so at most 875 images.
SYMBOLA_MIN, SYMBOLA_PER_CLASS, SYMBOLA_SEED = 100, 125, 0
# Fonts for `digits` (Debian 12), none in GLYPH_PACKAGES. Left out whole as redrawings
# of other fonts' outlines, measured on the digits (mean absolute difference to the
# closest glyph font's, in grey levels; the 4.0 test of bench/_glyphs.py alone would keep
# some files of most): fonts-texgyre and fonts-freefont-ttf (URW's: from 0.07 and 1.6),
# fonts-liberation and fonts-croscore (Liberation's: 0.2, 0.9), fonts-stix (Nimbus
# Roman's: 0.6), fonts-adf-verana and fonts-hack (DejaVu's: 0.5, 1.8), fonts-lato
# (Carlito redraws Lato: 4.5), fonts-adf-switzera (DejaVu Sans Mono's digits: 5.7); and
# of other candidates', fonts-karmilla (Karla's: 1.6), fonts-elstob (Junicode's: 4.8),
# fonts-averia-sans-gwf and -serif-gwf (averages of font sets overlapping Averia's: 3.9,
# 6.0 from its digits). Not fonts-lmodern: 73 files of one design (Computer Modern) in
# optical sizes, 56 passing the 4.0 test, a fifth of all. Among these packages and the
# glyph fonts, the closest digits of two packages are 5.7 apart (Roboto Thin, Roboto
# Slab Thin).
DIGIT_PACKAGES = (
    "fonts-adf-accanthis", "fonts-adf-baskervald", "fonts-adf-gillius", "fonts-anonymous-pro",
    "fonts-bebas-neue", "fonts-blankenburg", "fonts-bwht", "fonts-cabin", "fonts-cardo",
    "fonts-comfortaa", "fonts-comic-neue", "fonts-courier-prime", "fonts-dkg-handwriting",
    "fonts-dosis", "fonts-dustin", "fonts-ebgaramond", "fonts-fanwood", "fonts-firacode",
    "fonts-go", "fonts-humor-sans", "fonts-inconsolata", "fonts-jetbrains-mono",
    "fonts-league-spartan", "fonts-linuxlibertine", "fonts-lobstertwo", "fonts-noto-mono",
    "fonts-ocr-a", "fonts-ocr-b", "fonts-oldstandard", "fonts-open-sans", "fonts-paratype",
    "fonts-quicksand", "fonts-roboto-slab", "fonts-roboto-unhinted", "fonts-sil-andika",
    "fonts-sil-charis", "fonts-sil-gentium", "fonts-vollkorn", "fonts-yanone-kaffeesatz",
)  # fmt: skip
# Folders named for the digits in words (the glyph names): a folder "3" could be read
# as a number or taken for a class index by a tool reading zoo's output; a word cannot.
DIGIT_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                 "nine")  # fmt: skip
# Of the DIGIT_PACKAGES' 287 font files, 280 qualify (7 of fonts-dustin's do not map all
# ten digits, or map them scrambled), all draw ink, and 264 are distinct (16 near copies
# within their package: Anonymous Pro Minus, Go Smallcaps, adjacent weights); a seeded
# sample of 100 (1,000 images, 100 per class, no two byte-identical).
DIGIT_FONTS, DIGIT_SEED = 100, 0


def layout_icons(dest: Path, categories: tuple[str, ...] = ICON_CATEGORIES) -> Layout:
    """The oxygen 128x128 icons as one folder per category (copies, not links)."""
    root, deb = fetch_package(ICONS_PACKAGE)
    source = f"{deb}, usr/share/icons/oxygen/base/{ICON_SIZE}"
    if (done := finished(dest)) is not None:
        return Layout("icons", dest, done, source)
    base = root / "usr" / "share" / "icons" / "oxygen" / "base" / ICON_SIZE
    tmp = staging(dest)
    counts = keep_icons(base, categories, tmp)
    publish(tmp, dest, source)
    return Layout("icons", dest, counts, source)


def layout_gnome_icons(dest: Path) -> Layout:
    """GNOME's 48x48 icons as one folder per category, by the rules of `icons`; the
    categories are every folder of that size keeping at least GNOME_MIN_ICONS."""
    root, deb = fetch_package(GNOME_PACKAGE)
    base = root / "usr" / "share" / "icons" / "gnome" / GNOME_SIZE
    source = f"{deb}, usr/share/icons/gnome/{GNOME_SIZE}, categories of >= {GNOME_MIN_ICONS}"
    if (done := finished(dest)) is not None:
        return Layout("gnome-icons", dest, done, source)
    categories = tuple(sorted(d.name for d in base.iterdir() if d.is_dir()))
    tmp = staging(dest)
    counts = keep_icons(base, categories, tmp, GNOME_MIN_ICONS)
    publish(tmp, dest, source)
    return Layout("gnome-icons", dest, counts, source)


def layout_fashion(
    dest: Path, per_class: int = FASHION_PER_CLASS, seed: int = FASHION_SEED
) -> Layout:
    """A seeded, class-stratified subsample of Fashion-MNIST's training idx files as PNGs."""
    from _fashion import fashion_subsample

    root, deb = fetch_package(FASHION_PACKAGE)
    source = f"{deb}, train-*-idx*-ubyte.gz, {per_class} per class, seed {seed}"
    if (done := finished(dest)) is not None:
        return Layout("fashion", dest, done, source)
    folder = root / "usr" / "share" / "datasets" / "fashion-mnist"
    tmp = staging(dest)
    counts = fashion_subsample(folder, tmp, FASHION_CLASSES, per_class, seed)
    publish(tmp, dest, source)
    return Layout("fashion", dest, counts, source)


def layout_glyphs(dest: Path) -> Layout:
    """The letters A-J of a seeded sample of GLYPH_FONTS fonts, one 64x64 PNG per
    (font, letter), under A/ ... J/ (file name: the font file's)."""
    import _glyphs

    roots = {package: fetch_package(package) for package in GLYPH_PACKAGES}
    debs = ", ".join(deb for _, deb in roots.values())
    source = f"{debs}; {GLYPH_FONTS} fonts, seed {GLYPH_SEED}"
    if (done := finished(dest)) is not None:
        return Layout("glyphs", dest, done, source)
    rendered = _glyphs.drawn_fonts((root for root, _ in roots.values()), _glyphs.LETTERS)
    classes = {letter: letter for letter in _glyphs.LETTERS}
    tmp = staging(dest)
    counts = _glyphs.lay_out(tmp, rendered, classes, GLYPH_FONTS, GLYPH_SEED)
    publish(tmp, dest, source)
    return Layout("glyphs", dest, counts, source)


def layout_digits(dest: Path) -> Layout:
    """The digits 0-9 of a seeded sample of DIGIT_FONTS fonts, one 64x64 PNG per (font,
    digit), under zero/ ... nine/ (file name: the font file's); no font whose digits
    are a near copy of a GLYPH_PACKAGES font's."""
    import _glyphs

    roots = {package: fetch_package(package) for package in DIGIT_PACKAGES}
    debs = ", ".join(deb for _, deb in roots.values())
    source = f"{debs}; {DIGIT_FONTS} fonts, seed {DIGIT_SEED}"
    if (done := finished(dest)) is not None:
        return Layout("digits", dest, done, source)
    glyph_fonts = (fetch_package(package)[0] for package in GLYPH_PACKAGES)
    reference = _glyphs.drawn_fonts(glyph_fonts, _glyphs.DIGITS)
    rendered = _glyphs.drawn_fonts((root for root, _ in roots.values()), _glyphs.DIGITS)
    classes = dict(zip(_glyphs.DIGITS, DIGIT_CLASSES, strict=True))
    tmp = staging(dest)
    counts = _glyphs.lay_out(tmp, rendered, classes, DIGIT_FONTS, DIGIT_SEED, reference)
    publish(tmp, dest, source)
    return Layout("digits", dest, counts, source)


def _capped_layout(
    name: str, dest: Path, source: str, collect: Callable[[], Any], rule: tuple[int, int, int]
) -> Layout:
    """A set of bench/_capped.py's kind: classes of at least MIN images, each capped at
    PER_CLASS by a seeded sample (``rule`` = MIN, PER_CLASS, SEED); a finished layout is
    kept and reported."""
    from _capped import capped, write

    if (done := finished(dest)) is not None:
        return Layout(name, dest, done, source)
    found = collect()
    tmp = staging(dest)
    counts = write(tmp, capped(found, *rule))
    publish(tmp, dest, source)
    return Layout(name, dest, counts, source)


def layout_emoji(dest: Path) -> Layout:
    """Noto Color Emoji's single emoji by emoji-test.txt subgroup (bench/_emoji.py)."""
    import _emoji

    (font_root, font_deb), (text_root, text_deb) = map(fetch_package, EMOJI_PACKAGES)
    rule = f"subgroups of >= {EMOJI_MIN}, {EMOJI_PER_CLASS} per class, seed {EMOJI_SEED}"
    return _capped_layout(
        "emoji",
        dest,
        f"{font_deb}, {text_deb}; {rule}",
        lambda: _emoji.collect(font_root, text_root),
        (EMOJI_MIN, EMOJI_PER_CLASS, EMOJI_SEED),
    )


def layout_schematics(dest: Path) -> Layout:
    """QElectroTech's EN 60617 symbols by part of the standard (bench/_schematics.py)."""
    import _schematics

    root, deb = fetch_package(SCHEMATIC_PACKAGE)
    rule = f"parts of >= {SCHEMATIC_MIN}, {SCHEMATIC_PER_CLASS} per class, seed {SCHEMATIC_SEED}"
    return _capped_layout(
        "schematics",
        dest,
        f"{deb}, {SCHEMATIC_DIR}; {rule}",
        lambda: _schematics.collect(root / SCHEMATIC_DIR),
        (SCHEMATIC_MIN, SCHEMATIC_PER_CLASS, SCHEMATIC_SEED),
    )


def layout_art4apps(dest: Path) -> Layout:
    """pysiogame's Art4Apps drawings by category (bench/_art4apps.py)."""
    import _art4apps

    root, deb = fetch_package(ART4APPS_PACKAGE)
    rule = f"categories of >= {ART4APPS_MIN}, {ART4APPS_PER_CLASS} per class, seed {ART4APPS_SEED}"
    return _capped_layout(
        "art4apps",
        dest,
        f"{deb}, {_art4apps.BASE} but {', '.join(_art4apps.SKIPPED)}; {rule}",
        lambda: _art4apps.collect(root),
        (ART4APPS_MIN, ART4APPS_PER_CLASS, ART4APPS_SEED),
    )


def layout_chess(dest: Path) -> Layout:
    """pychess's and scid's chess pieces by piece type (bench/_chess.py)."""
    import _chess

    (pychess_root, pychess_deb), (scid_root, scid_deb) = map(fetch_package, CHESS_PACKAGES)
    rule = f"piece types of >= {CHESS_MIN}, {CHESS_PER_CLASS} per class, seed {CHESS_SEED}"
    return _capped_layout(
        "chess",
        dest,
        f"{pychess_deb}, {scid_deb}; {rule}",
        lambda: _chess.collect(pychess_root, scid_root),
        (CHESS_MIN, CHESS_PER_CLASS, CHESS_SEED),
    )


def layout_symbola(dest: Path) -> Layout:
    """Symbola's emoji by emoji-test.txt group (bench/_symbola.py)."""
    import _symbola

    (font_root, font_deb), (text_root, text_deb) = map(fetch_package, SYMBOLA_PACKAGES)
    rule = f"groups of >= {SYMBOLA_MIN}, {SYMBOLA_PER_CLASS} per class, seed {SYMBOLA_SEED}"
    return _capped_layout(
        "symbola",
        dest,
        f"{font_deb}, {text_deb}; {rule}",
        lambda: _symbola.collect(font_root, text_root),
        (SYMBOLA_MIN, SYMBOLA_PER_CLASS, SYMBOLA_SEED),
    )


def subset(layout: Layout, dest: Path, classes: int, per_class: int) -> Layout:
    """The first `classes` classes and `per_class` files of each (sorted by name), as
    symbolic links: bench/choose.py's --smoke."""
    counts: dict[str, int] = {}
    for category in sorted(layout.counts)[:classes]:
        out = dest / category
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted((layout.path / category).iterdir())[:per_class]:
            link = out / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
        counts[category] = len(list(out.iterdir()))
    return Layout(layout.name, dest, counts, f"{layout.source}, subset")


def layout(name: str, dest_root: Path | None = None) -> Layout:
    """One evaluation set by its protocol name, under DEST (default: the cache folder)."""
    dest_root = dest_root or cache_dir() / "sets"
    if name == "icons":
        return layout_icons(dest_root / f"icons-{ICON_SIZE}")
    if name == "fashion":
        folder = f"fashion-{FASHION_PER_CLASS}-seed{FASHION_SEED}"
        return layout_fashion(dest_root / folder, FASHION_PER_CLASS, FASHION_SEED)
    if name == "gnome-icons":
        return layout_gnome_icons(dest_root / f"gnome-icons-{GNOME_SIZE}")
    if name == "glyphs":
        return layout_glyphs(dest_root / f"glyphs-{GLYPH_FONTS}-seed{GLYPH_SEED}")
    if name == "emoji":
        return layout_emoji(dest_root / f"emoji-{EMOJI_PER_CLASS}-seed{EMOJI_SEED}")
    if name == "schematics":
        return layout_schematics(
            dest_root / f"schematics-{SCHEMATIC_PER_CLASS}-seed{SCHEMATIC_SEED}"
        )
    if name == "art4apps":
        return layout_art4apps(dest_root / f"art4apps-{ART4APPS_PER_CLASS}-seed{ART4APPS_SEED}")
    if name == "chess":
        return layout_chess(dest_root / f"chess-{CHESS_PER_CLASS}-seed{CHESS_SEED}")
    if name == "symbola":
        return layout_symbola(dest_root / f"symbola-{SYMBOLA_PER_CLASS}-seed{SYMBOLA_SEED}")
    if name == "digits":
        return layout_digits(dest_root / f"digits-{DIGIT_FONTS}-seed{DIGIT_SEED}")
    raise SystemExit(f"bench/datasets.py: unknown set {name!r}; the sets are {', '.join(SETS)}")


SETS = ("icons", "fashion", "gnome-icons", "glyphs", "emoji", "schematics", "art4apps", "chess",
        "symbola", "digits")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", nargs="?", type=Path, help="default: <cache>/sets")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    args = parser.parse_args()
    for name in args.sets:
        made = layout(name, args.dest)
        print(made.describe())
        print(f"  from {made.source}")


if __name__ == "__main__":
    main()
