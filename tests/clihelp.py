"""Run the real `zoo` CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import prefork

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE_PLUGINS = FIXTURES / "plugins"  # zoo_example + deliberately broken plugins
DUPLICATE_PLUGIN = FIXTURES / "duplicate"


def run_zoo(
    *args: str,
    env: Mapping[str, str] | None = None,
    plugin_paths: Iterable[Path] = (),
    timeout: float = 300,
    input: str | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`python -m zoo ARGS` with the test's environment (ZOO_HOME etc.) plus ``env``.

    ``plugin_paths`` go on PYTHONPATH: folders holding a plugin module and its
    ``*.dist-info`` with entry_points.txt, which importlib.metadata discovers for real.
    The process is forked from an interpreter that has imported torch, MLflow and the
    like once (tests/prefork.py); ``fresh=True`` starts a new interpreter instead, for a
    test of what a new process prints or imports.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    paths = [str(p) for p in plugin_paths]
    if paths:
        full_env["PYTHONPATH"] = os.pathsep.join([*paths, full_env.get("PYTHONPATH", "")])
    if not fresh and prefork.enabled():
        return prefork.run(["-m", "zoo", *args], env=full_env, timeout=timeout, input=input)
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input,
    )


def show_rows(capsys: Any, ref: str) -> dict[str, str]:
    """``zoo registry show REF``'s rows, run in this process (key -> value; a value
    folded onto the next lines joined with spaces)."""
    import re

    from zoo.cli import run

    capsys.readouterr()
    assert run(["registry", "show", ref]) == 0
    rows: dict[str, str] = {}
    key = ""
    for line in capsys.readouterr().out.splitlines():
        row = re.match(r"^ ?(\S.*?)\s{2,}(\S.*)$", line)
        if row:
            key, rows[row[1]] = row[1], row[2].strip()
        elif key and line.strip():
            rows[key] += " " + line.strip()
    return rows


def modules_imported_by(code: str, modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in {tuple(modules)!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))
