"""The CLI's `--json` outputs on the test fixtures, normalised: the behaviour that a
re-layout of the core (issue 23) must not change.

    python tests/golden/record.py            # prints every normalised output
    python tests/golden/record.py --write    # records them in tests/golden/outputs.json

tests/test_golden.py runs the same commands and compares with the recorded file. Only
the CLI is used (`python -m zoo ...` in a fresh home), never zoo's modules, so the same
script runs on the layout before and after a move. Normalised, and nothing else:
timestamps, MLflow run and logged-model ids, `seconds`-like fields (durations and
throughput, which the clock decides), temporary paths (and the run keys hashed from
them); and what float kernels decide: the size of the PyTorch/ONNX Runtime rounding noise
and the sha256 of files written from floats. The commands run on one thread, and the
test compares the floats left to 4 significant digits (tests/test_golden.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the shared image maker
RECORDED = HERE / "outputs.json"

# fields whose value the clock decides: durations, throughput, dates
CLOCK_KEYS = re.compile(
    r"^(seconds|timestamp|runtime_seconds)$|_seconds$|_per_second$|_ms$|^latency|_at$"
)
# the size of float rounding noise between PyTorch and ONNX Runtime: the kernels decide it
# (the gates' verdicts and top-1 agreement beside them are compared)
# what `--precision auto` trains in on a CPU depends on the CPU (bf16 autocast where it
# has native bf16 math: AVX512-BF16 / AMX), not on zoo's output format
CPU_PRECISIONS = {"fp32", "bf16-autocast"}
NOISE_KEYS = {"max_abs_error", "mean_abs_error", "max_rel_error", "parity_max_abs_error"}
RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")
MODEL_ID = re.compile(r"\bm-[0-9a-f]{32}\b")
# a run's folder and recipe key hash the data's (temporary) path
RECIPE_KEY = re.compile(r"(?<=runs/)[0-9a-f]{16}\b")
# files zoo writes from floats (trained weights, exports): the bits follow the CPU's kernels
SHA256 = re.compile(r"(?<!sha256:)\b[0-9a-f]{64}\b")
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
OTHER_TMP = re.compile(re.escape(tempfile.gettempdir()) + r"/zoo-[A-Za-z0-9_-]+")


def _weights(path: Path) -> Path:
    """timm's test_resnet with random weights from a fixed seed, as safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(3)
    state = timm.create_model("test_resnet", pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def normalise(value: Any, tmp: str, key: str = "") -> Any:
    # the lineage's library versions are the environment's (a fresh install takes the
    # newest releases its ranges admit: MLflow 3.17.2 when recorded, 3.18.0 on 2026-12-08);
    # zoo's own is compared
    if (
        key == "versions"
        and isinstance(value, dict)
        and all(isinstance(v, str) for v in value.values())
    ):
        return {k: v if k == "zoo" else "<installed>" for k, v in value.items()}
    if isinstance(value, dict):
        return {k: normalise(v, tmp, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, tmp, key) for v in value]
    if key and CLOCK_KEYS.search(key) and isinstance(value, (int, float, str)):
        return "<clock>"
    if key in NOISE_KEYS and isinstance(value, float):
        return "<float noise>"
    if key == "zoo.recipe_key":
        return "<recipe-key>"
    if key == "training_precision" and value in CPU_PRECISIONS:
        return "<the CPU's: " + " or ".join(sorted(CPU_PRECISIONS)) + ">"
    if isinstance(value, str):
        value = OTHER_TMP.sub("<tmp>", value.replace(tmp, "<tmp>"))
        value = MODEL_ID.sub("<model-id>", value)
        value = SHA256.sub("<sha256>", value)
        value = RUN_ID.sub("<run-id>", value)
        value = RECIPE_KEY.sub("<recipe-key>", value)
        return ISO_TIME.sub("<time>", value)
    return value


COMMANDS: list[tuple[str, list[str]]] = [
    ("import", ["import", "{tmp}/tiny.safetensors", "--arch", "timm:test_resnet",
                "--license", "mit", "--name", "tiny", "--json"]),
    ("list", ["list", "test_*", "--provider", "timm", "--json"]),
    ("list-local", ["list", "--provider", "local", "--json"]),
    ("info", ["info", "local:tiny", "--json"]),
    ("finetune-dry-run", ["finetune", "local:tiny", "{tmp}/data", "--strategy", "partial",
                          "--name", "golden", "--dry-run", "--json"]),
    ("finetune", ["finetune", "local:tiny", "{tmp}/data", "--strategy", "linear-probe",
                  "--epochs", "2", "--name", "golden", "--json"]),
    ("finetune-child", ["finetune", "models:/golden/1", "{tmp}/data", "--strategy", "full",
                        "--epochs", "1", "--name", "golden-child", "--json"]),
    ("registry-list", ["registry", "list", "--json"]),
    ("registry-show", ["registry", "show", "models:/golden-child/1", "--json"]),
    ("registry-lineage", ["registry", "lineage", "golden-child", "--json"]),
    ("export", ["export", "models:/golden/1", "--out", "{tmp}/export", "--no-benchmark",
                "--json"]),
    ("predict", ["predict", "models:/golden.onnx/1", "{tmp}/data/class1", "--top-k", "2",
                 "--json"]),
    ("registry-lineage-after-export", ["registry", "lineage", "golden", "--json"]),
]  # fmt: skip


def _zoo(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m zoo ARGV``, forked from tests/prefork.py's preloaded interpreter (the
    JSON documents compared here are what any zoo process prints)."""
    import prefork

    if prefork.enabled():
        return prefork.run(["-m", "zoo", *argv], env=env, timeout=900)
    return subprocess.run(
        [sys.executable, "-m", "zoo", *argv], env=env, capture_output=True, text=True, timeout=900
    )


def record() -> dict[str, Any]:
    """Runs every command in a fresh home; returns {name: {"rc", "json"}} normalised."""
    with tempfile.TemporaryDirectory(prefix="zoo-golden-") as tmp_dir:
        tmp = str(Path(tmp_dir).resolve())
        from finetune_helpers import make_images

        make_images(Path(tmp) / "data", classes=3, per_class=12, size=(36, 36))
        _weights(Path(tmp) / "tiny.safetensors")
        # one thread: the float results (losses, the bits of trained weights) then do not
        # depend on how many cores the machine has
        env = {**os.environ, "ZOO_HOME": f"{tmp}/home", "CI": "true", "NO_COLOR": "1"}
        env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("ZOO_TRACKING_URI", None)
        out: dict[str, Any] = {}
        for name, args in COMMANDS:
            argv = [a.replace("{tmp}", tmp) for a in args]
            proc = _zoo(argv, env)
            try:
                doc = json.loads(proc.stdout) if proc.stdout.strip() else None
            except json.JSONDecodeError:
                doc = {"stdout (not JSON)": proc.stdout}
            out[name] = normalise(
                {"command": ["zoo", *args], "rc": proc.returncode, "json": doc}, tmp
            )
            if proc.returncode != 0:
                out[name]["stderr"] = normalise(proc.stderr.strip().splitlines()[-1:], tmp)
        return out


def main() -> None:
    outputs = record()
    text = json.dumps(outputs, indent=1, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        RECORDED.write_text(text, encoding="utf-8")
        print(f"recorded {len(outputs)} outputs in {RECORDED}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
