"""The rooms' floors (docs/architecture.md) are enforced by import-linter's contracts in
pyproject.toml: they hold on the tree, and an upward import breaks them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter", reason="pip install import-linter (the dev extra has it)")


def _lint(cwd: Path, pythonpath: str) -> subprocess.CompletedProcess[str]:
    script = "import sys; from importlinter.cli import lint_imports_command as c; c()"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_tree_keeps_every_contract() -> None:
    plugins = [ROOT / "plugins", ROOT / "plugins/zoo-effnet-lite", ROOT / "plugins/zoo-peft"]
    plugins += [ROOT / "plugins/zoo-webdataset", ROOT / "plugins/zoo-hfdatasets"]
    done = _lint(ROOT, ":".join(map(str, [ROOT, *plugins])))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_a_room_importing_a_higher_floor_breaks_the_layers_contract(tmp_path: Path) -> None:
    """A copy of zoo/ with one module of the bottom room importing the CLI."""
    shutil.copytree(ROOT / "zoo", tmp_path / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "zoo" / "contract" / "upward.py").write_text("import zoo.cli\n")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layers = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["zoo"]\n\n[[tool.importlinter.contracts]]\n'
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in layers.items()),
        encoding="utf-8",
    )
    done = _lint(tmp_path, str(tmp_path))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" in done.stdout and "zoo.contract.upward -> zoo.cli" in done.stdout


def test_a_loop_module_reaching_mlflow_through_another_module_breaks_its_contract(
    tmp_path: Path,
) -> None:
    """A copy of zoo/ whose run state imports the store inside a function: no loop
    module imports mlflow itself, yet the loop now reaches it (indirect imports count)."""
    shutil.copytree(ROOT / "zoo", tmp_path / "zoo", ignore=shutil.ignore_patterns("__pycache__"))
    state = tmp_path / "zoo" / "engine" / "state.py"
    state.write_text(
        state.read_text(encoding="utf-8") + "\n\ndef _log() -> None:\n"
        "    from zoo.registry import store  # noqa: F401\n",
        encoding="utf-8",
    )
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    loop = next(
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c["type"] == "forbidden" and "zoo.engine.run" in c["source_modules"]
    )
    assert loop["allow_indirect_imports"] is False and "mlflow" in loop["forbidden_modules"]
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["zoo"]\ninclude_external_packages = true\n\n'
        "[[tool.importlinter.contracts]]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in loop.items()),
        encoding="utf-8",
    )
    done = _lint(tmp_path, str(tmp_path))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" in done.stdout and "zoo.engine.state -> zoo.registry.store" in done.stdout
