"""Run an MLflow server for a user, quietly: ``zoo ui`` and ``zoo serve``.

The server runs in a process group of its own, its output in a log file (MLflow and
uvicorn are told to log warnings and errors only: :func:`zoo.registry.server.quiet_env`),
so the terminal holds zoo's lines alone: that it is starting, the URL once the server
answers it, and one error line with the log's last line if it stops first. SIGINT
(Ctrl-C), SIGTERM and SIGHUP stop the whole group, workers included: SIGTERM first (a
graceful shutdown), SIGKILL for what is left after a grace period or a second signal.
Nothing of the group outlives the command; if zoo itself is killed, the kernel sends the
server SIGTERM (Linux: ``PR_SET_PDEATHSIG``) and MLflow passes it on.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from zoo.contract.errors import UsageError, ZooError

__all__ = [
    "Server",
    "check_port",
    "first_error",
    "group_alive",
    "log_path",
    "run_quietly",
    "stop_group",
    "url_of",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_S = 20.0  # SIGTERM to SIGKILL
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Server:
    """What to run and how to talk about it."""

    command: list[str]
    env: Mapping[str, str]
    probe_url: str  # answers HTTP 200 once the server is up
    log: Path
    what: str  # "the MLflow UI", "the model server"
    ready: tuple[str, ...]  # zoo's lines once it answers


def url_of(host: str, port: int, path: str = "") -> str:
    """``http://HOST:PORT/PATH`` (IPv6 hosts in brackets; a wildcard host as loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def log_path(name: str) -> Path:
    """``$ZOO_HOME/logs/NAME.log`` (rewritten at each start), or the temporary folder's
    when the home is read-only."""
    from zoo.disk.paths import ReadOnlyHomeError, is_writable, subdir

    try:
        folder = subdir("logs")
        if is_writable(folder):
            return folder / f"{name}.log"
    except ReadOnlyHomeError:
        pass
    return Path(tempfile.gettempdir()) / f"zoo-{os.getuid()}-{name}.log"


def check_port(host: str, port: int) -> None:
    """Refuse a port another process listens on, before a server takes a minute to find
    out (bound as uvicorn binds it: SO_REUSEADDR, so a port in TIME_WAIT is free)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(
            f"cannot listen on {host}: {exc.strerror}; give an address or a host name"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {host} is in use: stop what listens there, or pick "
                    "another port with --port"
                ) from None
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror})") from None


def run_quietly(server: Server, say: Callable[[str], None]) -> None:
    """Start ``server``, say its ``ready`` lines once ``probe_url`` answers, and run until a
    stop signal (then stop its group and return) or until it stops by itself (a ZooError
    quoting the log's first error, exit 1)."""
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        with _started(server, received) as proc:
            answered = False
            while not received:
                code = proc.poll()
                if code is not None:
                    when = "while serving" if answered else "before it answered"
                    raise ZooError(
                        f"{server.what} stopped {when} (exit {code}): {first_error(server.log)} "
                        f"(its log: {server.log})"
                    )
                if not answered and _answers(server.probe_url):
                    answered = True
                    for line in server.ready:
                        say(line)
                    continue
                time.sleep(0.5)
            say(f"stopping {server.what}")
        say(f"stopped {server.what}")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _started(server: Server, received: list[int]) -> Iterator[subprocess.Popen[bytes]]:
    """The server's process, its group stopped on the way out whatever happened."""
    server.log.parent.mkdir(parents=True, exist_ok=True)
    with server.log.open("wb") as log:
        proc = subprocess.Popen(
            server.command,
            env=dict(server.env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the terminal's Ctrl-C reaches zoo only
            preexec_fn=_die_with_parent(),  # one libc call (prctl), no locks taken
        )
    try:
        yield proc
    finally:
        stop_group(proc, received)


def stop_group(proc: subprocess.Popen[bytes], received: list[int] | None = None) -> None:
    """SIGTERM to the process group; SIGKILL after :data:`GRACE_S` or at a further stop
    signal; return once no process of the group is left."""
    pgid = proc.pid
    already = len(received) if received is not None else 0
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    killed = False
    while True:
        proc.poll()  # reap the leader: a zombie still counts as a member
        if not group_alive(pgid):
            break
        impatient = received is not None and len(received) > already
        if not killed and (impatient or time.monotonic() > deadline):
            _signal_group(pgid, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + GRACE_S
        elif killed and time.monotonic() > deadline:
            break  # unkillable (uninterruptible sleep): nothing more a user process can do
        time.sleep(0.2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Is any process of group ``pgid`` running (zombies, already dead, do not count)?"""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in {"Z", "X"}:
            return True
    return False


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: the child gets SIGTERM when zoo dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_death_signal


def _answers(url: str) -> bool:
    """A 200 from ``url`` within 2 s, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def first_error(log: Path, limit: int = 300) -> str:
    """The line of the log that says what went wrong first: the first line logged at ERROR
    or CRITICAL, or the exception ending the first traceback (its chained causes
    included), else the last line. A server's log often ends with a wrapper's traceback
    (``mlflow models serve``: "Command ... returned non zero return code") that names no
    cause; the first failure does."""
    try:
        with log.open("rb") as fh:
            text = fh.read(1 << 20).decode(errors="replace")
    except OSError:
        return "its log cannot be read"
    lines = [_ANSI.sub("", line).rstrip() for line in text.splitlines()]
    lines = [line for line in lines if line.strip()]
    found = _first_error(lines) or (lines[-1] if lines else "its log is empty")
    found = " ".join(found.split())
    return found if len(found) <= limit else found[: limit - 3] + "..."


_CHAINED = ("The above exception was the direct cause", "During handling of the above exception")
_LEVEL = re.compile(r"\b(ERROR|CRITICAL)\b")


def _first_error(lines: list[str]) -> str | None:
    ending: str | None = None  # the exception line of the traceback chain being read
    linked = frames = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            if ending is not None and not linked:
                return ending  # an unrelated traceback follows a complete chain
            frames, linked = True, False
        elif line.startswith(_CHAINED):
            linked = True
        elif frames and line[0].isspace():
            continue  # a frame of the traceback
        elif frames:
            ending, frames, linked = line, False, False
        elif ending is not None:
            return ending  # other output follows a complete chain
        elif _LEVEL.search(line):
            return line
    return ending
