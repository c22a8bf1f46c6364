"""Shared by the fault suite: run zoo as a user would, and check the promised outcome.

Every failing case promises the same four things: the documented exit code, exactly one
line ``zoo: error: ...`` naming the problem and the fix, no traceback, and nothing
registered. The store invariant (no version pointing at missing or altered artifacts) is
checked after every test by the autouse fixture in conftest.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import prefork
from clihelp import run_zoo

WORKER = Path(__file__).with_name("worker.py")

__all__ = [
    "WORKER",
    "expect_error",
    "expect_error_in_process",
    "kill_at_pause",
    "read_only",
    "readonly_mounts_work",
    "registered",
    "run_zoo",
    "run_zoo_readonly",
    "with_limits",
    "zoo_env",
]


def zoo_env(**extra: str) -> dict[str, str]:
    """The test's environment for subprocesses: plain output, one thread."""
    env = dict(os.environ)
    env.update(CI="true", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _check_err(err: str, words: Sequence[str]) -> str:
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("zoo: error:")]
    assert len(errors) == 1, err[-3000:]
    line = errors[0]
    assert "unexpected" not in line, line
    for word in words:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def expect_error(
    proc: subprocess.CompletedProcess[str], code: int | tuple[int, ...], *words: str
) -> str:
    """Exit ``code``, one `zoo: error:` line holding every word in ``words``, no traceback."""
    codes = code if isinstance(code, tuple) else (code,)
    assert proc.returncode in codes, (proc.returncode, proc.stderr[-3000:])
    return _check_err(proc.stderr, words)


def expect_error_in_process(
    argv: list[str], capsys: pytest.CaptureFixture[str], code: int | tuple[int, ...], *words: str
) -> str:
    """Like :func:`expect_error` through ``zoo.cli.run`` (no interpreter start: faster)."""
    from zoo.cli import run

    capsys.readouterr()
    got = run(argv)
    err = capsys.readouterr().err
    codes = code if isinstance(code, tuple) else (code,)
    assert got in codes, (got, err[-3000:])
    return _check_err(err, words)


def registered(name: str | None = None) -> list[str]:
    """models:/NAME/N of every registered version (of ``name``); [] without a store."""
    from zoo.registry import store

    if store.is_embedded() and not store.embedded_exists():
        return []
    from zoo.registry import list_versions

    return [v.model_uri for v in list_versions(name)]


def kill_at_pause(args: Sequence[str], sentinel: Path, *, env: dict[str, str] | None = None) -> Any:
    """Run tests/faults/worker.py ARGS; SIGKILL it once it writes ``sentinel``."""
    # forked from tests/prefork.py's interpreter: torch and MLflow imported once
    proc = prefork.start([str(WORKER), *args], env=env or zoo_env(), stderr_to_stdout=True)
    deadline = time.monotonic() + 300
    while not sentinel.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"worker exited with {proc.returncode} before pausing: {out[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("worker never reached its pause point")
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return proc


def read_only(
    home: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m zoo ARGS` with ``home`` (its ``ZOO_HOME``) mounted read-only."""
    env = zoo_env(ZOO_HOME=str(home), **(extra_env or {}))
    return run_zoo_readonly(*args, readonly=[home], env=env)


def _cannot(why: str) -> None:
    """Skip where a read-only mount cannot be made; under CI=true fail instead."""
    if os.environ.get("CI", "").lower() in {"1", "true"}:
        pytest.fail(why)
    pytest.skip(why)


def with_limits(fsize: int) -> Callable[[], Any]:
    """A ``preexec_fn`` capping the size of any file the child writes (disk full)."""

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap: EFBIG

    return apply


_READONLY = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do mount --bind "$1" "$1" && '
    'mount -o remount,bind,ro "$1" || exit 97; shift; n=$((n-1)); done; exec "$@"'
)


def _readonly_argv(argv: Sequence[str], readonly: Sequence[Path]) -> list[str]:
    """``argv`` in a private mount namespace where each of ``readonly`` is a read-only
    bind mount of itself: a real read-only file system (EROFS), which even root cannot
    write, unlike a chmod."""
    paths = [str(p) for p in readonly]
    return ["unshare", "--mount", "sh", "-c", _READONLY, "sh", str(len(paths)), *paths, *argv]


def readonly_mounts_work() -> bool:
    """Can this machine make read-only bind mounts (unshare + mount, root or a user ns)?"""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        _readonly_argv(["true"], [Path(os.getcwd())]), capture_output=True, timeout=60
    )
    return probe.returncode == 0


def run_zoo_readonly(
    *args: str, readonly: Sequence[Path], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m zoo ARGS` with every folder in ``readonly`` mounted read-only."""
    if not readonly_mounts_work():
        _cannot("needs read-only bind mounts (unshare --mount as root)")
    argv = _readonly_argv([sys.executable, "-m", "zoo", *args], readonly)
    return subprocess.run(
        argv, capture_output=True, text=True, env=env or zoo_env(), timeout=timeout
    )
