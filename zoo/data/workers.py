"""The lifetime of zoo's worker processes (the data check's pool, a DDP process's
decoding workers): how they start, that they die with the process that started them,
and that Ctrl-C stops them without a traceback of their own.

How they start (:func:`pool_context`, :func:`avoid_fork`): a fork copies every lock of
every thread of the parent in whatever state it is in. A single ``zoo`` process forks
its workers, as torch's DataLoader does by default; a torchrun worker has gloo's threads
(and torch's), and a child of one once hung for good in os.fork's after-fork clean-up.
Once it joins its process group it starts its workers from a forkserver instead: a
single-threaded process that imported torch and zoo's data code once and forks each
worker from itself.

Dying with the starter (:func:`die_with`): a worker process of ``concurrent.futures``
outlives a parent killed with SIGKILL (or by the OOM killer): its call queue never
closes, because every forked worker holds the queue's write end too, so it waits
forever, holding its memory. A forkserver's children are worse off: their parent is the
forkserver, which lives while any of them does. A worker whose parent is the starter
asks Linux to SIGKILL it when the parent dies (``prctl(PR_SET_PDEATHSIG)``); any other
waits on the starter's pidfd in a daemon thread (elsewhere: polls its pid).

Ctrl-C on a terminal reaches the whole process group. A worker handles it only while it
is working on a file (the file's atomic write then cleans up after itself) and from then
on skips whatever it is still given, so the parent's pool shuts down at once; the
parent alone says what was interrupted.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = [
    "avoid_fork",
    "checking_pool",
    "die_with",
    "forks",
    "forkserver",
    "guarded",
    "interrupt_workers",
    "pool_context",
    "worker_init",
]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_busy = False  # this worker is working on a file
_stopping = False  # an interrupt came: skip what is still queued


# what the workers run, imported once by the forkserver rather than by every worker
_PRELOAD = ["torch", "zoo.data.check", "zoo.data.samples"]


def forkserver() -> Any:
    """multiprocessing's forkserver context, preloaded with what zoo's workers run."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


_AVOID_FORK = [False]


def avoid_fork() -> None:
    """From now on this process starts its workers from a forkserver: it has threads
    that a fork would copy mid-work (a torchrun worker, once it joined its process
    group). Scripts that call zoo from Python then need the usual
    ``if __name__ == "__main__"`` guard, as with any forkserver or spawn start."""
    _AVOID_FORK[0] = True


def forks() -> bool:
    """Whether this process starts its workers by forking itself."""
    return not _AVOID_FORK[0]


def pool_context() -> Any:
    """How this process starts the data check's workers: a fork (no ``__main__`` guard
    needed in scripts, as with torch's DataLoader) unless :func:`avoid_fork` was called
    (then a forkserver); spawn where there is no fork."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("fork") if forks() else forkserver()


def die_with(pid: int) -> None:
    """In a worker: end (exit code 1) as soon as process ``pid``, its starter, ends."""
    if os.getppid() == pid and sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != pid:  # the parent died before the request took effect
                os._exit(1)
            return
    threading.Thread(target=_end_after, args=(pid,), name="zoo-starter-watch", daemon=True).start()


def _end_after(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+, or already gone
        while _alive(pid):
            time.sleep(1.0)
    else:
        select.select([fd], [], [])  # readable once the process has ended
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # a PermissionError: it exists, someone else's
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _on_interrupt(signum: int, frame: Any) -> None:
    global _stopping
    _stopping = True
    if _busy:
        raise KeyboardInterrupt


def worker_init(parent: int) -> None:
    """The pool's initializer: die with ``parent``; Ctrl-C only stops the work."""
    die_with(parent)
    signal.signal(signal.SIGINT, _on_interrupt)


def guarded(fn: Callable[..., T], *args: Any) -> T:
    """Run one job in a worker (or inline, where nothing is installed: a plain call)."""
    global _busy
    if _stopping:
        raise KeyboardInterrupt
    _busy = True
    try:
        return fn(*args)
    finally:
        _busy = False


def interrupt_workers(workers: Iterable[Any]) -> None:
    """Pass an interrupt on to worker processes (``multiprocessing`` processes) that the
    terminal did not signal themselves (``kill -INT`` of the parent alone)."""
    for process in workers:
        pid = getattr(process, "pid", None)
        if pid:
            with contextlib.suppress(OSError):  # gone already
                os.kill(pid, signal.SIGINT)


@contextlib.contextmanager
def checking_pool(workers: int) -> Iterator[Any]:
    """A ``ProcessPoolExecutor`` of ``workers`` check workers that die with this process
    (``worker_init``). On Ctrl-C, a failure or a consumer that stops early, what has not
    started is dropped and the workers' current files are stopped (they skip the rest),
    then they are waited for."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=pool_context(),
        initializer=worker_init,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except BaseException:
        interrupt_workers(p for p in multiprocessing.active_children() if p not in others)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
