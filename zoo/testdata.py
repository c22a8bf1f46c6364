"""Real images for zoo's tests and benchmarks, fetched by the project's own script.

The development and CI machines reach Debian's package mirrors but no dataset server, so
the real images come from Debian's ``openclipart-png`` (public-domain clip art in category
folders)::

    python -m zoo.testdata fetch        # apt-get download + dpkg -x into the cache (idempotent)
    python -m zoo.testdata layout DIR [--per-class N]
                                        # the 8-category dataset as class folders (symlinks);
                                        # N: the first N images of each category
    python -m zoo.testdata where        # print the cache folder

The cache folder is ``$ZOO_DATA`` or ``~/.cache/zoo-testdata`` (README.md): not under
``$ZOO_HOME``, which every test makes fresh, so the images are fetched once per machine.
Tests that need the data call :func:`require_openclipart`: it skips locally when the
data is missing and FAILS under ``CI=true`` (a CI run that silently skipped its
end-to-end tests would prove nothing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = [
    "CATEGORIES",
    "PACKAGE",
    "cache_dir",
    "fetch",
    "layout_categories",
    "openclipart_root",
    "require_openclipart",
]

PACKAGE = "openclipart-png"
# The 8 categories of docs/finetune.md's transfer protocol (1,906 images in Debian 12).
CATEGORIES = (
    "animals",
    "food",
    "transportation",
    "plants",
    "buildings",
    "people",
    "tools",
    "office",
)
_MARKER = ".complete"
_IMAGE_SUFFIXES = {".png"}


def cache_dir() -> Path:
    env = os.environ.get("ZOO_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zoo-testdata"


def openclipart_root() -> Path:
    """The folder holding the category folders (animals/, food/, ...) once fetched."""
    return cache_dir() / PACKAGE / "usr" / "share" / "openclipart" / "png"


def _complete() -> bool:
    return (cache_dir() / PACKAGE / _MARKER).exists() and openclipart_root().is_dir()


def fetch(*, quiet: bool = False) -> Path:
    """Download and unpack openclipart-png into the cache; a no-op when already there."""
    if _complete():
        if not quiet:
            print(f"zoo.testdata: {PACKAGE} already in {cache_dir() / PACKAGE}")
        return openclipart_root()
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise SystemExit(
            "zoo.testdata: apt-get and dpkg are needed to fetch openclipart-png "
            "(a Debian/Ubuntu machine); or set ZOO_DATA to a folder that holds it"
        )
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix=".fetch-") as tmp:
        work = Path(tmp)
        if not quiet:
            print(f"zoo.testdata: apt-get download {PACKAGE}")
        proc = subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=work, capture_output=True, text=True
        )
        if proc.returncode != 0:
            # A fresh container has no package lists yet.
            subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
            proc = subprocess.run(
                ["apt-get", "download", PACKAGE], cwd=work, capture_output=True, text=True
            )
        if proc.returncode != 0:
            raise SystemExit(f"zoo.testdata: apt-get download {PACKAGE} failed: {proc.stderr}")
        debs = sorted(work.glob(f"{PACKAGE}_*.deb"))
        if not debs:
            raise SystemExit(f"zoo.testdata: apt-get download produced no {PACKAGE} .deb")
        unpacked = work / PACKAGE
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True)
        (unpacked / _MARKER).write_text(debs[0].name + "\n", encoding="utf-8")
        target = base / PACKAGE
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)  # one rename: a half-unpacked tree is never visible
    if not quiet:
        print(f"zoo.testdata: unpacked into {target}")
    return openclipart_root()


def require_openclipart() -> Path:
    """The openclipart root for a test; skip when missing, but FAIL under CI=true."""
    import pytest

    if _complete():
        return openclipart_root()
    message = (
        f"{PACKAGE} is not in {cache_dir()}: run `python -m zoo.testdata fetch` "
        "(.ci/run does this before the tests)"
    )
    if os.environ.get("CI", "").lower() in {"1", "true"}:
        pytest.fail(message)
    pytest.skip(message)


def category_files(root: Path, category: str) -> list[Path]:
    folder = root / category
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()
    )


def layout_categories(
    dest: Path,
    categories: tuple[str, ...] = CATEGORIES,
    *,
    per_class: int | None = None,
    root: Path | None = None,
) -> Path:
    """Lay out categories as a class-per-folder dataset of symlinks under ``dest``.

    Nested folders inside a category become one class (the category); file names are made
    unique by their path inside the category. ``per_class`` keeps the first N files (sorted
    by path) of each category, for small, deterministic subsets. A picture filed under two
    of the chosen categories (openclipart has 35 such, e.g. a turkey in animals and in
    food) has no single label and is left out; copies inside one category are kept (zoo
    counts them once).
    """
    import hashlib

    root = root or openclipart_root()
    dest.mkdir(parents=True, exist_ok=True)
    chosen: dict[str, list[Path]] = {}
    owners: dict[str, set[str]] = {}
    digests: dict[Path, str] = {}
    for category in categories:
        files = category_files(root, category)
        if not files:
            raise FileNotFoundError(f"no images under {root / category}")
        chosen[category] = files[:per_class] if per_class is not None else files
        for path in chosen[category]:
            digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            owners.setdefault(digests[path], set()).add(category)
    for category, files in chosen.items():
        out = dest / category
        out.mkdir(exist_ok=True)
        for path in files:
            if len(owners[digests[path]]) > 1:
                continue  # the same picture under two labels
            link = out / "__".join(path.relative_to(root / category).parts)
            if not link.exists():
                link.symlink_to(path)
    return dest


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    command = args[0]
    if command == "fetch":
        root = fetch()
        total = sum(len(category_files(root, c)) for c in CATEGORIES)
        print(f"zoo.testdata: {len(CATEGORIES)} categories, {total} images in {root}")
        return 0
    if command == "where":
        print(openclipart_root())
        return 0
    if command == "layout" and len(args) in {2, 4}:
        per_class = None
        if len(args) == 4:
            if args[2] != "--per-class" or not args[3].isdigit() or int(args[3]) < 1:
                print("zoo.testdata: usage: layout DIR [--per-class N], N >= 1", file=sys.stderr)
                return 2
            per_class = int(args[3])
        root = fetch(quiet=True)
        dest = layout_categories(Path(args[1]), per_class=per_class, root=root)
        counts = [sum(1 for _ in (dest / c).iterdir()) for c in CATEGORIES]
        print(f"zoo.testdata: {len(CATEGORIES)} classes, {sum(counts)} images in {dest}")
        return 0
    print(f"zoo.testdata: unknown command {' '.join(args)!r}; see --help", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
