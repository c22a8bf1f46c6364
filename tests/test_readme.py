"""The README is one story that works: its command blocks, read from README.md at test time,
run in order in a fresh zoo home and an empty folder, offline, and each command exits 0.

A block that cannot run here carries ``<!-- readme-test: skip (REASON) -->`` on the line
above its fence, with one of the reasons below; every other ```sh block runs. The blocks
share one folder and one ZOO_HOME, so a later block sees what an earlier one made (the
story's data set, the imported checkpoint, v1 before v2), and a README edit that breaks
the story (a name nothing registers, a flag that is gone, a step out of order) fails here.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import prefork

README = Path(__file__).parents[1] / "README.md"

# Why a block may be kept out; a new reason is a deliberate change to this list.
SKIP_REASONS = {
    "the install",
    "the test command itself",
    "service set-up",
    "needs the Hub",
    "a server that blocks",
    "the int8 gate needs more images",  # the story's small set has near-ties int8 flips
}
_BLOCK = re.compile(
    r"(?:^<!-- readme-test: (?P<marker>[^\n]*?) -->\n)?^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$",
    re.M | re.S,
)
_MARKER = re.compile(r"skip \((?P<reason>[^)]+)\)")


@dataclass(frozen=True)
class Block:
    line: int  # of README.md, 1-based, of the block's first command
    commands: tuple[tuple[int, str], ...]  # (README line, command with its continuations)
    skip: str | None  # the reason, when marked


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in _BLOCK.finditer(text):
        first = text.count("\n", 0, match.start("body")) + 1
        marker = match.group("marker")
        skip = None
        if marker is not None:
            found = _MARKER.fullmatch(marker)
            assert found, f"README.md:{first - 2}: marker {marker!r} is not 'skip (REASON)'"
            skip = found.group("reason")
            assert skip in SKIP_REASONS, f"README.md:{first - 2}: unknown skip reason {skip!r}"
        assert match.group("lang") == "sh", f"README.md:{first - 1}: a command block is ```sh"
        commands: list[tuple[int, str]] = []
        pending: list[str] = []
        for offset, line in enumerate(match.group("body").splitlines()):
            if not pending and not line.strip():
                continue
            pending.append(line.removesuffix("\\"))
            if not line.endswith("\\"):  # a command ends where its continuations end
                commands.append((first + offset - len(pending) + 1, " ".join(pending)))
                pending = []
        assert not pending, f"README.md:{first}: a block ends in a line continuation"
        blocks.append(Block(first, tuple(commands), skip))
    return blocks


def test_every_marker_names_its_reason_and_sits_above_a_block() -> None:
    text = README.read_text(encoding="utf-8")
    markers = re.findall(r"<!-- readme-test:[^\n]*-->", text)
    blocks = readme_blocks(text)
    assert len(markers) == sum(b.skip is not None for b in blocks), (
        "a readme-test marker that is not on the line right above a ```sh fence"
    )
    ran = [b for b in blocks if b.skip is None]
    assert len(ran) >= 6 and sum(len(b.commands) for b in ran) >= 20, "the story shrank"
    # the README's own two commands are what CI runs (.ci/run), and they are kept out here
    skipped = {c for b in blocks if b.skip for _, c in b.commands}
    assert any(c.startswith("python -m pip install -e") for c in skipped)
    assert any(c.startswith("python -m pytest ") or c == "python -m pytest" for c in skipped)


def _shims(folder: Path) -> Path:
    """`zoo` and `python` on PATH are this interpreter (a venv's or the checkout's).

    `zoo` runs forked from tests/prefork.py's preloaded interpreter: its commands,
    environment, folder, streams, signals and exit status are the shell's, without
    seconds of imports each (what a fresh process prints is test_quiet.py's)."""
    folder.mkdir()
    zoo = "-m zoo"
    if prefork.enabled():
        zoo = f'"{Path(prefork.__file__).resolve()}" client -m zoo'
    for name, line in (("zoo", zoo), ("python", "")):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {line} "$@"\n', encoding="utf-8")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~21 commands, 8 of them train or export; a loaded CI machine
def test_the_readme_runs_in_order_offline(tmp_path: Path, zoo_home: Path) -> None:
    from zoo.testdata import require_openclipart

    require_openclipart()  # the story lays out the project's own test images
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ)
    env.update(prefork.torchrun_env())  # the socket of `zoo`'s stand-in, torchrun's workers
    env.update(
        PATH=os.pathsep.join([str(_shims(tmp_path / "bin")), env.get("PATH", "")]),
        HF_HUB_OFFLINE="1",  # the conftest already points HF_ENDPOINT at a closed port
        PYTHONUNBUFFERED="1",
    )
    ran: list[str] = []
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        if block.skip:
            continue
        for line, command in block.commands:
            t0 = time.perf_counter()
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            ran.append(f"README.md:{line} ({time.perf_counter() - t0:.0f} s): {command}")
            assert done.returncode == 0, (
                f"README.md:{line}: `{command}` exited {done.returncode}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\nran before it:\n"
                + "\n".join(ran[:-1])
            )
    print("\n".join(ran))
    # zoo wrote nothing into the current folder: what is there, the story made by hand
    assert sorted(p.name for p in work.iterdir()) == ["clipart"]
    assert any(zoo_home.iterdir())


def test_testdata_layout_keeps_the_first_n_images_of_each_category(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first command, on a stand-in for the fetched package."""
    from zoo import testdata

    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / testdata.PACKAGE).mkdir(parents=True)
    (tmp_path / "data" / testdata.PACKAGE / ".complete").write_text("stand-in\n")
    for i, category in enumerate(testdata.CATEGORIES):
        folder = testdata.openclipart_root() / category / "nested"
        folder.mkdir(parents=True)
        for j in range(3):
            (folder / f"{j}.png").write_bytes(bytes([i, j]))  # distinct: none left out
    dest = tmp_path / "clipart"
    assert testdata.main(["layout", str(dest), "--per-class", "2"]) == 0
    assert capsys.readouterr().out == f"zoo.testdata: 8 classes, 16 images in {dest}\n"
    assert sorted(p.name for p in (dest / "food").iterdir()) == ["nested__0.png", "nested__1.png"]
    assert (dest / "food" / "nested__0.png").resolve().parent.name == "nested"
    for bad in (["--per-class", "0"], ["--per-class", "x"], ["--per-cls", "2"]):
        assert testdata.main(["layout", str(tmp_path / "other"), *bad]) == 2
        assert "usage: layout DIR [--per-class N]" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
