"""The lifetime of the data check's worker processes: they die with the process that
started them, and Ctrl-C stops them without a traceback of their own.

A worker process of ``concurrent.futures`` outlives a parent killed with SIGKILL (or by
the OOM killer): its call queue never closes, because every forked worker holds the
queue's write end too, so it waits forever, holding its memory. :func:`worker_init`
(the pool's initializer) asks Linux to SIGKILL the worker when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); elsewhere a watchdog thread polls the parent's pid.

Ctrl-C on a terminal reaches the whole process group. A worker handles it only while it
is working on a file (the file's atomic write then cleans up after itself) and from then
on skips whatever it is still given, so the parent's pool shuts down at once; the
parent alone says what was interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["guarded", "interrupt_workers", "worker_init"]

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_busy = False  # this worker is working on a file
_stopping = False  # an interrupt came: skip what is still queued


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the request took effect
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="zoo-parent-watchdog", daemon=True).start()


def _on_interrupt(signum: int, frame: Any) -> None:
    global _stopping
    _stopping = True
    if _busy:
        raise KeyboardInterrupt


def worker_init(parent: int) -> None:
    """The pool's initializer: die with ``parent``; Ctrl-C only stops the work."""
    _die_with(parent)
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
