"""CLI behaviour shared by every command: start-up cost, help, errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

from clihelp import run_zoo
from zoo.errors import EXIT_CODES


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from zoo.cli import run\n"
        "for args in (['--help'], ['plugins'], ['plugins', '--json']):\n"
        "    assert run(args) == 0\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'torchvision', 'mlflow', 'onnx',\n"
        "    'onnxruntime', 'huggingface_hub', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stderr


def test_help_lists_commands_and_the_exit_code_table() -> None:
    result = run_zoo("--help")
    assert result.returncode == 0
    for command in ("list", "info", "strategies", "plugins"):
        assert f"  {command} " in result.stdout
    assert "5 refused for licence" in result.stdout


def test_usage_errors_exit_2_in_one_line() -> None:
    result = run_zoo("list", "--no-such-flag")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--no-such-flag" in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = run_zoo("--debug", "info", "timm:nonexistent-arch")
    assert result.returncode == 3
    assert "Traceback" in result.stderr


def test_exit_code_table_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} |" in doc, f"exit code {code} ({meaning}) missing from docs/cli.md"
