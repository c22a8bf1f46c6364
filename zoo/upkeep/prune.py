"""`zoo home prune`: free the space of what zoo can do without, dry run first.

What goes:

- the checkpoints (``state.pt``, ``best.pt``, ``final.pt``) of runs that registered a
  version: the run keeps its ``result.json``, so the same command prints the registered
  version instead of training again (zoo.engine.checkpoint.finished); nothing reads those
  checkpoints once the run has finished (``--again`` discards them);
- feature, stage-feature and frozen-prefix caches, decoded images and the image check's
  verdict stores (one a data folder: its database, WAL and shared-memory files go
  together) not used (read or written, as the file system's times say; a check touches
  its store) for ``older_than`` seconds; they are recomputed when needed;
- with ``unreferenced_weights``: pulled weights that no registered version's lineage (in
  the store zoo uses now), no local import and no unfinished run refers to, removed as
  `zoo cache rm` removes them;
- folders a prune that was stopped left behind.

What stays, always: the registry store and its artifacts, exports, local imports, run
records, checkpoints of unfinished runs (the next run resumes them), pulled weights
anything refers to.

Concurrency: a run's checkpoints are removed only while prune holds the run's own
``recipe.lock`` (the engine holds it for the whole run; a running one is skipped), and
caches only while prune holds the caches' lock alone (zoo.disk.lock: every process that
uses them holds it shared; in use, they are skipped). Both are taken without waiting
when the plan is made and held until the removal ends, so the dry run lists what the
removal removes. The removal moves every file into a hidden folder of the home first
(renames, undone on any error, so an error removes nothing), then deletes that folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from zoo.contract.errors import UsageError
from zoo.disk.lock import caches_exclusive, caches_holders, is_locked
from zoo.disk.paths import release_staging, remove_stale_staging, staging_dir
from zoo.engine.checkpoint import LOCK_FILE, OWNER_FILE
from zoo.upkeep.prune_plan import Item, Plan, Skip
from zoo.upkeep.prune_weights import plan_weights
from zoo.upkeep.usage import CACHE_KINDS, CHECKPOINT_FILES, human, registered_version

__all__ = ["DEFAULT_OLDER_THAN", "TRASH_PREFIX", "Item", "Plan", "Skip", "apply", "planned"]

DEFAULT_OLDER_THAN = 7 * 86400.0
TRASH_PREFIX = ".zoo-prune-"  # $ZOO_HOME/.zoo-prune-*: what a removal is deleting


def _size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        with contextlib.suppress(OSError):
            total += p.lstat().st_size
    return total


def _tree(folder: Path) -> tuple[list[Path], int]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()]
    return files, _size(files)


# ------------------------------------------------------------------ runs' checkpoints


def _run_lock(run: Path, held: contextlib.ExitStack, keep: bool) -> str | None:
    """Take the run's recipe lock as the engine does, without waiting, and keep it in
    ``held`` (``keep``), or only ask whether a run holds it; None when free, else why."""
    lock_file = run / LOCK_FILE
    if keep:
        from filelock import FileLock, Timeout

        lock = FileLock(str(lock_file))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return _running(run)
        except OSError as exc:
            return f"its lock {lock_file} cannot be taken ({exc.strerror}): its checkpoints stay"
        held.callback(lock.release)
        return None
    return _running(run) if is_locked(lock_file) else None


def _running(run: Path) -> str:
    try:
        pid = (run / OWNER_FILE).read_text(encoding="utf-8").strip() or "unknown"
    except OSError:
        pid = "unknown"
    return f"the run is running (pid {pid}): its checkpoints stay"


def _checkpoints(plan: Plan, held: contextlib.ExitStack, keep: bool) -> None:
    unfinished, unfinished_bytes = 0, 0
    try:
        runs = sorted(p for p in (plan.root / "runs").iterdir() if p.is_dir())
    except OSError:
        runs = []
    for run in runs:
        files = [run / n for n in CHECKPOINT_FILES if (run / n).is_file()]
        if not files:
            continue
        version = registered_version(run)
        if version is None:
            unfinished += 1
            unfinished_bytes += _size(files)
            continue
        why = _run_lock(run, held, keep)
        if why is not None:
            plan.skipped.append(Skip(f"runs/{run.name} ({version})", why))
            continue
        if keep and registered_version(run) is None:  # `--again` cleared it before we locked
            unfinished += 1
            unfinished_bytes += _size(files)
            continue
        files = [f for f in files if f.is_file()]  # as they are now that we hold the lock
        what = f"runs/{run.name} ({version}): {', '.join(f.name for f in files)}"
        plan.items.append(Item("checkpoints", what, [str(f) for f in files], _size(files)))
    if unfinished:
        plan.kept.append(
            f"checkpoints of {unfinished} unfinished run{'s' if unfinished > 1 else ''} "
            f"({human(unfinished_bytes)}): the same command resumes them"
        )


# ------------------------------------------------------------------ caches


def _last_used(path: Path) -> float | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return max(st.st_atime, st.st_mtime)


def _caches(plan: Plan, now: float) -> None:
    from zoo.data import verdicts

    fresh, fresh_bytes = 0, 0

    def old(files: list[Path]) -> list[Path]:
        nonlocal fresh, fresh_bytes
        out = []
        for f in files:
            used = _last_used(f)
            if used is None:
                continue
            if now - used >= plan.older_than:
                out.append(f)
            else:
                fresh += 1
                fresh_bytes += _size([f])
        return out

    for folder, kind in CACHE_KINDS.items():
        # an entry is a folder of row shards (zoo.engine.rows; a file before format 3),
        # used when any of its files was (a folder's own atime moves when it is listed);
        # it goes whole, renamed as one
        for entry in sorted((plan.root / folder).glob("*")):
            files, size = _tree(entry) if entry.is_dir() else ([entry], _size([entry]))
            used = [u for u in map(_last_used, files) if u is not None]
            if not used:
                continue
            if now - max(used) < plan.older_than:
                fresh, fresh_bytes = fresh + 1, fresh_bytes + size
                continue
            plan.items.append(Item(kind, f"{folder}/{entry.name}", [str(entry)], size))
    decoded = plan.root / "data" / "decoded"
    for variant in sorted(p for p in decoded.glob("*") if p.is_dir()):
        files = old(sorted(p for p in variant.rglob("*") if p.is_file()))
        if files:
            what = f"data/decoded/{variant.name}: {len(files)} images"
            plan.items.append(Item("decoded", what, [str(f) for f in files], _size(files)))
    for db in sorted((plan.root / "data" / "verdicts").glob(f"*{verdicts.SUFFIX}")):
        files = verdicts.store_files(db)
        used = [u for u in map(_last_used, files) if u is not None]
        if not used:
            continue
        if now - max(used) < plan.older_than:
            fresh, fresh_bytes = fresh + len(files), fresh_bytes + _size(files)
            continue
        root = verdicts.describe(db)
        what = f"data/verdicts/{db.name}: the image check's verdicts" + (
            f" of {root}" if root else ""
        )
        plan.items.append(Item("verdicts", what, [str(f) for f in files], _size(files)))
    if fresh:
        plan.kept.append(
            f"{fresh} cache file{'s' if fresh > 1 else ''} used within the last "
            f"{_age(plan.older_than)} ({human(fresh_bytes)})"
        )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _skip_caches(plan: Plan) -> None:
    pids = caches_holders(plan.root)
    who = f"pid {', '.join(map(str, pids))}" if pids else "another zoo process"
    plan.skipped.append(
        Skip(
            "feature, stage-feature and prefix caches, decoded images, check verdicts",
            f"in use by {who} (a zoo finetune or rank): left alone; prune again once it "
            "has finished",
        )
    )


# ------------------------------------------------------------------ the plan


@contextlib.contextmanager
def planned(
    root: Path, *, older_than: float, unreferenced_weights: bool, removing: bool
) -> Iterator[Plan]:
    """The plan, with the locks it relies on held for the block when ``removing`` (a dry
    run only tries them: what it lists is what a removal would remove now)."""
    plan = Plan(root, older_than)
    now = time.time()
    with contextlib.ExitStack() as held:
        for folder in sorted(root.glob(f"{TRASH_PREFIX}*")):
            if folder.is_dir() and _stale(folder):
                files, size = _tree(folder)
                what = f"{folder.name}: left by a prune that was stopped"
                plan.items.append(Item("leftover", what, [str(f) for f in files], size))
        weights = Plan(root, older_than)  # asked first: no lock is held while a store answers
        plan_weights(weights, unreferenced_weights)
        _checkpoints(plan, held, keep=removing)
        if removing:
            caches = held.enter_context(caches_exclusive(root, create=True))
        else:
            with caches_exclusive(root, create=False) as caches:
                pass  # a dry run only asks
        if caches:
            _caches(plan, now)
        else:
            _skip_caches(plan)
        plan.items += weights.items
        plan.skipped += weights.skipped
        plan.kept += weights.kept
        plan.kept.append(
            "the registry store and its artifacts, exports, local imports, run records "
            "(result.json: the same command prints the registered version)"
        )
        yield plan


def _stale(folder: Path) -> bool:
    from zoo.disk.paths import is_stale_staging

    return is_stale_staging(folder)


# ------------------------------------------------------------------ the removal


def _put_back(moved: list[tuple[Path, Path]]) -> list[Path]:
    """Undo the renames, newest first; the files that could not go back."""
    stuck = []
    for src, dst in reversed(moved):
        try:
            os.rename(dst, src)
        except OSError:
            stuck.append(src)
    return stuck


def apply(plan: Plan) -> list[str]:
    """Remove what the plan lists (inside :func:`planned`'s block): every file of the
    home is first renamed into a hidden folder (an error undoes the renames and removes
    nothing), which is then deleted; pulled weights go afterwards, one model at a time
    as `zoo cache rm` removes them. Returns the lines of weights that could not go."""
    root = plan.root
    remove_stale_staging(root, TRASH_PREFIX)  # the "leftover" items
    inside = [i for i in plan.items if i.kind not in ("weights", "leftover")]
    with staging_dir(root, TRASH_PREFIX) as trash:
        moved: list[tuple[Path, Path]] = []
        try:
            for item in inside:
                for name in item.paths:
                    src = Path(name)
                    dst = trash / src.relative_to(root)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.rename(src, dst)
                    except FileNotFoundError:
                        continue  # gone meanwhile: nothing to do
                    moved.append((src, dst))
        except BaseException as exc:
            stuck = _put_back(moved)
            if not stuck:
                shutil.rmtree(trash, ignore_errors=True)  # its empty folders and lock
            if not isinstance(exc, OSError):
                raise
            where = f"{exc.filename} ({exc.strerror})"
            if stuck:
                raise UsageError(
                    f"cannot remove {where}, and {len(stuck)} file(s) moved aside could not "
                    f"be put back: they are in {trash}, move them back by hand"
                ) from None
            raise UsageError(
                f"cannot remove {where}: nothing was removed. Make it removable (a "
                "read-only or other mount inside the home?) and run again"
            ) from None
        release_staging(trash)
        shutil.rmtree(trash, ignore_errors=True)
    failed = []
    for item in plan.items:
        if item.kind == "weights" and item.reference:
            from zoo.upkeep.cache import remove

            try:
                remove(item.reference)
            except Exception as exc:  # one model that cannot go does not stop the others
                failed.append(f"{item.reference}: {exc}")
    return failed
