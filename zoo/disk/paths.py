"""The zoo home: every file zoo writes lives under it, never in the current directory.

``ZOO_HOME`` overrides the default, the per-user data directory (platformdirs).

Every file zoo writes goes through :func:`atomic_writer` (or its two shorthands): a temp
file in the same folder, flushed and fsynced, then renamed over the target, so a reader
or a process killed at any moment sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from zoo.contract.errors import NotFoundError, UsageError

__all__ = [
    "ReadOnlyHomeError",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "disk_full",
    "existing_home",
    "home",
    "is_stale_staging",
    "is_writable",
    "release_staging",
    "remove_stale_staging",
    "require_writable",
    "staging_dir",
    "subdir",
]

STAGING_LOCK = ".zoo-staging.lock"  # held (flock) by the process assembling the folder
_LOCKLESS_GRACE_S = 600.0  # a staging folder without its lock file: stale after this


def _configured() -> Path:
    env = os.environ.get("ZOO_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("zoo", appauthor=False))


def home() -> Path:
    path = _configured()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(
            f"ZOO_HOME {path} is a file, not a folder: set ZOO_HOME to a folder "
            "(it is created if missing)"
        ) from None
    except NotADirectoryError:
        raise UsageError(
            f"ZOO_HOME {path} is inside a file, not a folder: set ZOO_HOME to a folder"
        ) from None
    except PermissionError:
        raise UsageError(
            f"ZOO_HOME {path} cannot be created (permission denied): set ZOO_HOME to a "
            "folder you can write"
        ) from None
    return path.resolve()


def existing_home() -> Path:
    """The zoo home as it is, for commands that only look (`zoo home du`, a dry run):
    never created; a missing one is :class:`NotFoundError`, a file a UsageError."""
    path = _configured()
    if not path.exists():
        raise NotFoundError(
            f"ZOO_HOME {path} does not exist: zoo has stored nothing there yet (set ZOO_HOME "
            "to the home you mean)"
        )
    if not path.is_dir():
        raise UsageError(f"ZOO_HOME {path} is a file, not a folder: set ZOO_HOME to a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(
            f"ZOO_HOME {path} cannot be read (permission denied): run as its owner, or set "
            "ZOO_HOME to a folder you can read"
        )
    return path.resolve()


def subdir(*parts: str) -> Path:
    """A folder under the zoo home, created on first use (catalog, cache, local, mlflow...)."""
    path = home().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(
            f"{path} is a file where zoo keeps a folder: move it away and run again"
        ) from None
    except OSError as exc:  # read-only file system, permission denied
        raise ReadOnlyHomeError(
            f"ZOO_HOME {home()} is read-only ({exc.strerror}): zoo needs to write {path}. "
            "Make it writable, or set ZOO_HOME to a writable folder"
        ) from None
    return path


class ReadOnlyHomeError(UsageError):
    """A folder under the zoo home cannot be created; read-only commands degrade on it."""


def is_writable(path: Path | None = None) -> bool:
    """Can a file be created in ``path`` (default: the zoo home)? Tried, not guessed:
    ``os.access`` says yes to root on a read-only mount."""
    folder = path or home()
    try:
        fd, tmp = tempfile.mkstemp(prefix=".zoo-write-test.", dir=folder)
    except OSError:
        return False
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
    return True


def require_writable(what: str) -> Path:
    """The zoo home, or a UsageError saying ``what`` needs to write there."""
    path = home()
    if not is_writable(path):
        raise ReadOnlyHomeError(
            f"ZOO_HOME {path} is read-only: {what} writes there. Make it writable, or set "
            "ZOO_HOME to a writable folder"
        )
    return path


@contextmanager
def atomic_writer(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """``with atomic_writer(path) as fh: ...``: ``path`` appears complete when the block
    ends without an exception, and not at all (the old file stays) when it raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """A new hidden folder in ``parent`` to assemble a result in, locked while we live.

    The lock (``flock`` on a file inside, released by the kernel when the process dies)
    is what tells :func:`remove_stale_staging` that a folder is still being written.
    Call :func:`release_staging` before renaming the folder into place.
    """
    import fcntl

    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fh = open(path / STAGING_LOCK, "w")  # noqa: SIM115 - held for the block's lifetime
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield path
    finally:
        fh.close()


def release_staging(path: Path) -> None:
    """Drop the staging lock file (our flock stays until the block ends)."""
    (path / STAGING_LOCK).unlink(missing_ok=True)


def is_stale_staging(folder: Path) -> bool:
    """A staging folder no live process holds (what :func:`remove_stale_staging` removes)."""
    return _is_stale(folder)


def _is_stale(folder: Path) -> bool:
    import fcntl

    lock = folder / STAGING_LOCK
    try:
        fd = os.open(lock, os.O_RDWR)  # never created here: a missing lock says something
    except FileNotFoundError:
        # Made before staging locks existed, or killed between mkdtemp and the lock.
        try:
            return time.time() - folder.stat().st_mtime > _LOCKLESS_GRACE_S
        except OSError:
            return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live process holds it
    finally:
        os.close(fd)
    return True


def remove_stale_staging(parent: Path, prefix: str) -> list[Path]:
    """Remove ``parent/PREFIX*`` staging folders no live process holds; return them."""
    removed: list[Path] = []
    try:
        candidates = sorted(parent.glob(f"{prefix}*"))
    except OSError:
        return removed
    for folder in candidates:
        if folder.is_dir() and not folder.is_symlink() and _is_stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed


_FULL_ERRNOS = {28, 27, 122}  # ENOSPC, EFBIG (a file-size limit), EDQUOT
# Text of wrappers that lose the errno: safetensors, sqlite, MLflow; torch's C++ writers
# (torch.export's model.pt2: "basic_ios::clear: iostream error").
_FULL_TEXT = (
    "no space left",
    "file too large",
    "disk is full",
    "disk i/o error",
    "quota",
    "iostream error",
)


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc).lower()  # safetensors, sqlite and MLflow wrap the OSError in their own
    return any(t in text for t in _FULL_TEXT)


@contextlib.contextmanager
def disk_full(what: str) -> Iterator[None]:
    """Turn "no space left" (or a file-size limit) while writing ``what`` into one line.

    The code inside is expected to clean up after itself (staging folders, temp files);
    this only says what happened and what to do.
    """
    try:
        yield
    except UsageError:
        raise
    except Exception as exc:
        if not _is_full(exc):
            raise
        raise UsageError(
            f"the disk is full (or a file-size limit was hit) while writing {what}: nothing "
            "was kept. Free some space, or set ZOO_HOME to a larger disk, and run again"
        ) from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers see old or new, never half."""
    with atomic_writer(path, "w", encoding="utf-8") as fh:
        fh.write(text)
