"""What the data check found, kept by each file's identity: a re-run reads only what changed.

Each row is one file: its path (bytes, as the file system names it), its identity when it
was checked (size, mtime_ns, ctime_ns, inode, device), ``seen_ns`` (this machine's clock
just before that ``stat``), and the verdict: the file's SHA-256, or the reason it cannot
be used. A later check that finds the same identity takes the verdict from the row
without opening the file (zoo.data.check also wants the file's decoded array to be
there); any other file is read, hashed and decoded, and its row replaced.

Where, and why this way: one SQLite database per data folder (the deepest folder holding
every listed file: a folder and a CSV listing the same files share it, wherever the CSV
lies), ``$ZOO_HOME/data/verdicts/<16 hex of the folder's SHA-256>.sqlite``.

- A million rows, looked up by path, 500 paths a query: the check's cost on a warm
  folder is a ``stat`` per file and a B-tree lookup, not a read. A file that is rewritten
  whole (JSON, pickle) would be rewritten for each changed image; SQLite writes the rows.
- Concurrent zoo processes (two fine-tunes of the same folder): WAL mode, so readers
  never wait and never see half a transaction; writes go in transactions of whole rows
  (``INSERT OR REPLACE``) while the other waits up to a minute; each row is a fresh
  verdict of the file it names, whichever process wrote it last.
- One store per data folder, not one for the home: `zoo home prune` removes a folder's store
  once it has not been used for its age (each check that uses it touches it), two runs
  on different folders never wait for each other, and a store is as big as its folder.

Trusting a row: the identity must match (any write, chmod, rename or link changes the
ctime at least), and the row must not be "racily clean" (git's rule): a file changed again
within the timestamp tick of the ``stat`` that made the row keeps its stamps. A row serves
only if the file's mtime and ctime are older than ``seen_ns`` by more than the tick (2 s
where stamps are whole seconds: FAT, HFS+, ext3; 100 ms elsewhere, above the kernel's
clock tick); other files are read again, and their new row is trusted from then on (a
file stamped in the future is read each time until it is past). What can slip through: a
file changed twice within one tick, the second time to the same size, on a share whose
server clock lags this machine's by more than the tick.

Never in the way: a home that cannot be written gets no store (the check runs as
without one); a store that is not a database or is malformed is deleted and begun
anew, said in one line; one that stays locked or fails mid-run stops caching for the
rest of the run, said in one line once the check has finished. The check never fails
because of its store. ``RULES`` (bump it when zoo.data.decode's verdicts change) and
Pillow's version are kept in the store: a store written under other ones is emptied.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from zoo.disk.lock import hold_caches
from zoo.disk.paths import is_writable, subdir

__all__ = [
    "RULES",
    "Identity",
    "Row",
    "Store",
    "describe",
    "identity",
    "open_store",
    "racy",
    "shared_folder",
    "store_files",
]

RULES = "1"  # what decode_image accepts; bump when that changes
SUFFIX = ".sqlite"
_BUSY_S = 60.0  # how long a write waits for another process's transaction
_LOOKUP = 500  # paths per query (SQLite allows 32,766 variables; old builds 999)
_COARSE_TICK_NS = 2_000_000_000  # whole-second stamps: FAT's 2 s
_FINE_TICK_NS = 100_000_000  # nanosecond stamps from a clock that ticks every 1-10 ms
_DAMAGED = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    device INTEGER NOT NULL,
    seen_ns INTEGER NOT NULL,
    sha256 TEXT,
    reason TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Identity(NamedTuple):
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int


class Row(NamedTuple):
    identity: Identity
    seen_ns: int
    sha256: str | None
    reason: str | None


def _s64(n: int) -> int:
    """An unsigned 64-bit number (an inode on some file systems) as SQLite's signed one."""
    return n - (1 << 64) if n >= 1 << 63 else n


def identity(st: os.stat_result) -> Identity:
    return Identity(st.st_size, st.st_mtime_ns, st.st_ctime_ns, _s64(st.st_ino), _s64(st.st_dev))


def racy(found: Identity, seen_ns: int) -> bool:
    """Could the file have changed within the tick of the ``stat`` taken at ``seen_ns``?"""
    coarse = found.mtime_ns % 1_000_000_000 == 0 and found.ctime_ns % 1_000_000_000 == 0
    tick = _COARSE_TICK_NS if coarse else _FINE_TICK_NS
    return max(found.mtime_ns, found.ctime_ns) >= seen_ns - tick


def _rules() -> str:
    import PIL

    return f"zoo-check {RULES}; Pillow {PIL.__version__}"


def store_files(db: Path) -> list[Path]:
    """A store's files that exist: the database, its WAL and shared-memory files."""
    names = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return [p for p in names if p.exists()]


def _remove(db: Path) -> None:
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)


class Store:
    """One data root's verdicts, open for one check."""

    def __init__(self, db: Path, conn: sqlite3.Connection) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = conn
        self.problem: str | None = None  # why caching stopped mid-run, said after the check
        self._damaged = False

    @property
    def usable(self) -> bool:
        return self._conn is not None

    def _failed(self, exc: sqlite3.Error) -> None:
        name = getattr(exc, "sqlite_errorname", "")
        self._damaged = self._damaged or name in _DAMAGED
        what = "is damaged: it starts anew next time" if self._damaged else "cannot be used"
        self.problem = (
            f"the image check's verdict store {self.db} {what} ({exc}); the rest of this "
            "check was not cached"
        )
        self.close()

    def lookup(self, paths: Sequence[str]) -> dict[str, Row]:
        """The rows of ``paths`` (those the store has)."""
        if self._conn is None:
            return {}
        out: dict[str, Row] = {}
        try:
            for start in range(0, len(paths), _LOOKUP):
                chunk = {os.fsencode(p): p for p in paths[start : start + _LOOKUP]}
                marks = ",".join("?" * len(chunk))
                query = (
                    "SELECT path, size, mtime_ns, ctime_ns, inode, device, seen_ns, sha256, "
                    f"reason FROM verdicts WHERE path IN ({marks})"
                )
                for key, *ident, seen, sha, reason in self._conn.execute(query, list(chunk)):
                    out[chunk[key]] = Row(Identity(*ident), seen, sha, reason)
        except sqlite3.Error as exc:
            self._failed(exc)
            return {}
        return out

    def remember(self, rows: Sequence[tuple[str, Identity, int, str | None, str | None]]) -> None:
        """Replace the rows of these files: (path, identity, seen_ns, sha256, reason)."""
        if self._conn is None or not rows:
            return
        values = [(os.fsencode(p), *ident, seen, sha, why) for p, ident, seen, sha, why in rows]
        try:
            with self._transaction() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values
                )
        except sqlite3.Error as exc:
            self._failed(exc)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self._conn is not None
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock now, waiting up to _BUSY_S
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # a Ctrl-C stays a Ctrl-C
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        if self._damaged:
            with contextlib.suppress(OSError):
                _remove(self.db)


def _write_ahead(conn: sqlite3.Connection) -> None:
    """Put the store in WAL mode. SQLite answers SQLITE_BUSY at once, without waiting
    through the busy timeout, when another process is switching a new store's mode at the
    same moment: asked again, with growing pauses, for up to ``_BUSY_S``."""
    deadline, pause = time.monotonic() + _BUSY_S, 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY" or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _connect(db: Path, root: str) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=_BUSY_S, isolation_level=None)
    try:
        _write_ahead(conn)
        conn.execute("PRAGMA synchronous=NORMAL")  # a cache: the last commits may go in a crash
        conn.executescript(_SCHEMA)
        rules, query = _rules(), "SELECT value FROM meta WHERE key = 'rules'"
        if conn.execute(query).fetchone() != (rules,):
            conn.execute("BEGIN IMMEDIATE")  # asked again under the lock: a process that
            if conn.execute(query).fetchone() != (rules,):  # began it meanwhile keeps its rows
                shown = root.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                conn.execute("DELETE FROM verdicts")
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('rules', ?), ('root', ?)",
                             (rules, shown))  # fmt: skip
            conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def shared_folder(paths: Sequence[str], fallback: str) -> str:
    """The deepest folder holding every path: a store's key, the same for a folder and
    for a CSV (wherever it lies, `zoo rank`'s manifests in a temporary folder too) that
    list the same files."""
    try:  # in string order, every path lies between the first and the last
        return os.path.commonpath([os.path.dirname(min(paths)), os.path.dirname(max(paths))])
    except ValueError:  # no paths
        return fallback


def open_store(root: str) -> tuple[Store | None, str | None]:
    """The store of data root ``root``, and a line to say (a damaged store begun anew, a
    store that cannot be opened); no store where the home cannot be written."""
    from zoo.disk.paths import ReadOnlyHomeError

    try:
        folder = subdir("data", "verdicts")
    except ReadOnlyHomeError:
        return None, None
    if not is_writable(folder):
        return None, None
    hold_caches()  # in use until this process exits: `zoo home prune` leaves it alone
    key = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    db = folder / f"{key}{SUFFIX}"
    said = None
    for attempt in (1, 2):
        try:
            conn = _connect(db, root)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") in _DAMAGED and attempt == 1:
                with contextlib.suppress(OSError):
                    _remove(db)
                said = f"the image check's verdict store {db} was damaged ({exc}): begun anew"
                continue
            return None, (
                f"the image check's verdict store {db} cannot be used ({exc}): this check "
                "reads every file"
            )
        with contextlib.suppress(OSError):
            os.utime(db)  # used now: `zoo home prune` goes by the time of last use
        return Store(db, conn), said
    return None, said  # pragma: no cover - the loop returns


def describe(db: Path) -> str | None:
    """The data root a store holds verdicts of (for `zoo home prune`), None if unknown."""
    from urllib.parse import quote

    try:  # immutable: no lock, no WAL or shared-memory file made (a dry run writes nothing)
        conn = sqlite3.connect(f"file:{quote(str(db))}?immutable=1", uri=True)
    except sqlite3.Error:
        return None
    try:
        found = conn.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return str(found[0]) if found else None
