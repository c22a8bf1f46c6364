"""GPU inference: PyTorch eager vs torch.compile, and ONNX Runtime CUDA / TensorRT.

    python bench/gpu.py                  # on any CUDA host; about 2-4 minutes
    python bench/gpu.py --quick          # fewer repeats
    python bench/gpu.py --no-ddp         # without the DDP training rows (zoo finetune on
                                         # 1 GPU and on all N, images/s)

Self-contained: needs torch and timm; ONNX Runtime rows run when ``onnxruntime-gpu`` (with
CUDA and/or TensorRT providers) and ``onnx`` are installed. Models: timm's
tf_efficientnet_lite0 and resnet18 (random weights: speed does not depend on them),
batch 1 and 64, 224 px. Baseline: PyTorch eager, ``inference_mode``, ``channels_last``,
fp32; every other row is a ratio against it (> 1: faster), measured in this process on
the same input tensors, with CUDA synchronisation around each timed call.
Exits with a clear message (status 2) on a host without CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODELS = ("tf_efficientnet_lite0", "resnet18")
BATCHES = (1, 64)


def timed(fn: Any, repeats: int, sync: Any) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ort_rows(model: Any, name: str, x: Any, work: Path, repeats: int, sync: Any) -> list:
    """(label, seconds) for ORT CUDA and TensorRT, fp32 and fp16, where available."""
    try:
        import onnxruntime as ort
    except ImportError:
        return [("onnxruntime", "not installed (pip install onnxruntime-gpu)")]
    import torch

    available = ort.get_available_providers()
    wanted = [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in available]
    if not wanted:
        return [("onnxruntime", f"no GPU provider in this build ({', '.join(available)})")]
    path = work / f"{name}.onnx"
    if not path.exists():
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.float().cpu(),
                (torch.randn(2, *x.shape[1:]),),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
                input_names=["input"],
                output_names=["logits"],
            )
            program.save(str(path))
    rows = []
    x_np = x.float().cpu().numpy()
    for provider in wanted:
        for precision in ("fp32", "fp16"):
            label = f"ORT {provider.replace('ExecutionProvider', '')} {precision}"
            if provider == "TensorrtExecutionProvider":
                opts: dict[str, Any] = {
                    "trt_fp16_enable": precision == "fp16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(work / "trt"),
                    "trt_profile_min_shapes": f"input:1x{'x'.join(map(str, x.shape[1:]))}",
                    "trt_profile_max_shapes": f"input:64x{'x'.join(map(str, x.shape[1:]))}",
                    "trt_profile_opt_shapes": f"input:64x{'x'.join(map(str, x.shape[1:]))}",
                }
                providers: list[Any] = [(provider, opts), "CUDAExecutionProvider"]
                model_path = path  # TensorRT makes its own fp16 engine from the fp32 graph
            else:
                providers = [provider]
                model_path = path
                if precision == "fp16":
                    model_path = work / f"{name}-fp16.onnx"
                    if not model_path.exists():
                        try:
                            _to_fp16(path, model_path)
                        except Exception as exc:
                            rows.append((label, f"fp16 conversion failed: {exc}"))
                            continue
            try:
                so = ort.SessionOptions()
                so.log_severity_level = 3
                sess = ort.InferenceSession(str(model_path), so, providers=providers)
                if sess.get_providers()[0] != provider:
                    rows.append((label, f"{provider} did not load (got {sess.get_providers()})"))
                    continue
                binding = sess.io_binding()
                x_dev = ort.OrtValue.ortvalue_from_numpy(x_np, "cuda", 0)
                binding.bind_ortvalue_input("input", x_dev)
                binding.bind_output("logits", "cuda")

                def run(sess: Any = sess, binding: Any = binding) -> None:
                    sess.run_with_iobinding(binding)

                rows.append((label, timed(run, repeats, sync)))
            except Exception as exc:  # a provider that fails to build is reported, not fatal
                rows.append((label, f"failed: {str(exc).splitlines()[0][:120]}"))
    return rows


def _to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    try:
        import onnx_ir as ir

        model = ir.from_proto(half)
        model.graph.sort()
        ir.save(model, str(dst))
    except ImportError:
        onnx.save(half, str(dst))


def versions() -> str:
    import torch

    parts = [
        f"torch {torch.__version__}",
        f"CUDA {torch.version.cuda}",
        f"cuDNN {torch.backends.cudnn.version()}",
    ]
    try:
        import timm

        parts.append(f"timm {timm.__version__}")
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        parts.append(f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())})")
    except ImportError:
        parts.append("onnxruntime not installed")
    try:
        import tensorrt

        parts.append(f"TensorRT {tensorrt.__version__}")
    except ImportError:
        pass
    return "; ".join(parts)


def inference(args: argparse.Namespace, work: Path, repeats: int) -> None:
    """Eager vs torch.compile vs ONNX Runtime CUDA/TensorRT (fp32, fp16), per model and
    batch; each row a ratio against eager."""
    import timm
    import torch

    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    print(f"{'model':<22}{'batch':>6}  {'engine':<26}{'ms':>9}{'img/s':>10}{'vs eager':>10}")
    for name in MODELS:
        cpu_model = timm.create_model(name, pretrained=False).eval()
        eager = copy.deepcopy(cpu_model).to(device, memory_format=torch.channels_last)
        compiled = None if args.no_compile else torch.compile(eager)
        for batch in BATCHES:
            gen = torch.Generator().manual_seed(batch)
            x_cpu = torch.randn(batch, 3, 224, 224, generator=gen)
            x = x_cpu.to(device).contiguous(memory_format=torch.channels_last)

            def run_eager(x: Any = x, eager: Any = eager) -> None:
                with torch.inference_mode():
                    eager(x)

            base = timed(run_eager, repeats, sync)
            rows: list[tuple[str, Any]] = [("PyTorch eager fp32", base)]
            if compiled is not None:

                def run_compiled(x: Any = x, compiled: Any = compiled) -> None:
                    with torch.inference_mode():
                        compiled(x)

                try:
                    rows.append(("torch.compile fp32", timed(run_compiled, repeats, sync)))
                except Exception as exc:  # report, keep measuring the rest
                    rows.append(("torch.compile fp32", f"failed: {exc}"[:120]))
            rows += ort_rows(cpu_model, name, x_cpu, work, repeats, sync)
            for label, value in rows:
                if isinstance(value, str):
                    print(f"{name:<22}{batch:>6}  {label:<26}{value}")
                    continue
                print(
                    f"{name:<22}{batch:>6}  {label:<26}{value * 1e3:>9.2f}"
                    f"{batch / value:>10.0f}{base / value:>9.2f}x",
                    flush=True,
                )


# ---------------------------------------------------------------- DDP training (issue 16)
# zoo's own training loop under torchrun, one process per GPU (NCCL): training images/s
# on 1 GPU and on all N of them, the same per-GPU batch (weak scaling). Needs zoo's
# dependencies (run from a checkout: the subprocesses get the repository on PYTHONPATH).

DDP_MODEL = "timm:resnet18"


def _ddp_images(root: Path, classes: int, per_class: int, size: int) -> Path:
    """Class folders of noisy PNGs tinted per class (learnable; decoding is not timed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        tint = rng.integers(0, 160, 3)
        for i in range(per_class):
            pixels = (rng.integers(0, 96, (size, size, 3)) + tint).clip(0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:05d}.png")
    return root


def ddp_training(
    quick: bool,
    *,
    device: str = "cuda",
    counts: list[int] | None = None,
    model: str = DDP_MODEL,
    image_size: int = 224,
    per_gpu: int | None = None,
) -> list[tuple[int, float]]:
    """(processes, training images/s of the last epoch) for 1 and N GPUs; prints them."""
    import json
    import math
    import subprocess

    import torch

    repo = Path(__file__).resolve().parents[1]
    n = torch.cuda.device_count() if device == "cuda" else 2
    counts = counts or ([1] if n == 1 else [1, n])
    per_gpu = per_gpu or (32 if quick else 64)
    steps = 8 if quick else 30  # steps per epoch at the largest count
    classes = 4
    train = per_gpu * max(counts) * steps
    per_class = math.ceil(train / classes / 0.8) + 1  # + the 20% validation split
    rows: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="zoo-ddp-bench-") as tmp:
        data = _ddp_images(Path(tmp) / "data", classes, per_class, image_size + 32)
        env = dict(os.environ, CI="true", ZOO_HOME=str(Path(tmp) / "home"))
        env["PYTHONPATH"] = os.pathsep.join(
            [str(repo), str(repo / "plugins"), env.get("PYTHONPATH", "")]
        )
        for k in counts:
            cmd = [
                sys.executable, "-m", "zoo", "finetune", model, str(data),
                "--strategy", "full", "--random-init", "--epochs", "2",
                "--image-size", str(image_size), "--batch-size", str(per_gpu * k),
                "--device", device, "--nproc-per-node", str(k), "--name", f"ddp-bench-{k}",
                "--json",
            ]  # fmt: skip
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{'zoo finetune DDP':<22}{k:>6}  failed: {tail[:160]}", flush=True)
                continue
            last = json.loads(proc.stdout)["history"][-1]  # epoch 2: warmed up
            rows.append((k, float(last["images_per_second"])))
    base = rows[0][1] if rows and rows[0][0] == 1 else None
    print(
        f"# DDP training: zoo finetune {model} --strategy full, {image_size} px, batch "
        f"{per_gpu} per GPU, {train} training images, epoch 2 of 2"
    )
    for k, ips in rows:
        scale = f"{ips / base:>9.2f}x ({ips / base / k:.0%} of linear)" if base else ""
        label = "1 GPU" if k == 1 else f"{k} GPUs, DDP over NCCL"
        print(f"{'zoo finetune DDP':<22}{k:>6}  {label:<26}{'':>9}{ips:>10.0f}{scale}")
    return rows


def ddp(args: argparse.Namespace, work: Path, repeats: int) -> None:
    """DDP training images/s on 1 and N GPUs (skipped with --no-ddp)."""
    if not args.no_ddp:
        ddp_training(args.quick)


# The measurements main() runs, in order; each prints its own table. Add one by writing a
# function (args, work folder, repeats) -> None and listing it here.
MEASUREMENTS: list[Callable[[argparse.Namespace, Path, int], None]] = [inference, ddp]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-ddp", action="store_true", help="skip the DDP training rows")
    # torch.compile uses its default mode: max-autotune would take most of the time budget.
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device is visible to torch on this host "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); run it on a "
            "machine with an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2
    repeats = 10 if args.quick else 50
    device = torch.device("cuda")
    props = torch.cuda.get_device_properties(device)
    print(f"# GPU: {props.name} ({props.total_memory / 2**30:.0f} GiB), host {platform.node()}")
    print(f"# {versions()}")
    print(f"# reproduce: python bench/gpu.py{' --quick' if args.quick else ''}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-bench-") as tmp:
        work = Path(tmp)
        os.makedirs(work / "trt", exist_ok=True)
        for measure in MEASUREMENTS:  # independent: one that fails does not stop the next
            try:
                measure(args, work, repeats)
            except Exception as exc:
                print(f"# {measure.__name__} failed: {str(exc).splitlines()[0][:160]}")
    print(f"# total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
