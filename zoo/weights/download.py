"""Hashing, cross-process locks and resumable, verified downloads of plain URLs.

Used for sources that are plain HTTP files (torchvision's weights, timm weights that are
not on the Hub). A download goes to ``NAME.incomplete`` next to its destination, resumes
from there with ``Range: bytes=N-`` after an interruption, is hashed, checked against
what the source publishes, and only then renamed into place: a complete file is either
there and verified, or not there at all.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from zoo.contract.errors import IntegrityError, NotCachedError, NotFoundError, OfflineError
from zoo.contract.protocols import Progress
from zoo.disk.paths import subdir

__all__ = [
    "HASH_PREFIX",
    "download_url",
    "file_lock",
    "git_blob_sha1",
    "is_offline",
    "offline_variables",
    "sha256_file",
    "ways_out",
]

CHUNK = 1 << 20
# torch.hub's convention: NAME-<first hex digits of the SHA-256>.EXT
HASH_PREFIX = re.compile(r"-([a-f0-9]{6,64})\.")


def offline_variables() -> list[str]:
    """The variables that switch offline mode on, of those actually set (to name only
    those in messages: telling a user to unset a variable they never set helps nobody)."""
    return [
        var
        for var in ("HF_HUB_OFFLINE", "ZOO_OFFLINE")
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
    ]


def is_offline() -> bool:
    """HF_HUB_OFFLINE=1 (or ZOO_OFFLINE=1): no source is contacted, for any provider."""
    return bool(offline_variables())


def ways_out(label: str, *, mirror: str | None = "HF_ENDPOINT") -> str:
    """What a user can do when ``label`` is not cached and its source cannot be reached:
    the real ways out, naming only variables that matter here."""
    local = "bring the weights as a local file with `zoo import FILE --arch ARCH`"
    set_vars = offline_variables()
    if set_vars:
        ways = [f"unset {' and '.join(set_vars)} and run `zoo pull {label}` with network "
                "access", local]  # fmt: skip
    else:
        ways = [f"point {mirror} at a mirror that serves it"] if mirror else []
        ways += [local, "set HF_HUB_OFFLINE=1 to work with the models already cached "
                 "(`zoo cache ls`)"]  # fmt: skip
    return ", ".join(ways[:-1]) + f", or {ways[-1]}"


def sha256_file(path: str | Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            if progress is not None:
                progress.advance(len(chunk))
    return digest.hexdigest()


def git_blob_sha1(path: str | Path) -> str:
    """Git's object id of a file: how the Hub names (and ETags) files stored without LFS."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fallback_lock_dir() -> Path:
    """Where locks go when the zoo home cannot be written (a read-only home or cache):
    a per-user, per-home folder in the system's temp folder, so that processes reading
    the same read-only cache still exclude each other."""
    import hashlib
    import tempfile

    from zoo.disk.paths import home

    key = hashlib.sha256(str(home()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    folder = Path(tempfile.gettempdir()) / f"zoo-locks-{uid}" / key
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


@contextmanager
def file_lock(name: str, timeout: float = 3600.0) -> Iterator[None]:
    """An exclusive lock shared by every zoo process on this machine (``$ZOO_HOME/locks``,
    or a folder in the temp folder when the home is read-only: reading a read-only cache
    needs a lock, not a writable home)."""
    from filelock import FileLock, Timeout

    from zoo.disk.paths import ReadOnlyHomeError

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "--", name)[:200] + ".lock"
    try:
        lock = FileLock(str(subdir("locks") / safe))
        lock.acquire(timeout=timeout)
    except Timeout:
        raise _held(name, timeout, lock.lock_file) from None
    except (OSError, ReadOnlyHomeError):
        lock = FileLock(str(_fallback_lock_dir() / safe))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise _held(name, timeout, lock.lock_file) from None
    try:
        yield
    finally:
        lock.release()


def _held(name: str, timeout: float, lock_file: str) -> OfflineError:
    return OfflineError(
        f"another zoo process has held the lock on {name} for {timeout:g}s; if none is "
        f"running, delete {lock_file}"
    )


def _open(url: str, headers: dict[str, str], timeout: float) -> Any:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "zoo", **headers})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotFoundError(f"{url} does not exist (HTTP 404)") from None
        if exc.code == 416:  # range past the end: the partial file is stale
            return None
        raise OfflineError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OfflineError(f"{url} is not reachable ({reason})") from None


def _mirror_variable(url: str) -> str | None:
    """The variable that points downloads of ``url`` at a mirror, where there is one."""
    mirror = os.environ.get("ZOO_TORCHVISION_MIRROR", "").strip()
    if "download.pytorch.org" in url or (mirror and url.startswith(mirror)):
        return "ZOO_TORCHVISION_MIRROR"
    return None


def download_url(
    url: str,
    dest: Path,
    *,
    sha256_prefix: str | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    timeout: float = 30.0,
    retries: int = 5,
) -> str:
    """Download ``url`` to ``dest`` (resuming a partial ``dest.incomplete``), check it
    against ``sha256`` or ``sha256_prefix``, rename it into place; returns its SHA-256.

    Callers hold :func:`file_lock` for ``dest``. A mismatch deletes the partial file and
    raises :class:`IntegrityError`.
    """
    if is_offline() and not url.startswith("file:"):  # a local file is not the network
        raise NotCachedError(
            f"{dest.name} is not cached and offline mode is on "
            f"({', '.join(offline_variables())}): {ways_out(dest.name)}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".incomplete")
    attempt = 0
    started = False
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            response = _open(url, headers, timeout)
            if response is None:  # 416: start again
                part.unlink(missing_ok=True)
                continue
            with response:
                status = getattr(response, "status", 200)
                if have and status != 206:  # the server ignored Range: start over
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length is not None else None
                if progress is not None and not started:
                    progress.start(f"downloading {dest.name}", total, unit="bytes")
                    started = True
                    if have:
                        progress.advance(have)
                with part.open("ab" if have else "wb") as fh:
                    while chunk := response.read(CHUNK):
                        fh.write(chunk)
                        if progress is not None:
                            progress.advance(len(chunk))
                    fh.flush()
                    os.fsync(fh.fileno())
            if total is not None and part.stat().st_size < total:
                raise OSError("connection closed before the end of the file")
            break
        except (OSError, OfflineError) as exc:
            attempt += 1
            if attempt > retries:
                if progress is not None and started:
                    progress.finish()
                raise OfflineError(
                    f"downloading {url} failed after {attempt} attempts ({exc}): run the "
                    "same command again to resume; if the source stays unreachable: "
                    f"{ways_out(dest.name, mirror=_mirror_variable(url))}"
                ) from None
            time.sleep(min(0.2 * attempt, 2.0))
    if progress is not None and started:
        progress.finish()
    digest = sha256_file(part)
    if (sha256 is not None and digest != sha256) or (
        sha256_prefix is not None and not digest.startswith(sha256_prefix)
    ):
        part.unlink(missing_ok=True)
        expected = sha256 or f"{sha256_prefix}..."
        raise IntegrityError(
            f"{url} does not match its published hash (expected SHA-256 {expected}, got "
            f"{digest}): the partial file was removed; check the source or mirror and pull "
            "again"
        )
    os.replace(part, dest)
    return digest
