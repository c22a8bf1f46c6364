"""The data check's decode workers live no longer than `zoo finetune`: SIGKILL of the
command (an OOM kill, a closed session) takes them with it, and Ctrl-C ends the check in
one line saying what was interrupted (exit 130), with no traceback from any worker.

The command runs through a small driver that holds every worker inside its first file
(it writes its pid and sleeps), so the test acts while the workers certainly exist,
however loaded the machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from finetune_helpers import make_images

from faults.helpers import expect_error, registered, zoo_env

WORKERS = 2
DRIVER = """
import os, sys, time
from pathlib import Path
from zoo.data import check

def held(*args):
    Path(sys.argv[1], str(os.getpid())).write_text("checking")
    time.sleep(600)

check._check_one = held
from zoo.cli import run
sys.exit(run(sys.argv[2:]))
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def held_check(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """`zoo finetune` whose WORKERS decode workers are all held in the check."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to find the worker processes")
    data = make_images(tmp_path / "data", classes=2, per_class=30, size=(16, 16))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"workers: {WORKERS}\n", encoding="utf-8")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    held = tmp_path / "held"
    held.mkdir()
    argv = ["finetune", "timm:test_resnet", str(data), "--random-init", "--epochs", "1",
            "--image-size", "32", "--config", str(recipe), "--name", "orphans"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, str(driver), str(held), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=zoo_env(),
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while len(workers) < WORKERS:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.1)
            workers = sorted(int(p.name) for p in held.iterdir())
        assert all(_parent_of(pid) == proc.pid for pid in workers)
        yield proc, workers
    finally:
        for pid in [proc.pid, *workers]:  # only what this test started
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait(30)


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def test_sigkill_during_the_image_check_takes_the_decode_workers_with_it(
    held_check: tuple[subprocess.Popen[str], list[int]],
) -> None:
    proc, workers = held_check
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert _gone_within(workers, 20) == [], "decode workers outlived their parent"


def test_ctrl_c_during_the_image_check_says_what_was_interrupted(
    held_check: tuple[subprocess.Popen[str], list[int]],
) -> None:
    proc, workers = held_check
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    _, err = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    expect_error(result, 130, "interrupted while checking the images", "nothing was",
                 "run the same command again")  # fmt: skip
    assert "KeyboardInterrupt" not in err, err[-3000:]
    assert _gone_within(workers, 20) == []
    assert registered() == []
