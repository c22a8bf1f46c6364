"""The evaluation sets of docs/protocol.md, laid out as image folders from Debian packages.

    python bench/datasets.py [DEST] [--sets icons fashion]

Nothing in zoo was tuned on these images (docs/protocol.md); zoo's own test images
(openclipart, `python -m zoo.testdata where`) are the development set. Both packages are
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
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ICONS_PACKAGE = "oxygen-icon-theme"
FASHION_PACKAGE = "dataset-fashion-mnist"
ICON_SIZE = "128x128"
# Categories of oxygen's 128x128 folder with at least 30 distinct icons (Debian 12:
# emotes has 12, emblems 2: left out).
ICON_CATEGORIES = ("actions", "apps", "categories", "devices", "mimetypes", "places", "status")
FASHION_CLASSES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
FASHION_PER_CLASS = 80  # docs/protocol.md: sized for the bench's wall-time budget
FASHION_SEED = 0
_MARKER = ".complete"


@dataclass(frozen=True)
class Layout:
    """A laid-out evaluation set: its folder and images per class."""

    name: str
    path: Path
    counts: dict[str, int]
    source: str

    def describe(self) -> str:
        counts = ", ".join(f"{c} {n}" for c, n in self.counts.items())
        total = sum(self.counts.values())
        return f"{self.name}: {total} images, {len(self.counts)} classes ({counts}) in {self.path}"


def cache_dir() -> Path:
    env = os.environ.get("ZOO_BENCH_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zoo-bench"


def fetch_package(package: str) -> tuple[Path, str]:
    """`apt-get download` + `dpkg -x` into the cache, once. Returns (root, .deb name)."""
    target = cache_dir() / package
    marker = target / _MARKER
    if marker.exists():
        return target, marker.read_text(encoding="utf-8").strip()
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        sys.exit(f"bench/datasets.py: apt-get and dpkg are needed to fetch {package}")
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".fetch-") as tmp:
        work = Path(tmp)
        download = ["apt-get", "download", package]
        proc = subprocess.run(download, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:  # a fresh container has no package lists yet
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
            proc = subprocess.run(download, cwd=work, capture_output=True, text=True)
        debs = sorted(work.glob(f"{package}_*.deb"))
        if proc.returncode != 0 or not debs:
            sys.exit(f"bench/datasets.py: apt-get download {package} failed: {proc.stderr}")
        unpacked = work / "unpacked"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True)
        (unpacked / _MARKER).write_text(debs[0].name + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)  # one rename: a half-unpacked tree is never visible
    return target, debs[0].name


def _finished(dest: Path) -> dict[str, int] | None:
    if not (dest / _MARKER).exists():
        return None
    return {d.name: sum(1 for _ in d.iterdir()) for d in sorted(dest.iterdir()) if d.is_dir()}


def _publish(tmp: Path, dest: Path, source: str) -> None:
    (tmp / _MARKER).write_text(source + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def layout_icons(dest: Path, categories: tuple[str, ...] = ICON_CATEGORIES) -> Layout:
    """The oxygen 128x128 icons as one folder per category (copies, not links)."""
    root, deb = fetch_package(ICONS_PACKAGE)
    source = f"{deb}, usr/share/icons/oxygen/base/{ICON_SIZE}"
    done = _finished(dest)
    if done is not None:
        return Layout("icons", dest, done, source)
    base = root / "usr" / "share" / "icons" / "oxygen" / "base" / ICON_SIZE
    files: dict[str, list[Path]] = {}
    owners: dict[str, set[str]] = {}  # icon name -> categories holding it
    for category in categories:
        found = sorted(p for p in (base / category).rglob("*.png") if not p.is_symlink())
        if not found:
            sys.exit(f"bench/datasets.py: no icons under {base / category}")
        files[category] = found
        for path in found:
            owners.setdefault(path.stem, set()).add(category)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
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
    _publish(tmp, dest, source)
    return Layout("icons", dest, counts, source)


def _read_idx(path: Path) -> object:
    import numpy as np

    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def layout_fashion(
    dest: Path, per_class: int = FASHION_PER_CLASS, seed: int = FASHION_SEED
) -> Layout:
    """A seeded, class-stratified subsample of Fashion-MNIST's training idx files as PNGs."""
    import numpy as np
    from PIL import Image

    root, deb = fetch_package(FASHION_PACKAGE)
    source = f"{deb}, train-*-idx*-ubyte.gz, {per_class} per class, seed {seed}"
    done = _finished(dest)
    if done is not None:
        return Layout("fashion", dest, done, source)
    folder = root / "usr" / "share" / "datasets" / "fashion-mnist"
    images = _read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = _read_idx(folder / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
    counts: dict[str, int] = {}
    seen: set[bytes] = set()
    for label, name in enumerate(FASHION_CLASSES):
        (tmp / name).mkdir()
        members = np.flatnonzero(labels == label)  # type: ignore[operator]
        counts[name] = 0
        for index in rng.permutation(members):
            pixels = images[index]  # type: ignore[index]
            if pixels.tobytes() in seen:
                continue  # a byte-identical image: kept once
            seen.add(pixels.tobytes())
            Image.fromarray(pixels, mode="L").save(tmp / name / f"{int(index):05d}.png")
            counts[name] += 1
            if counts[name] == per_class:
                break
    _publish(tmp, dest, source)
    return Layout("fashion", dest, counts, source)


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
    raise SystemExit(f"bench/datasets.py: unknown set {name!r}; the sets are icons, fashion")


SETS = ("icons", "fashion")


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
