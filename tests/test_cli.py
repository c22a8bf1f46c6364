"""CLI behaviour shared by every command: start-up cost, help, errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from clihelp import modules_imported_by, run_zoo
from zoo.contract.errors import EXIT_CODES


def test_help_imports_no_heavy_library() -> None:
    code = (
        "from zoo.cli import run\n"
        "for args in (['--help'], ['plugins'], ['plugins', '--json']):\n"
        "    assert run(args) == 0\n"
    )
    heavy = ("torch", "timm", "torchvision", "mlflow", "onnx", "onnxruntime")
    assert modules_imported_by(code, (*heavy, "huggingface_hub", "transformers")) == []


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


def _example(*args: str) -> subprocess.CompletedProcess[str]:
    """``zoo ARGS`` with only the example plugin, stdout a pipe, COLUMNS unset."""
    from clihelp import EXAMPLE_PLUGINS

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["ZOO_LOAD_PLUGINS"] = "example"
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE_PLUGINS), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_tables_in_a_pipe_keep_each_row_on_one_line() -> None:
    """rich would wrap at 80 columns in a pipe, folding the source URL onto lines of
    its own; as `ls -l` and `kubectl get` do, a piped row stays whole (grep finds it)."""
    result = _example("list")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if "example:tiny.v" in line]
    assert len(rows) == 2
    for row, url in zip(rows, ("tiny-v1", "tiny-v2"), strict=True):
        assert f"https://example.invalid/{url}" in row, result.stdout
    listed = _example("list", "--json")  # --json is what it was
    assert listed.stdout.startswith('{\n  "schema_version": 1,')


def test_info_leaves_out_what_is_not_stated() -> None:
    """A field the weights do not state (ImageNet top-1, mean, std...) is not shown as
    an empty row; --json keeps every field, null where unknown."""
    import json

    result = _example("info", "example:tiny.v2")
    assert result.returncode == 0, result.stderr
    keys = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"reference", "license", "input_size", "num_classes"} <= keys
    assert not keys & {"imagenet_top1", "mean", "std", "crop_pct"}, result.stdout
    doc = json.loads(_example("info", "example:tiny.v2", "--json").stdout)
    assert doc["model"]["imagenet_top1"] is None and doc["model"]["mean"] is None


# the variables by which MLflow (mlflow/telemetry/utils.py) takes a process for CI or a
# test run, and turns its telemetry off by itself
_CI_MARKERS = (
    "PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL",
    "TRAVIS", "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE",
    "TEAMCITY_VERSION", "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME",
    "RUNBOT_WORKER_ID", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK",
)  # fmt: skip


def test_mlflow_telemetry_stays_off_in_a_users_zoo_command(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in _CI_MARKERS}
    env["ZOO_HOME"] = str(tmp_path / "home")
    code = (
        "import os\n"
        "from zoo.cli import run\n"
        "rc = run(['registry', 'list'])\n"
        "import mlflow.telemetry.client as t\n"  # imported by the command, on its terms
        "print(rc, t.get_telemetry_client() is None, os.environ['MLFLOW_DISABLE_TELEMETRY'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-3:] == ["0", "True", "true"], proc.stdout + proc.stderr
