"""Where bench/datasets.py's sets come from and go: Debian packages fetched once into the
cache folder, and a set's folder published whole (laid out beside it, then renamed onto
it), so that a half-written set is never seen and a finished one is kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


def finished(dest: Path) -> dict[str, int] | None:
    if not (dest / _MARKER).exists():
        return None
    return {d.name: sum(1 for _ in d.iterdir()) for d in sorted(dest.iterdir()) if d.is_dir()}


def staging(dest: Path) -> Path:
    """A fresh folder beside DEST, for publish to rename onto it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))


def publish(tmp: Path, dest: Path, source: str) -> None:
    (tmp / _MARKER).write_text(source + "\n", encoding="utf-8")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
