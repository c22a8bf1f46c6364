"""The home's caches in use: a shared lock every user of them holds, that prune takes alone.

Feature, stage-feature and frozen-prefix caches and decoded images are written and read
without a lock of their own (each file is written atomically and read whole). What
``zoo home prune`` must not do is remove them under a run that is using them, so every
process that hands out a cache path (``zoo.engine.caches.cache_path``,
``zoo.data.check.decoded_cache_dir``) holds a shared ``flock`` on
``$ZOO_HOME/locks/caches.lock`` until it exits (the kernel releases it when the process
dies, killed or not), and prune removes caches only while it holds that lock
exclusively: it never waits for it, and leaves the caches alone when it is held.
A process waiting for the shared lock waits at most for prune's renames.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "CACHES_LOCK",
    "caches_exclusive",
    "caches_holders",
    "hold_caches",
    "is_locked",
    "release_caches",
]

CACHES_LOCK = ("locks", "caches.lock")

_held: tuple[Path, int] | None = None  # (the lock file, our descriptor): one home a process


def _lock_path(root: Path) -> Path:
    return root.joinpath(*CACHES_LOCK)


def hold_caches() -> None:
    """Mark this process as a user of the home's caches until it exits (idempotent).

    Best effort: on a home where the lock file cannot be created (read-only) nothing
    can be pruned either, so nothing is held."""
    import fcntl

    from zoo.disk.paths import home

    global _held
    path = _lock_path(home())
    if _held is not None:
        if _held[0] == path:
            return
        release_caches()  # the home changed (tests, embedding): the old one is free
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a prune renames
    except OSError:
        os.close(fd)
        return
    _held = (path, fd)


def release_caches() -> None:
    """Stop holding the caches of the home this process used (prune does it for itself)."""
    global _held
    if _held is not None:
        with contextlib.suppress(OSError):
            os.close(_held[1])  # closing the descriptor drops its flock
        _held = None


@contextlib.contextmanager
def caches_exclusive(root: Path, *, create: bool) -> Iterator[bool]:
    """Hold the caches' lock of ``root`` alone if no process uses them; yields whether it
    is held (never waits). ``create``: make the lock file when it is missing (a prune
    that removes); without it a missing file means nobody ever held the lock. This
    process's own shared hold is dropped for the block and taken again after it."""
    import fcntl

    path = _lock_path(root)
    ours = _held is not None and _held[0] == path
    if ours:
        release_caches()
    fd: int | None = None
    try:
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, 0o666)
        except FileNotFoundError:
            fd = None
        except OSError:
            yield False
            return
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
        yield True
    finally:
        if fd is not None:
            os.close(fd)
        if ours:
            hold_caches()


def caches_holders(root: Path) -> list[int]:
    """The processes holding the caches' lock of ``root`` (Linux's /proc/locks; empty
    where it cannot be read)."""
    try:
        inode = os.stat(_lock_path(root)).st_ino
        lines = Path("/proc/locks").read_text(encoding="ascii").splitlines()
    except OSError:
        return []
    pids: set[int] = set()
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF" (blocked waiters add "->")
        if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            pid, where = int(fields[4]), fields[5]
        except ValueError:
            continue
        if where.rsplit(":", 1)[-1] == str(inode) and pid != os.getpid():
            pids.add(pid)
    return sorted(pids)


def is_locked(path: Path) -> bool:
    """Does another process hold a ``flock`` on ``path`` (a lock file zoo or filelock
    takes)? Asked without waiting and without writing (a read-only home can answer)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: nobody ever held it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
