"""First contact with a large folder: the data check's cold and warm `--dry-run`, and a
re-run after 1% of the files changed.

    python bench/check_scale.py [--sizes 2000,20000] [--changed 0.01] [--image-size PX]
                                [--keep DIR]

For each size N it makes a synthetic set (48 px PNGs of random pixels, 10 classes, one
truncated file in 500 so bad verdicts are part of it) and times the whole process of

    zoo finetune effnet-lite:lite0 DATA --strategy linear-probe --dry-run

cold (an empty ZOO_HOME) and warm (the same command again), reading the check's own line
("checked N files in S s: U unchanged since the last check, R read (D decoded; ...)")
for the files it read and decoded. It checks that the dry run stopped after the check
and the plan (no feature cache written). On the set nearest 20,000 files it then rewrites
a share of the files (`--changed`, default 1%: new pixels, same names; the truncated files among
them become good ones) and runs the dry run again: the files read and decoded must be
exactly the changed ones, and the verdicts (digest, skipped files and their reasons) of
the cache-served check must equal a fresh check's (no cache, every file read). Cold
throughput per core: files read a second per worker process of the cold check (the
machine's cores, up to 8).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES = 10
SIZE = 48
BAD_EVERY = 500  # one file in 500 is a truncated PNG
LINE = re.compile(
    r"zoo: checked ([\d,]+) files in ([\d.]+) s: (?:([\d,]+) unchanged since the last "
    r"check, )?([\d,]+) read \(([\d,]+) decoded(?:; [\d,]+ a second on (\d+) process)?"
)


def _png(rng: object, path: Path, bad: bool) -> None:
    import numpy as np
    from PIL import Image

    assert isinstance(rng, np.random.Generator)
    pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, compress_level=1)
    if bad:
        with path.open("r+b") as fh:  # a PNG cut short: "truncated or corrupt"
            fh.truncate(path.stat().st_size // 2)


def make_set(root: Path, n: int) -> list[Path]:
    """N files in CLASSES folders; returns them in creation order."""
    import numpy as np

    rng = np.random.default_rng(n)
    files = []
    for i in range(n):
        folder = root / f"class{i % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img{i:07d}.png"
        _png(rng, path, bad=i % BAD_EVERY == BAD_EVERY - 1)
        files.append(path)
    return files


def change(files: list[Path], share: float) -> list[Path]:
    """Rewrite every (1/share)-th file with new pixels, same name; returns them."""
    import numpy as np

    rng = np.random.default_rng(12345)
    step = max(1, round(1 / share))
    changed = files[step // 2 :: step]
    for path in changed:
        _png(rng, path, bad=False)
    return changed


def dry_run(data: Path, home: Path, size: int | None) -> tuple[float, dict[str, float], int]:
    """(seconds, the check's figures, peak RSS in MB) of one whole `zoo finetune --dry-run`
    (``size``: its --image-size; smaller decoded arrays for large sets)."""
    cmd = [sys.executable, "-m", "zoo", "finetune", "effnet-lite:lite0", str(data)]
    cmd += ["--strategy", "linear-probe", "--dry-run"]
    cmd += ["--image-size", str(size)] if size else []
    env = dict(os.environ, CI="true", ZOO_HOME=str(home))
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        begun = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - begun
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        said = err.read()
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{said[-3000:]}")
    found = LINE.search(said)
    if found is None:
        sys.exit(f"no 'checked N files' line from the check:\n{said[-3000:]}")
    files, secs, unchanged, read, decoded, processes = found.groups()
    figures = {
        "files": _int(files),
        "check_s": float(secs),
        "unchanged": _int(unchanged or "0"),
        "read": _int(read),
        "decoded": _int(decoded),
        "processes": float(processes or 1),
    }
    if (home / "features").exists():
        sys.exit("the dry run wrote a feature cache: it did more than check and plan")
    return seconds, figures, usage.ru_maxrss // 1024


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def verdicts(
    data: Path, home: Path, cache: bool, variant: str
) -> tuple[str, list[tuple[str, str]], int]:
    """(digest, skipped files and reasons, files read) of an in-process check at the
    dry run's resize (``variant``: its decoded arrays' folder, ``256-bilinear``)."""
    os.environ["ZOO_HOME"] = str(home)
    from zoo.data import load_dataset

    size, interpolation = variant.rsplit("-", 1)
    w, _, h = size.partition("x")
    resize = (int(w), int(h)) if h else int(w)
    found = load_dataset(data, resize=resize, interpolation=interpolation, cache=cache)
    return found.digest, sorted((b.path, b.reason) for b in found.bad), found.work.read


def listing_seconds(data: Path) -> float:
    from zoo.data import list_files

    begun = time.perf_counter()
    list_files(data)
    return time.perf_counter() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000", help="comma-separated set sizes")
    parser.add_argument("--changed", type=float, default=0.01, help="share rewritten")
    parser.add_argument("--image-size", type=int, help="the dry runs' --image-size")
    parser.add_argument("--keep", type=Path, help="make the sets and homes here and keep them")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = args.keep or Path(tempfile.mkdtemp(prefix="zoo-check-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    rows = []
    try:
        for n in sizes:
            data, home = base / f"data-{n}", base / f"home-{n}"
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
            begun = time.perf_counter()
            files = make_set(data, n)
            print(f"\n{n:,} files made in {time.perf_counter() - begun:.0f} s")
            listed = listing_seconds(data)
            cold_s, cold, cold_mb = dry_run(data, home, args.image_size)
            warm_s, warm, warm_mb = dry_run(data, home, args.image_size)
            per_core = cold["read"] / cold["check_s"] / cold["processes"]
            rows.append((n, cold_s, warm_s, cold, warm, per_core, listed))
            print(f"listing: {listed:.2f} s")
            print(
                f"cold --dry-run: {cold_s:.1f} s (the check {cold['check_s']:.1f} s: "
                f"{cold['read']:,.0f} read, {cold['decoded']:,.0f} decoded on "
                f"{cold['processes']:.0f} processes: {per_core:.0f} files/s per core), "
                f"peak RSS {cold_mb} MB"
            )
            print(
                f"warm --dry-run: {warm_s:.1f} s (the check {warm['check_s']:.1f} s: "
                f"{warm['unchanged']:,.0f} unchanged, {warm['read']:,.0f} read), "
                f"peak RSS {warm_mb} MB"
            )
        n = min(sizes, key=lambda size: abs(size - 20_000))
        data, home = base / f"data-{n}", base / f"home-{n}"
        files = sorted(data.rglob("*.png"), key=lambda p: p.name)
        changed = change(files, args.changed)
        again_s, again, _mb = dry_run(data, home, args.image_size)
        (variant,) = [p.name for p in (home / "data" / "decoded").iterdir()]
        cached = verdicts(data, home, True, variant)
        fresh = verdicts(data, base / "fresh-home", False, variant)
        same = cached[:2] == fresh[:2]
        exact = again["read"] == again["decoded"] == len(changed)
        print(
            f"\nafter rewriting {len(changed):,} of {n:,} files ({args.changed:.0%}): "
            f"--dry-run {again_s:.1f} s, the check {again['check_s']:.1f} s: "
            f"{again['unchanged']:,.0f} unchanged, {again['read']:,.0f} read, "
            f"{again['decoded']:,.0f} decoded: {'exactly' if exact else 'NOT'} the changed files"
        )
        print(
            f"verdicts from the cache vs a fresh check (no cache, {fresh[2]:,} read): "
            f"{'the same' if same else 'DIFFERENT'} digest and {len(fresh[1])} skipped files "
            f"(the cached check read {cached[2]} files)"
        )
        print("\n| files | listing | cold --dry-run | its check | read/s per core | warm --dry-run "
              "| its check |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for n, cold_s, warm_s, cold, warm, per_core, listed in rows:
            print(
                f"| {n:,} | {listed:.2f} s | {cold_s:.1f} s | {cold['check_s']:.1f} s | "
                f"{per_core:.0f} | {warm_s:.1f} s | {warm['check_s']:.2f} s |"
            )
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(f"\npeak RSS of the dry runs: {peak} MB")
        print("reproduce: python " + shlex.join(["bench/check_scale.py", *sys.argv[1:]]))
        if not (exact and same):
            sys.exit(1)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
