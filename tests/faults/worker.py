"""A zoo command in a separate process that pauses at one write, for the SIGKILL cases.

    python tests/faults/worker.py import SENTINEL CHECKPOINT NAME
    python tests/faults/worker.py export SENTINEL REF OUT

``import`` pauses once the staged weights are written (before the folder is renamed into
``local/``); ``export`` pauses once the staged ONNX file and its sidecar are written
(before registration and the move into --out). At the pause the worker writes SENTINEL
and sleeps; the test SIGKILLs it there, as a crash or an OOM kill would.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def _pause(sentinel: str) -> None:
    Path(sentinel).write_text("paused", encoding="utf-8")
    time.sleep(600)


def main() -> None:
    mode, sentinel, *args = sys.argv[1:]
    from zoo.cli import run

    if mode == "import":
        from zoo.catalog import imports

        original = imports.save_safetensors

        def paused_save(*a: Any, **kw: Any) -> None:
            original(*a, **kw)
            _pause(sentinel)

        imports.save_safetensors = paused_save  # type: ignore[assignment]
        ckpt, name = args
        argv = ["import", ckpt, "--arch", "timm:test_resnet", "--license", "mit", "--name", name]
    elif mode == "export":
        from zoo.deploy import export

        original_sidecar = export._write_sidecar

        def paused_sidecar(*a: Any, **kw: Any) -> Path:
            path = original_sidecar(*a, **kw)
            _pause(sentinel)
            return path

        export._write_sidecar = paused_sidecar  # type: ignore[assignment]
        ref, out = args
        argv = ["export", ref, "--out", out, "--no-benchmark"]
    else:
        raise SystemExit(f"unknown mode {mode}")
    raise SystemExit(run(argv))


if __name__ == "__main__":
    main()
