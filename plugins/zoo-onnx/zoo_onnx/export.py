"""ONNX conversion and the parity gates an exported file must pass.

``export_onnx`` is what the ``onnx`` exporter plugin calls. It converts with the exporter
PyTorch recommends (``torch.onnx.export(dynamo=True)``, i.e. torch.export), falls back to
the legacy TorchScript exporter only when that fails (and says so), then proves the file:

1. ``onnx.checker`` with ``full_check=True`` and strict shape inference;
2. ONNX Runtime against eager PyTorch on the same inputs, in batches of 1, 2 and 7 (then
   16s), ``numpy.allclose(ort, torch, atol=1e-4, rtol=1e-3)``, and top-1 identical on
   every image when the check images are real;
3. fp16: top-1 agreement >= 99 %; int8 (static QDQ quantization calibrated on training
   images, zoo.deploy.onnx_int8): top-1 agreement >= 95 % and accuracy at most 2 points below
   fp32 on the validation split.

Every gate runs on each execution provider ``zoo predict`` may choose with the installed
onnxruntime (:func:`gate_providers`: CPU always, CUDA and TensorRT with onnxruntime-gpu),
each session opened as ``zoo predict`` opens it.

A failed gate raises :class:`zoo.IntegrityError`; the caller removes what was written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.contract.errors import IntegrityError, UsageError
from zoo.contract.types import CheckSet, ExportOptions, ExportResult

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import numpy as np
    import torch
    from torch import nn

    Step = Callable[[str], None]  # told what the export does now (ExportOptions.step)

__all__ = [
    "ATOL",
    "FP16_MIN_AGREEMENT",
    "INT8_MAX_ACCURACY_DROP",
    "INT8_MIN_AGREEMENT",
    "PRECISIONS",
    "REFERENCE",
    "RTOL",
    "benchmark",
    "check_onnx",
    "chunks",
    "export_onnx",
    "gate_providers",
    "to_onnx",
]

PRECISIONS = ("fp32", "fp16", "int8")
ATOL, RTOL = 1e-4, 1e-3  # the fp32 gate: numpy.allclose(ort, torch, atol, rtol)
FP16_MIN_AGREEMENT = 0.99
INT8_MIN_AGREEMENT = 0.95
INT8_MAX_ACCURACY_DROP = 0.02
PARITY_BATCHES = (1, 2, 7)  # then 16 at a time: batch 1, an even and an odd size always run
INPUT_NAME, OUTPUT_NAME = "input", "logits"
MAX_BATCH = 4096
REFERENCE = "PyTorch fp32"  # what every gate compares with (torch_logits)


def chunks(n: int, *, static: int | None = None) -> list[slice]:
    """Slices of ``range(n)`` sized 1, 2, 7, then 16 (``static``: all of that size)."""
    out: list[slice] = []
    start, i = 0, 0
    while start < n:
        size = static or (PARITY_BATCHES[i] if i < len(PARITY_BATCHES) else 16)
        if static and start + size > n:
            break
        out.append(slice(start, min(n, start + size)))
        start += size
        i += 1
    return out


# --------------------------------------------------------------------------- conversion


def to_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    opset: int | None = None,
    dynamic_batch: bool = True,
    step: Step | None = None,
) -> tuple[str, list[str]]:
    """Write ``module`` as ONNX; returns (which exporter, notes for the user). ``step``
    is told which exporter converts."""
    import torch

    step = step or (lambda _detail: None)
    step("converting to ONNX (torch.onnx.export, dynamo)")

    notes: list[str] = []
    log = io.StringIO()
    try:
        dynamic_shapes = None
        if dynamic_batch:
            dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},)
        with (
            contextlib.redirect_stdout(log),
            contextlib.redirect_stderr(log),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                verbose=False,
            )
            assert program is not None
            program.save(str(path))
        return "torch.onnx.export (dynamo, torch.export)", notes
    except Exception as exc:  # the recommended exporter failed: say so, then fall back
        notes.append(
            f"the torch.export-based ONNX exporter failed ({_reason(exc)}); fell back to the "
            "legacy TorchScript exporter"
        )
    path.unlink(missing_ok=True)
    step("converting to ONNX (torch.onnx.export, legacy TorchScript: dynamo failed)")
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset or 17,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
            )
    except Exception as exc:
        raise IntegrityError(
            f"neither ONNX exporter could convert this model ({_reason(exc)}); run with "
            "--debug for the traceback"
        ) from exc
    return "torch.onnx.export (legacy TorchScript)", notes


def _reason(exc: BaseException) -> str:
    """The root cause of an exporter error, on one line, without terminal colours."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = re.sub(r"\x1b\[[0-9;]*m", "", lines[0] if lines else "")
    return f"{type(exc).__name__}: {text[:200]}".rstrip(": ")


def check_onnx(path: Path) -> dict[str, Any]:
    """onnx.checker (full) and strict shape inference; returns what they established."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        inferred = onnx.shape_inference.infer_shapes(
            onnx.load(str(path)), check_type=True, strict_mode=True, data_prop=True
        )
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise IntegrityError(f"the exported ONNX file fails onnx.checker: {exc}") from exc

    def dims(value: Any) -> list[int | str]:
        return [
            d.dim_param if d.HasField("dim_param") else int(d.dim_value)
            for d in value.type.tensor_type.shape.dim
        ]

    opsets = {o.domain or "ai.onnx": int(o.version) for o in inferred.opset_import}
    return {
        "checker": "passed (full_check)",
        "shape_inference": "passed (strict)",
        "inputs": {v.name: dims(v) for v in inferred.graph.input},
        "outputs": {v.name: dims(v) for v in inferred.graph.output},
        "opset": opsets.get("ai.onnx"),
        "nodes": len(inferred.graph.node),
    }


def to_fp16(src: Path, dst: Path) -> None:
    """Weights and activations in float16, inputs and outputs kept float32."""
    import onnx
    import onnx_ir as ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    model = ir.from_proto(half)
    model.graph.sort()  # the converter appends its input casts after their users
    ir.save(model, str(dst))


def to_int8(
    src: Path, dst: Path, calibration: np.ndarray, work: Path, *, step: Step | None = None
) -> dict[str, Any]:
    """Static QDQ int8 (zoo.deploy.onnx_int8: per-channel int8 weights, uint8 activations, a
    float prefix where the first layers are too sensitive, bias correction); returns
    what it tried, with the per-layer evidence."""
    import numpy as np

    from zoo.deploy.onnx_int8 import quantize_int8

    images = np.ascontiguousarray(calibration, dtype=np.float32)
    return quantize_int8(src, dst, images, work, say=step)


# ------------------------------------------------------------------------------ parity


def torch_logits(module: nn.Module, x: np.ndarray, parts: Sequence[slice]) -> np.ndarray:
    """The reference every gate compares with: eager PyTorch in plain float32."""
    import numpy as np
    import torch

    from zoo.contract.precision import exact_fp32

    with torch.inference_mode(), exact_fp32():
        return np.concatenate(
            [module(torch.from_numpy(x[s])).float().numpy() for s in parts], axis=0
        )


def gate_providers(available: Sequence[str] | None = None) -> list[str]:
    """The execution providers ``zoo predict`` may run on with this onnxruntime: the
    first available one of each ``--provider`` choice (CPU always; CUDA and TensorRT
    with onnxruntime-gpu)."""
    from zoo.deploy.inference import PROVIDERS

    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    out: list[str] = []
    for chain in PROVIDERS.values():
        head = next((p for p in chain if p in available), None)
        if head is not None and head not in out:
            out.append(head)
    return sorted(out, key=lambda p: p != "CPUExecutionProvider")  # CPU first


def _session(path: Path, provider: str = "CPUExecutionProvider") -> Any:
    """A session as ``zoo predict`` opens one: ``provider`` first, then its fallbacks."""
    import onnxruntime as ort

    from zoo.deploy.inference import PROVIDERS

    chain = next((c for c in PROVIDERS.values() if c[0] == provider), (provider,))
    available = ort.get_available_providers()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [p for p in chain if p in available] or ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def _short(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


def ort_logits(session: Any, x: np.ndarray, parts: Sequence[slice]) -> np.ndarray:
    import numpy as np

    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[s]})[0] for s in parts], axis=0)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(1) == b.argmax(1)).mean()) if len(a) else 1.0


def _accuracy(logits: np.ndarray, labels: Sequence[int]) -> float | None:
    correct = _correct(logits, labels)
    return None if correct is None else correct[0] / correct[1]


def _correct(logits: np.ndarray, labels: Sequence[int]) -> tuple[int, int] | None:
    """(images predicted right, images labelled with one of the model's classes)."""
    import numpy as np

    y = np.asarray(labels)
    known = y >= 0
    if not known.any():
        return None
    return int((logits[known].argmax(1) == y[known]).sum()), int(known.sum())


def _combine(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One gate's numbers over every provider: at the top level the worst of each across
    providers (CPU's where they agree), each provider's own under ``by_provider``."""
    out = dict(next(iter(runs.values())))  # gate_providers lists CPU first
    worse = {
        "max_abs_error": max,
        "mean_abs_error": max,
        "max_rel_error": max,
        "top1_disagreements": max,
        "accuracy_drop": max,
        "top1_agreement": min,
        "accuracy_int8": min,
    }
    for r in runs.values():
        for key, pick in worse.items():
            if out.get(key) is not None and r.get(key) is not None:
                out[key] = pick(out[key], r[key])
        if "allclose" in r:
            out["allclose"] = bool(out["allclose"] and r["allclose"])
    out["passed"] = all(r["passed"] for r in runs.values())
    out["by_provider"] = {_short(p): r for p, r in runs.items()}
    return out


def _int8_summary(tried: dict[str, Any]) -> str:
    """What int8 tried, in one line: the steps and their logits SNR on training images."""
    steps = "; ".join(f"{s['step']} -> {s['logits_snr_db']:.1f} dB" for s in tried["tried"])
    return f"tried {steps} (logits SNR vs fp32 on {tried['probe_images']} training images)"


def fp32_parity(reference: np.ndarray, got: np.ndarray, *, real: bool) -> dict[str, Any]:
    """The fp32 gate's numbers, and whether they pass."""
    import numpy as np

    diff = np.abs(got - reference)
    allclose = bool(np.allclose(got, reference, atol=ATOL, rtol=RTOL))
    top1 = reference.argmax(1) == got.argmax(1)
    return {
        "max_abs_error": float(diff.max()),
        "mean_abs_error": float(diff.mean()),
        "max_rel_error": float((diff / (np.abs(reference) + 1e-12)).max()),
        "allclose": allclose,
        "atol": ATOL,
        "rtol": RTOL,
        "top1_agreement": float(top1.mean()),
        "top1_disagreements": int((~top1).sum()),
        "top1_gate": "every image" if real else "not applied (random inputs)",
        "passed": allclose and (not real or bool(top1.all())),
    }


def _inputs(check: CheckSet) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(check.images.detach().cpu().numpy(), dtype=np.float32)


# --------------------------------------------------------------------------- benchmark


def _time(fn: Any, budget_s: float, min_runs: int = 3) -> list[float]:
    fn()  # warm-up (allocations, kernel selection)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def benchmark(
    module: nn.Module,
    session: Any,
    input_shape: Sequence[int],
    *,
    batches: Sequence[int] = (1, 16),
    budget_s: float = 1.0,
) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch eager (inference_mode, channels_last), same inputs."""
    import statistics

    import torch

    eager = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)
    name = session.get_inputs()[0].name
    rows = []
    for batch in batches:
        gen = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, *input_shape, generator=gen)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        x_np = x.numpy()

        def run_torch(x_cl: torch.Tensor = x_cl) -> None:
            with torch.inference_mode():
                eager(x_cl)

        def run_ort(x_np: Any = x_np) -> None:
            session.run(None, {name: x_np})

        t_torch = statistics.median(_time(run_torch, budget_s))
        t_ort = statistics.median(_time(run_ort, budget_s))
        rows.append(
            {
                "batch": batch,
                "torch_ms": round(t_torch * 1e3, 3),
                "onnxruntime_ms": round(t_ort * 1e3, 3),
                "torch_images_per_s": round(batch / t_torch, 1),
                "onnxruntime_images_per_s": round(batch / t_ort, 1),
                "speedup": round(t_torch / t_ort, 2),
            }
        )
    import onnxruntime as ort

    return {
        "baseline": "PyTorch eager, torch.inference_mode, channels_last",
        "candidate": f"ONNX Runtime {ort.__version__} {session.get_providers()[0]}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "results": rows,
    }


# ---------------------------------------------------------------------------- pipeline


def export_onnx(module: nn.Module, example: torch.Tensor, options: ExportOptions) -> ExportResult:
    """Convert, verify and (optionally) benchmark; raise IntegrityError on a failed gate."""
    import numpy as np

    if options.precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{options.precision}': use {', '.join(PRECISIONS)}")
    check = options.check
    if options.precision == "int8" and check.calibration is None:
        raise UsageError(
            "int8 needs calibration images from the training data: pass --calibration DATA "
            "(a folder of images, one sub-folder per class)"
        )
    out = Path(options.out_dir)
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    static = None if options.dynamic_batch else int(example.shape[0])
    fp32_path = work / "fp32.onnx"
    step = options.step
    exporter, notes = to_onnx(
        module,
        example,
        fp32_path,
        opset=options.opset,
        dynamic_batch=options.dynamic_batch,
        step=step,
    )
    step("checking the graph (onnx.checker, shape inference)")
    report: dict[str, Any] = {
        "format": "onnx",
        "precision": options.precision,
        "exporter": exporter,
        "dynamic_batch": options.dynamic_batch,
        "check_images": {"count": int(check.images.shape[0]), "real": check.real},
    }
    report["fp32_graph"] = check_onnx(fp32_path)

    x = _inputs(check)
    parts = chunks(len(x), static=static)
    if not parts:
        raise UsageError(f"the check set has fewer images than the static batch size {static}")
    x = x[: parts[-1].stop]
    providers = gate_providers()
    on = ", ".join(_short(p) for p in providers)
    step(f"fp32 gate: ONNX Runtime {on} against PyTorch on {len(x)} inputs")
    reference = torch_logits(module, x, parts)
    report["providers"] = providers
    per_provider = {
        p: fp32_parity(reference, ort_logits(_session(fp32_path, p), x, parts), real=check.real)
        for p in providers
    }
    parity = _combine(per_provider)
    parity["batches"] = sorted({s.stop - s.start for s in parts})
    report["fp32"] = parity
    if not parity["passed"]:
        bad = next(p for p, r in per_provider.items() if not r["passed"])
        worst = per_provider[bad]
        raise IntegrityError(
            f"export refused: ONNX Runtime disagrees with PyTorch on {_short(bad)} (max |error| "
            f"{worst['max_abs_error']:.3g}, allclose(atol={ATOL}, rtol={RTOL}) "
            f"{'holds' if worst['allclose'] else 'fails'}, top-1 differs on "
            f"{worst['top1_disagreements']} of {len(x)} images); nothing was registered"
        )

    final = fp32_path
    runs: dict[str, dict[str, Any]] = {}
    if options.precision == "fp16":
        final = work / "fp16.onnx"
        step("converting to fp16")
        to_fp16(fp32_path, final)
        report["graph"] = check_onnx(final)
        step(f"fp16 gate: ONNX Runtime {on} against PyTorch on {len(x)} inputs")
        for p in providers:
            half = ort_logits(_session(final, p), x, parts)
            agreement = _agreement(reference, half)
            runs[p] = {
                "top1_agreement": agreement,
                "max_abs_error": float(np.abs(half - reference).max()),
                "passed": agreement >= FP16_MIN_AGREEMENT,
            }
        report["fp16"] = {**_combine(runs), "min_agreement": FP16_MIN_AGREEMENT}
        refused = next((p for p, r in runs.items() if not r["passed"]), None)
        if refused is not None:
            raise IntegrityError(
                f"export refused: fp16 top-1 agrees with PyTorch on "
                f"{runs[refused]['top1_agreement']:.1%} of the check images on {_short(refused)} "
                f"(needs {FP16_MIN_AGREEMENT:.0%}); export fp32 instead; nothing was registered"
            )
    elif options.precision == "int8":
        assert check.calibration is not None
        final = work / "int8.onnx"
        calibration = np.ascontiguousarray(check.calibration.numpy(), dtype=np.float32)
        tried = to_int8(fp32_path, final, calibration, work, step=step)
        report["graph"] = check_onnx(final)
        if check.validation is not None:
            xv = np.ascontiguousarray(check.validation.numpy(), dtype=np.float32)
            labels = check.validation_labels
        else:
            xv, labels = x, check.labels
        vparts = chunks(len(xv), static=static)
        xv = xv[: vparts[-1].stop] if vparts else xv
        step(f"int8 gate: ONNX Runtime {on} against PyTorch on {len(xv)} validation images")
        ref_v = torch_logits(module, xv, vparts)
        acc_fp32 = _accuracy(ref_v, labels[: len(xv)])
        right_fp32 = _correct(ref_v, labels[: len(xv)])
        for p in providers:
            int8 = ort_logits(_session(final, p), xv, vparts)
            agreement = _agreement(ref_v, int8)
            acc_int8 = _accuracy(int8, labels[: len(xv)])
            right_int8 = _correct(int8, labels[: len(xv)])
            drop = None if acc_fp32 is None or acc_int8 is None else acc_fp32 - acc_int8
            runs[p] = {
                "top1_agreement": agreement,
                "accuracy_int8": acc_int8,
                "correct_int8": right_int8[0] if right_int8 else None,
                "accuracy_drop": drop,
                "passed": agreement >= INT8_MIN_AGREEMENT
                and (drop is None or drop <= INT8_MAX_ACCURACY_DROP),
            }
        report["int8"] = {
            **_combine(runs),
            "calibration_images": len(calibration),
            "validation_images": len(xv),
            "labelled_images": right_fp32[1] if right_fp32 else 0,
            "min_agreement": INT8_MIN_AGREEMENT,
            # the reference: the source module in eager PyTorch, plain float32 (what the
            # registry's val_accuracy is computed in, on the same images)
            "accuracy_fp32": acc_fp32,
            "correct_fp32": right_fp32[0] if right_fp32 else None,
            "accuracy_fp32_computed_in": REFERENCE,
            "max_accuracy_drop": INT8_MAX_ACCURACY_DROP,
            "quantization": tried,
        }
        if acc_fp32 is None:
            notes.append(
                "int8: the validation images carry no labels of this model's classes;"
                " only the top-1 agreement gate applied"
            )
        summary = _int8_summary(tried)
        notes.append(f"int8: {summary}")
        for p, r in runs.items():
            if r["top1_agreement"] < INT8_MIN_AGREEMENT:
                raise IntegrityError(
                    f"export refused: int8 top-1 agrees with PyTorch on {r['top1_agreement']:.1%} "
                    f"of the validation images on {_short(p)} (needs {INT8_MIN_AGREEMENT:.0%}) "
                    f"after {summary}; export fp32 or fp16; nothing was registered"
                )
            drop = r["accuracy_drop"]
            if drop is not None and drop > INT8_MAX_ACCURACY_DROP:
                raise IntegrityError(
                    f"export refused: int8 accuracy {r['accuracy_int8']:.1%} (ONNX Runtime "
                    f"{_short(p)}) is {drop * 100:.1f} points below fp32 ({acc_fp32:.1%}, "
                    f"{REFERENCE}) on {len(xv)} validation images (at most "
                    f"{INT8_MAX_ACCURACY_DROP * 100:.0f} allowed) after {summary}; export fp32 "
                    "or fp16; nothing was registered"
                )
    else:
        report["graph"] = report["fp32_graph"]
    # what the export's figures were computed in (the registered export's evaluation)
    report["evaluation"] = {
        "precision": options.precision,
        "runtime": f"ONNX Runtime {', '.join(_short(p) for p in providers)}",
        "reference": REFERENCE,
    }

    path = out / "model.onnx"
    final.replace(path)
    files: dict[str, str] = {}
    metrics: dict[str, float] = {
        "parity_max_abs_error": parity["max_abs_error"],
        "parity_top1_agreement": parity["top1_agreement"],
    }
    for key in ("fp16", "int8"):
        if key in report:
            metrics[f"{key}_top1_agreement"] = report[key]["top1_agreement"]
    if options.benchmark:
        sizes = " and ".join(map(str, (static,) if static else (1, 16)))
        step(f"benchmark: ONNX Runtime against PyTorch eager, batch {sizes}")
        bench = benchmark(
            module,
            _session(path),
            tuple(example.shape[1:]),
            batches=(static,) if static else (1, 16),
        )
        bench["precision"] = options.precision
        (out / "benchmark.json").write_text(json.dumps(bench, indent=2), encoding="utf-8")
        files["benchmark.json"] = str(out / "benchmark.json")
        for row in bench["results"]:
            metrics[f"speedup_batch{row['batch']}"] = row["speedup"]
            metrics[f"onnxruntime_ms_batch{row['batch']}"] = row["onnxruntime_ms"]
            metrics[f"torch_ms_batch{row['batch']}"] = row["torch_ms"]
    report["notes"] = list(notes)
    (out / "parity.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    files["parity.json"] = str(out / "parity.json")
    _remove_tree(work)
    return ExportResult(
        path=str(path),
        format="onnx",
        precision=options.precision,
        exporter=exporter,
        report=report,
        metrics=metrics,
        files=files,
        notes=tuple(notes),
    )


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
