"""The zoo home: every file zoo writes lives under it, never in the current directory.

``ZOO_HOME`` overrides the default, the per-user data directory (platformdirs).

Every file zoo writes goes through :func:`atomic_writer` (or its two shorthands): a temp
file in the same folder, flushed and fsynced, then renamed over the target, so a reader
or a process killed at any moment sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_writer", "home", "subdir"]


def home() -> Path:
    env = os.environ.get("ZOO_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("zoo", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def subdir(*parts: str) -> Path:
    """A folder under the zoo home, created on first use (catalog, cache, local, mlflow...)."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_writer(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename: readers see old or new, never half."""
    with atomic_writer(path, "w", encoding="utf-8") as fh:
        fh.write(text)
