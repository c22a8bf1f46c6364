"""The ONNX export pipeline: convert, prove, measure. What the ``onnx`` exporter's
``export`` runs.

It converts (convert.py: torch.export first, the legacy TorchScript exporter only when that
fails, and says so), then proves the file before anything is registered:

1. ``onnx.checker`` with ``full_check=True`` and strict shape inference;
2. ONNX Runtime against eager PyTorch on the same inputs, in batches of 1, 2 and 7 (then
   16s), ``numpy.allclose(ort, torch, atol=1e-4, rtol=1e-3)``, and top-1 identical on
   every image when the check images are real (gates.py);
3. fp16: top-1 agreement >= 99 %; int8 (static QDQ quantization calibrated on training
   images, int8.py): top-1 agreement >= 95 % and accuracy at most 2 points below fp32 on
   the validation split.

Every gate runs on each execution provider ``zoo predict`` may choose with the installed
onnxruntime (runtime.gate_providers: CPU always, CUDA and TensorRT with onnxruntime-gpu),
each session opened as ``zoo predict`` opens it; then, unless ``--no-benchmark``, the
speed against PyTorch (benchmark.py).

A failed gate raises :class:`zoo.IntegrityError`; the caller removes what was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zoo
from zoo_onnx import gates
from zoo_onnx.benchmark import benchmark
from zoo_onnx.convert import check_onnx, to_fp16, to_int8, to_onnx
from zoo_onnx.gates import (
    ATOL,
    FP16_MIN_AGREEMENT,
    INT8_MAX_ACCURACY_DROP,
    INT8_MIN_AGREEMENT,
    REFERENCE,
    RTOL,
    chunks,
    fp32_parity,
    ort_logits,
    short,
    torch_logits,
)
from zoo_onnx.runtime import gate_providers, session

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from torch import nn

__all__ = ["PRECISIONS", "export_onnx"]

PRECISIONS = ("fp32", "fp16", "int8")


def export_onnx(
    module: nn.Module, example: torch.Tensor, options: zoo.ExportOptions
) -> zoo.ExportResult:
    """Convert, verify and (optionally) benchmark; raise IntegrityError on a failed gate."""
    import numpy as np

    if options.precision not in PRECISIONS:
        raise zoo.UsageError(
            f"unknown precision '{options.precision}': use {', '.join(PRECISIONS)}"
        )
    check = options.check
    if options.precision == "int8" and check.calibration is None:
        raise zoo.UsageError(
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
        raise zoo.UsageError(f"the check set has fewer images than the static batch size {static}")
    x = x[: parts[-1].stop]
    providers = gate_providers()
    on = ", ".join(short(p) for p in providers)
    step(f"fp32 gate: ONNX Runtime {on} against PyTorch on {len(x)} inputs")
    reference = torch_logits(module, x, parts)
    report["providers"] = providers
    per_provider = {
        p: fp32_parity(reference, ort_logits(session(fp32_path, p), x, parts), real=check.real)
        for p in providers
    }
    parity = gates.combine(per_provider)
    parity["batches"] = sorted({s.stop - s.start for s in parts})
    report["fp32"] = parity
    if not parity["passed"]:
        bad = next(p for p, r in per_provider.items() if not r["passed"])
        worst = per_provider[bad]
        raise zoo.IntegrityError(
            f"export refused: ONNX Runtime disagrees with PyTorch on {short(bad)} (max |error| "
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
            half = ort_logits(session(final, p), x, parts)
            agreement = gates.agreement(reference, half)
            runs[p] = {
                "top1_agreement": agreement,
                "max_abs_error": float(np.abs(half - reference).max()),
                "passed": agreement >= FP16_MIN_AGREEMENT,
            }
        report["fp16"] = {**gates.combine(runs), "min_agreement": FP16_MIN_AGREEMENT}
        refused = next((p for p, r in runs.items() if not r["passed"]), None)
        if refused is not None:
            raise zoo.IntegrityError(
                f"export refused: fp16 top-1 agrees with PyTorch on "
                f"{runs[refused]['top1_agreement']:.1%} of the check images on {short(refused)} "
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
        same = vparts == parts and np.array_equal(xv, x)
        # the fp32 gate's reference where it ran on these very images (the check set is
        # the validation split whenever the images are real): PyTorch runs once, not twice
        ref_v = reference if same else torch_logits(module, xv, vparts)
        acc_fp32 = gates.accuracy(ref_v, labels[: len(xv)])
        right_fp32 = gates.correct(ref_v, labels[: len(xv)])
        for p in providers:
            int8 = ort_logits(session(final, p), xv, vparts)
            agreement = gates.agreement(ref_v, int8)
            acc_int8 = gates.accuracy(int8, labels[: len(xv)])
            right_int8 = gates.correct(int8, labels[: len(xv)])
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
            **gates.combine(runs),
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
        summary = gates.int8_summary(tried)
        notes.append(f"int8: {summary}")
        for p, r in runs.items():
            if r["top1_agreement"] < INT8_MIN_AGREEMENT:
                raise zoo.IntegrityError(
                    f"export refused: int8 top-1 agrees with PyTorch on {r['top1_agreement']:.1%} "
                    f"of the validation images on {short(p)} (needs {INT8_MIN_AGREEMENT:.0%}) "
                    f"after {summary}; export fp32 or fp16; nothing was registered"
                )
            drop = r["accuracy_drop"]
            if drop is not None and drop > INT8_MAX_ACCURACY_DROP:
                raise zoo.IntegrityError(
                    f"export refused: int8 accuracy {r['accuracy_int8']:.1%} (ONNX Runtime "
                    f"{short(p)}) is {drop * 100:.1f} points below fp32 ({acc_fp32:.1%}, "
                    f"{REFERENCE}) on {len(xv)} validation images (at most "
                    f"{INT8_MAX_ACCURACY_DROP * 100:.0f} allowed) after {summary}; export fp32 "
                    "or fp16; nothing was registered"
                )
    else:
        report["graph"] = report["fp32_graph"]
    # what the export's figures were computed in (the registered export's evaluation)
    report["evaluation"] = {
        "precision": options.precision,
        "runtime": f"ONNX Runtime {', '.join(short(p) for p in providers)}",
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
            session(path),
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
    return zoo.ExportResult(
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


def _inputs(check: zoo.CheckSet) -> np.ndarray:
    import numpy as np

    return np.ascontiguousarray(check.images.detach().cpu().numpy(), dtype=np.float32)
