"""Start the test suite's Python processes from a preloaded interpreter (issue 24).

A `zoo` process spends seconds importing torch, NumPy, SciPy, scikit-learn, MLflow and
ONNX Runtime before it does anything, and the suite starts hundreds of them. Here one
server per test process (each xdist worker) imports those libraries once and forks a
child for each command: the child takes the caller's arguments, environment, working
directory and standard streams (passed over a Unix socket), then runs ``python -m
MODULE`` or ``python SCRIPT`` as the interpreter would, in a process of its own (its own
session and process group, a real pid that signals reach, a real exit status). What it
does not repeat is the imports.

What differs from a fresh interpreter, and why that is safe for the tests that use it:

- The preloaded libraries were imported with the server's environment. None of them
  reads the variables the tests change (ZOO_*, HF_*, MLFLOW_TRACKING_URI, COLUMNS) at
  import time; the libraries that do (huggingface_hub, timm, transformers, peft) are
  not preloaded, nor is zoo itself (a test may put another checkout or plugins first on
  PYTHONPATH: the child rebuilds sys.path from its own PYTHONPATH, as `python` does).
- Warnings or log lines the preloaded libraries print while importing went to the
  server's stderr, not the child's: tests that check what a fresh process prints or
  imports (test_quiet.py, the import checks of test_cli.py and test_catalog.py) start
  real interpreters (``fresh=True`` or their own subprocess calls). The README's story
  and the golden outputs check exit codes and JSON documents, which do not depend on it.

Shell scripts and torchrun reach the server through a stand-in client (``prefork.py
client -m zoo ...``, and :func:`torchrun_env`'s ``PYTHON_EXEC`` for torchrun's workers):
it passes its own streams, environment and signals to the forked child, ends as the
child ended, and the child dies with it (torchrun SIGKILLs a worker that outlives its
grace; a SIGKILL cannot be passed on).

``ZOO_TEST_PREFORK=0`` turns it off (every call starts a fresh interpreter).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# imported by the server before it forks anything: the slow part of every zoo process.
# Not ONNX Runtime: it starts a thread at import, and a forked child hangs for good in its
# C++ exit handlers (found here: pthread_cond_destroy waiting on that thread's condvar).
PRELOAD = (
    "numpy",
    "torch",
    "torch.nn",
    "scipy.linalg",
    "sklearn.linear_model",
    "PIL.Image",
    "safetensors.torch",
    "mlflow",
    "mlflow.tracking",
    "onnx",
    "rich.console",
    "click",
    "pluggy",
)
_HEADER = struct.Struct("!I")


def enabled() -> bool:
    return os.environ.get("ZOO_TEST_PREFORK", "1") != "0" and hasattr(os, "pidfd_open")


# ---------------------------------------------------------------- client side


class Forked:
    """A forked child, as much of ``subprocess.Popen`` as the tests use: ``pid``,
    ``stdout`` / ``stderr`` (text pipes, or None), ``poll``, ``wait``, ``communicate``,
    ``kill``, ``send_signal``, ``returncode``."""

    def __init__(self, conn: socket.socket, pid: int, stdin: Any, stdout: Any, stderr: Any):
        self._conn = conn
        self.pid = pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self._buffer = b""

    def _read_status(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        self._conn.settimeout(timeout)
        try:
            while b"\n" not in self._buffer:
                chunk = self._conn.recv(64)
                if not chunk:
                    raise RuntimeError("the prefork server went away")
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            return None
        self.returncode = int(self._buffer.split(b"\n", 1)[0].split()[1])
        self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._read_status(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._read_status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(["prefork", str(self.pid)], timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def communicate(
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str | None, str | None]:
        """Write ``input``, read both pipes to the end, wait; on timeout the child's
        process group is killed and TimeoutExpired raised (as subprocess.run does)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.stdin is not None:
            writer = threading.Thread(target=_feed, args=(self.stdin, input or ""), daemon=True)
            writer.start()
        streams = {s.fileno(): s for s in (self.stdout, self.stderr) if s is not None}
        chunks: dict[int, list[bytes]] = {fd: [] for fd in streams}
        with selectors.DefaultSelector() as sel:
            for fd in streams:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self._kill_group()
                    raise subprocess.TimeoutExpired(["prefork", str(self.pid)], timeout or 0)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        sel.unregister(key.fd)
                        streams[key.fd].close()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            self.wait(left)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise
        texts = [b"".join(chunks[fd]).decode("utf-8", "replace") for fd in streams]
        out = texts[0] if self.stdout is not None else None
        err = texts[-1] if self.stderr is not None else None
        return out, err

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, RuntimeError):
            self.wait(30)


def _feed(stream: Any, text: str) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        stream.write(text.encode("utf-8"))
        stream.close()


_SERVER: dict[str, Any] = {}
_LOCK = threading.Lock()


def server_socket() -> str:
    """The path of this process's server, started on first use."""
    with _LOCK:
        proc = _SERVER.get("proc")
        if proc is not None and proc.poll() is None:
            return str(_SERVER["path"])
        folder = Path(tempfile.mkdtemp(prefix="zoo-prefork-"))
        path = folder / "socket"
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
        proc = subprocess.Popen(
            [sys.executable, __file__, "serve", str(path)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "server.log", "wb"),  # noqa: SIM115 - lives as long as it
            start_new_session=True,  # Ctrl-C on pytest's terminal does not reach it
        )
        deadline = time.monotonic() + 600
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (folder / "server.log").read_text(errors="replace")
                raise RuntimeError(f"the prefork server did not start: {log[-2000:]}")
            time.sleep(0.05)
        _SERVER.update(proc=proc, path=path)
        atexit.register(_stop_server, proc)
        return str(path)


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)


def spawn(
    target: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdin: bool = False,
    stderr_to_stdout: bool = False,
) -> Forked:
    """Start ``python *target`` (``["-m", "zoo", ...]`` or ``[SCRIPT, ...]``) forked
    from the server, its stdout and stderr on pipes (stderr into stdout when asked)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(server_socket())
    read_out, write_out = os.pipe()
    read_err, write_err = (None, None) if stderr_to_stdout else os.pipe()
    if stdin:
        read_in, write_in = os.pipe()
    else:
        read_in, write_in = os.open(os.devnull, os.O_RDONLY), None
    header = json.dumps(
        {
            "argv": list(target),
            "env": dict(os.environ if env is None else env),
            "cwd": str(cwd or os.getcwd()),
        }
    ).encode("utf-8")
    fds = [read_in, write_out, write_err if write_err is not None else write_out]
    socket.send_fds(conn, [_HEADER.pack(len(header)) + header], fds)
    for fd in {read_in, write_out, *(x for x in (write_err,) if x is not None)}:
        os.close(fd)
    pid = _read_pid(conn)
    return Forked(
        conn,
        pid,
        os.fdopen(write_in, "wb") if write_in is not None else None,
        _text(read_out),
        _text(read_err) if read_err is not None else None,
    )


def _text(fd: int) -> io.TextIOWrapper:
    """A text pipe, as Popen(text=True) gives (communicate reads its fd directly)."""
    return io.TextIOWrapper(io.FileIO(fd, "rb"), encoding="utf-8", errors="replace")


def start(
    target: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stderr_to_stdout: bool = False,
) -> Any:
    """:func:`spawn`, or where prefork is off a ``subprocess.Popen`` of ``python
    *target`` with the same pipes (text)."""
    if enabled():
        return spawn(target, env=env, cwd=cwd, stderr_to_stdout=stderr_to_stdout)
    return subprocess.Popen(
        [sys.executable, *target],
        env=None if env is None else dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr_to_stdout else subprocess.PIPE,
        text=True,
    )


def run(
    target: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run([sys.executable, *target], capture_output=True, text=True, ...)``
    from the preloaded server."""
    child = spawn(target, env=env, cwd=cwd, stdin=input is not None)
    out, err = child.communicate(input, timeout)
    return subprocess.CompletedProcess(
        [sys.executable, *target], child.returncode or 0, out or "", err or ""
    )


# ---------------------------------------------------------------- server side


def _serve(path: str) -> None:
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.disable()  # what the preload makes lives as long as the server and its children
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # a child's collections walk what it made, not the preloaded libraries
    gc.enable()
    base_path = [p for p in sys.path[1:] if p not in _pythonpath(os.environ)]
    me = os.getpid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".part")
    listener.listen(64)
    os.replace(path + ".part", path)  # clients connect once the name exists
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, ("accept", None))
    stop = False

    def _term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    parent = os.getppid()
    try:
        # the test process that started it may end without its atexit functions (xdist
        # ends its workers with os._exit; a SIGKILL): then the server ends on its own
        while not stop and os.getppid() == parent:
            for key, _ in sel.select(1.0):
                kind, data = key.data
                if kind == "accept":
                    conn, _ = listener.accept()
                    child = _start(conn, base_path)
                    if os.getpid() != me:  # the child: never back into this loop
                        for other in list(sel.get_map().values()):
                            if other.data[0] == "child":
                                os.close(other.data[1][1])
                                other.data[1][2].close()
                        for _, other_conn in _NEW:
                            other_conn.close()
                        sel.close()
                        listener.close()
                        child()
                        raise AssertionError("unreachable")
                elif kind == "child":
                    pid, pidfd, conn = data
                    sel.unregister(pidfd)
                    os.close(pidfd)
                    _, status = os.waitpid(pid, 0)
                    with contextlib.suppress(OSError):
                        conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
                    conn.close()
            _watch_new(sel)
    finally:
        if os.getpid() == me:
            with contextlib.suppress(OSError):
                os.unlink(path)


_NEW: list[tuple[int, socket.socket]] = []


def _watch_new(sel: selectors.BaseSelector) -> None:
    while _NEW:
        pid, conn = _NEW.pop()
        pidfd = os.pidfd_open(pid)
        sel.register(pidfd, selectors.EVENT_READ, ("child", (pid, pidfd, conn)))


def _pythonpath(env: Mapping[str, str]) -> list[str]:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _start(conn: socket.socket, base_path: list[str]) -> Any:
    """Receive one command and fork it; in the parent, remember the child and answer its
    pid; in the child, return what runs the command."""
    size = _HEADER.size
    # stdin, stdout, stderr, and from a stand-in client the end of a pipe it holds
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
    while len(msg) < size or len(msg) < size + _HEADER.unpack(msg[:size])[0]:
        more = conn.recv(1 << 20)
        if not more:
            break
        msg += more
    request = json.loads(msg[size:].decode("utf-8"))
    pid = os.fork()
    if pid == 0:
        conn.close()
        return lambda: _child(request, fds, base_path)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"pid {pid}\n".encode())
    _NEW.append((pid, conn))
    return None


def _child(request: dict[str, Any], fds: list[int], base_path: list[str]) -> None:
    import importlib
    import runpy

    os.setsid()
    streams, watch = fds[:3], fds[3:]
    for target, fd in enumerate(streams):
        os.dup2(fd, target)
    for fd in set(streams):
        if fd > 2:
            os.close(fd)
    for fd in watch:
        _die_with_client(fd)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(io.BufferedReader(_fd(0, "rb")))
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(_fd(1, "wb")),
        encoding="utf-8",
        line_buffering=unbuffered,
        write_through=unbuffered,
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(_fd(2, "wb")),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )
    _threads(os.environ)
    for name in ("stdin", "stdout", "stderr"):  # what the interpreter started with
        setattr(sys, f"__{name}__", getattr(sys, name))
    importlib.invalidate_caches()  # folders on PYTHONPATH may have changed since the preload
    argv = list(request["argv"])
    code: Any = 0
    try:
        if argv[0] == "-m":
            module, args = argv[1], argv[2:]
            sys.path[:] = [os.getcwd(), *_pythonpath(os.environ), *base_path]
            sys.argv = [module, *args]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            script = os.path.abspath(argv[0])
            sys.path[:] = [os.path.dirname(script), *_pythonpath(os.environ), *base_path]
            sys.argv = argv
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:
        traceback.print_exc()
        code = 1
    _exit(code)


def _die_with_client(fd: int) -> None:
    """A stand-in client (``_client``) holds the other end of the pipe ``fd`` reads and
    never writes to it: when the client ends, however it ends (torchrun SIGKILLs a worker
    that outlives its grace), the read sees the end of the pipe and this child's process
    group is killed, as the process the client stands in for would have been."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        os.killpg(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="prefork-client", daemon=True).start()


def _threads(env: Mapping[str, str]) -> None:
    """The thread counts a fresh interpreter would take from ``env``: OpenMP (torch) and
    the BLAS libraries read OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS when
    they are loaded, which in the server was before this child's environment existed."""
    raw = env.get("OMP_NUM_THREADS") or env.get("MKL_NUM_THREADS")
    count = int(raw) if raw and raw.isdigit() and int(raw) > 0 else len(os.sched_getaffinity(0))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    blas = env.get("OPENBLAS_NUM_THREADS") or raw
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(blas) if blas and blas.isdigit() and int(blas) > 0 else count)


def _fd(fd: int, mode: str) -> io.FileIO:
    return io.FileIO(fd, mode, closefd=False)


def _exit(code: Any) -> None:
    """End the child as the interpreter ends: wait for its non-daemon threads, run its
    atexit functions, flush; then os._exit, skipping the C exit handlers of libraries the
    server loaded (their threads did not survive the fork)."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        print(code, file=sys.stderr)
        status = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    finally:
        os._exit(status)


def _client(target: list[str]) -> None:
    """``python tests/prefork.py client -m zoo ARGS``: a stand-in for ``python -m zoo
    ARGS`` in a shell script (the README's story): this process's own standard streams
    go to the child, signals it gets are passed on, it exits as the child did, and the
    child dies with it (a SIGKILL cannot be passed on: the child watches a pipe whose
    other end only this process holds)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ["ZOO_TEST_PREFORK_SOCKET"])
    header = json.dumps({"argv": target, "env": dict(os.environ), "cwd": os.getcwd()})
    data = header.encode("utf-8")
    streams = [fd if _open(fd) else os.open(os.devnull, os.O_RDWR) for fd in (0, 1, 2)]
    watched, _held = os.pipe()  # the other end stays open here until this process ends
    socket.send_fds(conn, [_HEADER.pack(len(data)) + data], [*streams, watched])
    os.close(watched)
    child = Forked(conn, _read_pid(conn), None, None, None)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    code = child.wait()
    if code < 0:  # killed by a signal: end the same way
        if -code != signal.SIGKILL:  # (whose handler cannot be set, nor need be)
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def torchrun_env() -> dict[str, str]:
    """What makes torchrun start its workers forked from this process's server:
    ``PYTHON_EXEC``, torchrun's documented override of the interpreter it runs each
    worker with (``PYTHON_EXEC -u -m MODULE ARGS`` or ``PYTHON_EXEC -u SCRIPT ARGS``), set
    to a stand-in (``python``, below) that is a client of the server. torchrun watches,
    signals and kills the stand-in as it would the worker; the stand-in passes the
    signals on, the worker dies with it, and it ends as the worker ended. Empty where
    prefork is off."""
    if not enabled():
        return {}
    path = Path(server_socket())
    shim = path.with_name("python")
    if not shim.exists():
        text = f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" python "$@"\n'
        shim.with_suffix(".part").write_text(text, encoding="utf-8")
        shim.with_suffix(".part").chmod(0o755)
        shim.with_suffix(".part").replace(shim)
    return {"PYTHON_EXEC": str(shim), "ZOO_TEST_PREFORK_SOCKET": str(path)}


def _as_python(args: list[str]) -> None:
    """``python [-u] -m MODULE ARGS`` or ``python [-u] SCRIPT ARGS`` as a client of the
    server (``-u``: unbuffered, as PYTHONUNBUFFERED); any other command line is left to
    a real interpreter."""
    rest = list(args)
    if rest[:1] == ["-u"]:
        os.environ["PYTHONUNBUFFERED"] = "1"
        rest = rest[1:]
    if (rest[:1] == ["-m"] and len(rest) > 1) or (rest and not rest[0].startswith("-")):
        _client(rest)
    os.execv(sys.executable, [sys.executable, *args])


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _read_pid(conn: socket.socket) -> int:
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise RuntimeError("the prefork server refused the command")
        line += chunk
    return int(line.split()[1])


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        _serve(sys.argv[2])
    elif sys.argv[1:2] == ["client"]:
        _client(sys.argv[2:])
    elif sys.argv[1:2] == ["python"]:
        _as_python(sys.argv[2:])
