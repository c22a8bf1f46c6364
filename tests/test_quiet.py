"""What reaches the terminal is zoo's own: no MLflow migration lines, no tqdm bars, no
ONNX Runtime provider warnings, on a fresh zoo home and a real pseudo-terminal.

`zoo export`, `zoo serve` and `zoo ui` are held to an allow-list: every line on the
terminal must have one of the shapes zoo prints (or be a rich progress row); any other
line fails the test, whoever printed it.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.finetune_helpers import make_images
from tests.registry_backends import free_port, port_taken
from tests.serving_setup import PHOTOS, group_members, post, server_group

REPO = Path(__file__).resolve().parents[1]

# Lines other libraries print when left alone (MLflow's alembic migration, its artifact
# progress bars, mlflow.onnx's provider warning on hosts without CUDA).
FOREIGN = (
    "Creating initial MLflow database tables",
    "Updating database tables",
    "Downloading artifacts",
    "Uploading artifacts",
    "CUDAExecutionProvider",
    "INFO mlflow",
    "WARNING mlflow",
    "alembic",
    "it/s]",  # any tqdm bar
)


def _on_a_terminal(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    """Run ``python -m zoo ARGS`` with stdout and stderr on one pseudo-terminal, as a
    user's shell would, and return everything written there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=cwd,
    )
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"zoo {' '.join(args)} ran past {timeout:.0f} s")
    finally:
        os.close(master)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


# ------------------------------------------------------------------ the allow-list

URL = r"http://127\.0\.0\.1:\d+"
PATH = r"/\S+"
MODEL = r"models:/[\w.-]+/\d+"
# A rich progress row: description, bar, count or size, time left (zoo/progress.py).
PROGRESS = r".+ [━╸╺ ]+ (\d+/\d+|[\d.]+/[\d.]+ [kMG]?B)( [-\d:]+)?"
# `zoo export`'s progress line, one step after another (a rich spinner on a terminal):
# each shape is one step zoo.deploy.export, zoo_onnx.export or zoo_onnx.int8 names.
SPINNER = r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] export: "
GATE = r"ONNX Runtime \w+(, \w+)* against PyTorch on \d+"
EXPORT_STEPS = tuple(
    SPINNER + step
    for step in (
        r"starting \(PyTorch, the exporters\)",
        r"building the model and reading its weights",
        rf"reading the images in {PATH}",
        r"decoding \d+ validation and \d+ calibration images",
        r"converting to ONNX \(torch\.onnx\.export, (dynamo|legacy TorchScript: dynamo failed)\)",
        r"checking the graph \(onnx\.checker, shape inference\)",
        rf"fp32 gate: {GATE} inputs",
        r"converting to fp16",
        rf"fp16 gate: {GATE} inputs",
        r"int8: preparing the graph \(quant_pre_process\)",
        r"int8: quantizing, calibrated on \d+ images",
        r"int8: the first layers' sensitivity \(\d+ layers, \d+ probe images\)",
        r"int8: quantizing with \d+ first layer\(s\) in float",
        r"int8: bias correction on \d+ images, then quantizing again",
        r"int8: activation SNR before and after \(qdq_loss_debug\)",
        rf"int8 gate: {GATE} validation images",
        r"benchmark: ONNX Runtime against PyTorch eager, batch \d+( and \d+)?",
        r"registering it as a version of [\w.-]+\.onnx",
    )
)
EXPORT_LINES = (
    rf"zoo: loading {MODEL}",
    rf"zoo: checking on the training data recorded for {MODEL}: {PATH}",
    rf"zoo: check set: (all \d+|\d+ of the \d+) validation images and \d+ calibration "
    rf"images from {PATH}",
    rf"zoo: exporting {MODEL} to onnx \(fp32\)",
    rf"exported {MODEL} -> {PATH}",
    r"  exporter: torch\.onnx\.export \(.+\)",
    r"  parity \(fp32, batches [\d, ]+\): max \|error\| \S+, top-1 agreement [\d.]+% on \d+ "
    r"(real|random) inputs",
    r"  gates ran on: \w+(, \w+)*",
    r"  batch \d+: ONNX Runtime [\d.]+x PyTorch eager",
    rf"  registered: {MODEL} \(licence [\w.-]+\)",
    PROGRESS,
    *EXPORT_STEPS,
)
SERVE_LINES = (
    rf"zoo: starting MLflow's model server for tiny on {URL} \.\.\.",
    r"zoo: serving tiny\.onnx v1 \(the newest ONNX export of models:/tiny/1\) on "
    rf"{URL}/invocations",
    rf"zoo: Ctrl-C stops it; its log: {PATH}",
    r"zoo: stopping the model server",
    r"zoo: stopped the model server",
)
UI_LINES = (
    rf"zoo: starting the MLflow UI on {URL} \.\.\.",
    rf"zoo: MLflow UI on {URL}",
    rf"zoo: Ctrl-C stops it; its log: {PATH}",
    r"zoo: stopping the MLflow UI",
    r"zoo: stopped the MLflow UI",
)
# Terminal control sequences (colours, cursor moves of live progress), not text.
_CONTROL = re.compile(
    r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][A-Z0-9]|\x1b[=>78]"
)


def screen_lines(raw: str) -> list[str]:
    """The lines a user sees: control sequences removed, split at every line end and
    carriage return (a redrawn progress row is one line per redraw), blanks dropped."""
    text = _CONTROL.sub("", raw)
    return [line.rstrip() for line in re.split(r"\r\n|\r|\n", text) if line.strip()]


def foreign(raw: str, shapes: tuple[str, ...]) -> list[str]:
    """Lines of ``raw`` that match none of zoo's ``shapes``."""
    return [line for line in screen_lines(raw) if not any(re.fullmatch(s, line) for s in shapes)]


def test_the_allow_list_refuses_lines_zoo_does_not_print() -> None:
    """The check itself: zoo's lines and a redrawn progress row pass; warnings, log
    lines, tracebacks and MLflow's own notes do not."""
    ok = (
        "zoo: loading models:/tiny/1\r\n"
        "\x1b[32m⠙\x1b[0m export: converting to ONNX (torch.onnx.export, dynamo)\r\x1b[2K"
        "\x1b[32m⠹\x1b[0m export: fp32 gate: ONNX Runtime CPU against PyTorch on 16 inputs\r"
        "\x1b[2K\x1b[1Aexporting ━━━━━━╸          3/7 0:00:02\r"
        "exporting ━━━━━━━━━━━━━━━━ 7/7 0:00:00\r\n"
        "  registered: models:/tiny.onnx/1 (licence apache-2.0)\r\n"
    )
    assert foreign(ok, EXPORT_LINES) == []
    stray = [
        "/x/mlflow/pyfunc/utils/data_validation.py:187: UserWarning: \x1b[33mAdd type hints\x1b[0m",
        "2026/12/05 18:02:00 \x1b[32mINFO\x1b[0m:     Started server process [5027]",
        "Registry store URI not provided. Using backend store URI.",
        'INFO:     127.0.0.1:43014 - "GET /health HTTP/1.1" 200 OK',
        "Traceback (most recent call last):",
        "⠙ export: Downloading artifacts",  # a spinner row of a step zoo does not name
    ]
    found = foreign("\r\n".join(stray) + "\r\n", EXPORT_LINES + SERVE_LINES + UI_LINES)
    assert len(found) == len(stray)


class Terminal:
    """``python -m zoo ARGS`` on a pseudo-terminal (stdin, stdout and stderr), leading a
    process group as a shell's foreground job does."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        master, slave = pty.openpty()
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zoo", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)
        self.raw = bytearray()

    @property
    def text(self) -> str:
        return self.raw.decode(errors="replace")

    def _read(self, wait: float) -> bool:
        """Read what is there; False once the terminal is closed."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return self.proc.poll() is None
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its side
            return False
        self.raw += chunk
        return bool(chunk)

    def wait_for(self, pattern: str, timeout: float) -> bool:
        """True once a screen line matches ``pattern``; False if the terminal closes or
        ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while not any(re.fullmatch(pattern, line) for line in screen_lines(self.text)):
            if time.monotonic() > deadline or not self._read(1.0):
                return False
        return True

    def read_until(self, pattern: str, timeout: float) -> None:
        if not self.wait_for(pattern, timeout):
            self.kill()
            pytest.fail(f"zoo {' '.join(self.args)}: no line {pattern!r}:\n{self.text}")

    def ctrl_c(self) -> None:
        """What a terminal's Ctrl-C does: SIGINT to the foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def finish(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(1.0):
            pass
        if self.proc.poll() is None and time.monotonic() > deadline:
            self.kill()
            pytest.fail(f"zoo {' '.join(self.args)} ran past {timeout:.0f} s:\n{self.text}")
        os.close(self.master)
        return self.proc.wait(timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


def _on_a_free_port(
    args: list[str], env: dict[str, str], cwd: Path, ready: str, tries: int = 3
) -> tuple[Terminal, int]:
    """`zoo ARGS --port P` on a terminal, once it prints a line matching ``ready``. A port
    free when chosen may be taken before zoo binds it (zoo refuses it in one line): a
    fresh port, ``tries`` times in all."""
    for attempt in range(tries):
        port = free_port()
        term = Terminal([*args, "--port", str(port)], env, cwd)
        if term.wait_for(ready, 600):
            return term, port
        term.kill()
        term.finish(60)  # closes its side of the terminal
        if not port_taken(term.text) or attempt + 1 == tries:
            pytest.fail(f"zoo {' '.join(term.args)}: no line {ready!r}:\n{term.text}")
    raise AssertionError("unreachable")


def _assert_only_zoo_lines(raw: str, shapes: tuple[str, ...], what: str) -> None:
    stray = foreign(raw, shapes)
    assert not stray, (
        f"{what} printed lines zoo does not print:\n" + "\n".join(stray) + f"\n--- all:\n{raw}"
    )


def _server_log(raw: str) -> list[str]:
    """The lines of the server's log that zoo names on the terminal."""
    (path,) = re.findall(r"its log: (\S+)", _CONTROL.sub("", raw))
    return Path(path).read_text(errors="replace").splitlines()


# What MLflow's CLI echoes at every `mlflow server` start (click.echo, which no logging
# setting reaches): the only line the UI's log may hold.
UI_LOG_LINES = (r"\[MLflow\] Security middleware enabled.*",)


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return int(response.status)


def _terminal_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CI", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_TRACKING_URI",
                     "MLFLOW_REGISTRY_URI", "MLFLOW_LOGGING_LEVEL", "PYTHONWARNINGS"}
    }  # fmt: skip
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "plugins"), env.get("PYTHONPATH", "")]),
        TERM="xterm",
        COLUMNS="200",
    )
    return env


@pytest.mark.slow
def test_finetune_export_serve_and_ui_on_a_fresh_home_print_only_zoo_lines(
    tmp_path: Path,
) -> None:
    """In order, as the README runs them, on a fresh zoo home: `zoo finetune` (no MLflow
    migration lines, no tqdm bars), `zoo export` of the version it registered, `zoo
    serve` of the export (answering a good and a refused request, with 2 workers), then
    `zoo ui` (answering pages and API calls), each stopped by Ctrl-C. Only zoo's lines
    reach the terminal; the URL is printed once it answers; after Ctrl-C no process of
    the server's group is left; nothing is written into the working folder."""
    import base64

    data = make_images(tmp_path / "data", classes=2, per_class=6, size=(32, 32))
    env = _terminal_env()
    env["ZOO_HOME"] = str(tmp_path / "fresh-home")
    trained = _on_a_terminal(
        ["finetune", "timm:test_resnet", str(data), "--epochs", "1", "--name", "tiny",
         "--random-init", "--image-size", "32"],
        env, tmp_path, timeout=300,
    )  # fmt: skip
    assert "models:/tiny/1" in trained
    found = [line for line in trained.splitlines() if any(f in line for f in FOREIGN)]
    assert not found, f"zoo finetune printed foreign lines: {found}"

    export = Terminal(["export", "models:/tiny/1", "--out", str(tmp_path / "onnx")], env, tmp_path)
    assert export.finish(900) == 0, export.text
    _assert_only_zoo_lines(export.text, EXPORT_LINES, "zoo export")
    found = [line for line in screen_lines(export.text) if any(f in line for f in FOREIGN)]
    assert not found, f"zoo export printed foreign lines: {found}"
    assert "registered: models:/tiny.onnx/1" in export.text
    shown = screen_lines(export.text)  # the long steps are on the spinner line as they run
    for step in ("converting to ONNX", "fp32 gate", "registering it"):
        assert any(re.match(SPINNER + step, line) for line in shown), step

    ready = rf"zoo: serving tiny\.onnx v1 .* on {URL}/invocations"
    serve, port = _on_a_free_port(["serve", "tiny", "--workers", "2"], env, tmp_path, ready)
    group = server_group(serve.proc.pid)
    assert len(group_members(group)) >= 4  # mlflow's CLI, uvicorn, its 2 workers
    image = base64.b64encode(PHOTOS[0].read_bytes()).decode("ascii")
    url = f"http://127.0.0.1:{port}/invocations"
    status, answer = post(url, {"dataframe_split": {"columns": ["image"], "data": [[image]]}})
    assert status == 200, answer
    assert answer["predictions"][0]["class"] in {"class0", "class1"}
    status, answer = post(url, {"dataframe_records": [{"path": "cat.png"}]})
    assert status == 400 and "ZOO_SERVE_ROOT" in answer  # refused: the server names no root
    serve.ctrl_c()
    assert serve.finish(120) == 0, serve.text
    assert group_members(group) == [], "processes of the model server outlived Ctrl-C"
    _assert_only_zoo_lines(serve.text, SERVE_LINES, "zoo serve")
    # MLflow and uvicorn log warnings and errors only: two requests, two worker starts
    # and a shutdown leave nothing (no access log, no INFO, no import-time warning).
    assert _server_log(serve.text) == []

    ui, port = _on_a_free_port(["ui"], env, tmp_path, rf"zoo: MLflow UI on {URL}")
    assert _get(f"http://127.0.0.1:{port}/health") == 200  # it answers once printed
    group = server_group(ui.proc.pid)
    assert _get(f"http://127.0.0.1:{port}/") == 200
    search = "/ajax-api/2.0/mlflow/registered-models/search?max_results=10"
    assert _get(f"http://127.0.0.1:{port}{search}") == 200
    ui.ctrl_c()
    assert ui.finish(120) == 0, ui.text
    assert group_members(group) == [], "processes of the MLflow UI outlived Ctrl-C"
    _assert_only_zoo_lines(ui.text, UI_LINES, "zoo ui")
    logged = _server_log(ui.text)
    assert all(any(re.fullmatch(s, line) for s in UI_LOG_LINES) for line in logged), logged
    assert screen_lines(ui.text)[0].startswith("zoo: starting the MLflow UI on")
    assert not (tmp_path / "mlruns").exists()  # nothing in the working folder either
