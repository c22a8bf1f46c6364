"""The icons of the `icons` and `gnome-icons` sets (bench/datasets.py): an icon theme's
category folders of one size, copied as they are, with the leave-outs both sets share."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path


def keep_icons(
    base: Path, categories: tuple[str, ...], tmp: Path, min_icons: int = 0
) -> dict[str, int]:
    """Copy each category's icons into TMP/category, leaving out symbolic links (aliases
    of another icon), icon names filed under two of CATEGORIES, and byte-identical copies
    (the first one met is kept; categories in the order given, files sorted). A category
    keeping fewer than MIN_ICONS is left out whole. Returns the count per category kept."""
    files: dict[str, list[Path]] = {}
    owners: dict[str, set[str]] = {}  # icon name -> categories holding it
    for category in categories:
        found = sorted(p for p in (base / category).rglob("*.png") if not p.is_symlink())
        if not found:
            sys.exit(f"bench/datasets.py: no icons under {base / category}")
        files[category] = found
        for path in found:
            owners.setdefault(path.stem, set()).add(category)
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for category, found in files.items():
        (tmp / category).mkdir()
        counts[category] = 0
        for path in found:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if len(owners[path.stem]) > 1 or digest in seen:
                continue  # one name under two labels; or a byte-identical copy
            seen.add(digest)
            shutil.copyfile(path, tmp / category / path.name)
            counts[category] += 1
        if counts[category] < min_icons:
            shutil.rmtree(tmp / category)
            del counts[category]
    return counts
