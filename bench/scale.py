"""Scale: time and peak memory of zoo's commands as the image count grows, and their growth
exponents (issue 26).

    python bench/scale.py                                   # 2,000, 20,000, 200,000 images
    python bench/scale.py --sizes 2000,20000 --keep /tmp/s  # a quicker look; keep sets and homes
    python bench/scale.py --keep /tmp/s --make-only         # make the sets beforehand (untimed)

For each size N, a synthetic set (48 px PNGs of random pixels, 10 classes, one file in
500 truncated: bench/check_scale.py's), every command a whole process at `--image-size
64` on an empty home first (cold), EfficientNet-Lite0:

- `zoo finetune ... --strategy linear-probe --dry-run`, cold and warm (the check and the plan);
- `zoo finetune ... --strategy linear-probe --epochs 10` (the feature cache filled, the
  head's passes, registration): time and peak RSS;
- `zoo finetune ... --strategy partial --unfreeze 1 --epochs 1` (the frozen-prefix cache
  filled, one epoch of the last stage on it): time and peak RSS; the bench checks that a
  prefix cache was written (else the epoch ran on images and measured something else);
- `zoo rank DATA effnet-lite:lite0 --metric logme` on a home of its own (its own forward
  pass, then LogME): time and peak RSS.

Peak RSS is the process's own (`wait4`'s ru_maxrss; the image check's worker processes
are not in it). Growth exponents: the slope of log(figure) on log(N) between each pair
of consecutive sizes and over all, so `time ~ N^a`, `memory ~ N^b`; the issue's goals
above 20,000 images: a <= 1.05, b <= 0.1. Prints the table, the exponents and the command.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import git_commit
from check_scale import dry_run, make_set

REF = "effnet-lite:lite0"
SIZE = 64


def timed(cmd: list[str], home: Path) -> tuple[float, int, str]:
    """(seconds, peak RSS in MB, stderr) of one whole `zoo` process in ``home``."""
    env = dict(os.environ, CI="true", ZOO_HOME=str(home))
    full = [sys.executable, "-m", "zoo", *cmd]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        begun = time.perf_counter()
        proc = subprocess.Popen(full, env=env, stdout=out, stderr=err, text=True)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - begun
        err.seek(0)
        said = err.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{shlex.join(['zoo', *cmd])} failed ({code}):\n{said[-3000:]}")
    return seconds, usage.ru_maxrss // 1024, said


def exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(value) on log(N)."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(max(v, 1e-9)) for _, v in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def the_set(n: int, base: Path) -> Path:
    """The set of ``n`` images in ``base``: made, or one made whole before (--keep)."""
    data, made = base / f"data-{n}", base / f"data-{n}.made"
    if made.exists():
        print(f"\n{n:,} images: the set made before in {data}", flush=True)
        return data
    shutil.rmtree(data, ignore_errors=True)
    begun = time.perf_counter()
    make_set(data, n)
    made.touch()
    print(f"\n{n:,} images made in {time.perf_counter() - begun:.0f} s", flush=True)
    return data


def measure(n: int, base: Path) -> dict[str, float]:
    data = the_set(n, base)
    home = base / f"home-{n}"
    shutil.rmtree(home, ignore_errors=True)
    row: dict[str, float] = {}
    row["cold_s"], _, row["cold_mb"] = dry_run(data, home, SIZE)
    row["warm_s"], _, row["warm_mb"] = dry_run(data, home, SIZE)
    size = ["--image-size", str(SIZE)]
    probe = ["finetune", REF, str(data), "--strategy", "linear-probe", "--epochs", "10"]
    row["probe_s"], row["probe_mb"], _ = timed([*probe, *size, "--name", f"probe{n}"], home)
    partial = ["finetune", REF, str(data), "--strategy", "partial", "--unfreeze", "1"]
    partial += ["--epochs", "1", *size, "--name", f"partial{n}"]
    row["partial_s"], row["partial_mb"], said = timed(partial, home)
    if not any((home / "prefix").glob("*/rows.json")):
        sys.exit(f"partial wrote no frozen-prefix cache: it trained on images\n{said[-2000:]}")
    rank_home = base / f"rank-home-{n}"
    shutil.rmtree(rank_home, ignore_errors=True)
    rank = ["rank", str(data), REF, "--metric", "logme", *size]
    row["rank_s"], row["rank_mb"], _ = timed(rank, rank_home)
    for key, value in row.items():
        unit = "s" if key.endswith("_s") else "MB"
        print(f"  {key[:-2] if unit == 's' else key[:-3]:>8} {unit}: {value:,.1f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,200000", help="comma-separated counts")
    parser.add_argument(
        "--keep",
        type=Path,
        help="make the sets and homes here and keep them; a set made there before is used again"
        " (the homes are always begun anew)",
    )
    parser.add_argument("--make-only", action="store_true", help="make the sets (--keep) and stop")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    base = args.keep or Path(tempfile.mkdtemp(prefix="zoo-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    commit, dirty = git_commit()
    load = os.getloadavg()[0]
    tree = f"{commit}{' (+ changes)' if dirty else ''}"
    print(f"commit {tree}, {os.cpu_count()} cores, load {load:.2f}")
    if args.make_only:
        if args.keep is None:
            parser.error("--make-only needs --keep DIR")
        for n in sizes:
            the_set(n, base)
        return
    rows: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            rows[n] = measure(n, base)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    keys = list(next(iter(rows.values())))
    print("\n| images | " + " | ".join(keys) + " |")
    print("|---:|" + "---:|" * len(keys))
    for n, row in rows.items():
        print(f"| {n:,} | " + " | ".join(f"{row[k]:,.1f}" for k in keys) + " |")
    steps = list(itertools.pairwise(sizes))
    spans = ", ".join(f"{a:,}->{b:,}" for a, b in steps)
    print(f"\ngrowth exponents (figure ~ N^x): {spans}, all")
    for k in keys:
        pairs = [exponent([(a, rows[a][k]), (b, rows[b][k])]) for a, b in steps]
        whole = exponent([(n, rows[n][k]) for n in sizes])
        goal = "time a <= 1.05" if k.endswith("_s") else "memory b <= 0.1"
        print(f"  {k:>10}: " + ", ".join(f"{p:.2f}" for p in [*pairs, whole]) + f" ({goal})")
    print("\nreproduce: python " + shlex.join(["bench/scale.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
