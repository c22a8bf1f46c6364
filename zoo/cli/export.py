"""`zoo export` and `zoo predict`."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.options import BATCH_SIZE, StrictInt, check_opset
from zoo.cli.output import console, emit_json, note


def _complete_precision(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """--precision values of the --format exporter (all exporters' before it is given)."""
    from zoo.contract.plugins import get_plugin_manager

    exporters = get_plugin_manager().exporters()
    chosen = [exporters[f] for f in [ctx.params.get("fmt")] if f in exporters]
    values = {p for e in chosen or exporters.values() for p in e.precisions}
    return sorted(p for p in values if p.startswith(incomplete))


@click.command("export")
@click.argument("ref")
@click.option(
    "--format", "fmt", default="onnx", show_default=True, help="Exporter (see `zoo plugins`)."
)
@click.option(
    "--opset",
    type=int,
    default=None,
    callback=check_opset,
    help="ONNX opset, within what the installed torch.onnx and onnx write (default: the "
    "exporter's own).",
)
@click.option(
    "--dynamic-batch/--static-batch",
    default=True,
    show_default=True,
    help="A dynamic batch dimension, or a fixed batch of 1.",
)
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    metavar="PRECISION",
    shell_complete=_complete_precision,
    help="One the --format exporter supports (onnx: fp32, fp16, int8; any exporter: "
    "`zoo plugins --hook register_exporters`); gated against fp32 PyTorch.",
)
@click.option(
    "--calibration",
    "calibration",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DATA",
    help="Labelled images (CLASS/IMAGE folders or CSV) to check on and to calibrate "
    "int8 with; default: the training data recorded for a registered version.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Empty or new folder for the file and its reports "
    "(default: a new folder under $ZOO_HOME/exports).",
)
@click.option("--no-benchmark", is_flag=True, help="Skip the latency benchmark.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def export_cmd(
    ref: str,
    fmt: str,
    opset: int | None,
    dynamic_batch: bool,
    precision: str,
    calibration: Path | None,
    out: Path | None,
    no_benchmark: bool,
    as_json: bool,
) -> None:
    """Export a registered version or any backbone, verified against PyTorch.

    The file is checked (onnx.checker, shape inference) and run with ONNX Runtime against
    PyTorch at batches 1, 2 and 7; a disagreement refuses the export and nothing is
    written or registered. A registered version's export is registered as NAME.onnx.

    \b
      zoo export models:/pets/3
      zoo export pets --precision int8 --calibration ./pets
      zoo export timm:resnet18.a1_in1k --out ./resnet18-onnx
    """
    from zoo.deploy.export import export_model
    from zoo.deploy.exporters import exporter_for
    from zoo.disk.paths import require_writable
    from zoo.progress import waiting

    exporter = exporter_for(fmt)  # none for --format: one line, before anything starts
    require_writable("zoo export (its staging, the registration, the default --out)")
    # each step on one progress line: a spinner on a terminal, a line each in a pipe
    with waiting("export", "starting (PyTorch, the exporters)", steps=True) as progress:
        outcome = export_model(
            ref,
            fmt=fmt,
            precision=precision,
            opset=opset,
            dynamic_batch=dynamic_batch,
            calibration=calibration,
            out=out,
            benchmark=not no_benchmark,
            say=lambda line: progress.say(f"zoo: {line}"),
            step=progress.update,
        )
    for line in outcome.notes:
        note(line)
    if as_json:
        emit_json("export", **outcome.to_dict())
        return
    summarise = getattr(exporter, "report_lines", None)
    lines = [
        f"exported {outcome.source.reference} -> {outcome.path}",
        f"  exporter: {outcome.result.exporter}",
        *(summarise(outcome.result) if summarise is not None else []),
    ]
    if outcome.registered is not None:
        lines.append(
            f"  registered: {outcome.registered.model_uri} (licence {outcome.registered.license})"
        )
    term = console()
    for line in lines:
        term.print(line)


@click.command("predict")
@click.argument("ref")
@click.argument("images", type=click.Path(path_type=Path), metavar="IMAGE_OR_DIR")
@click.option("--top-k", type=StrictInt(1, 100_000), default=5, show_default=True)
@click.option("--batch-size", type=BATCH_SIZE, default=32, show_default=True)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]),
    default="auto",
    show_default=True,
    help="ONNX Runtime provider; auto tries TensorRT, then CUDA, then CPU.",
)
@click.option(
    "--precision",
    default=None,
    metavar="PRECISION",
    shell_complete=_complete_precision,
    help="Run an export of this precision (fp32, fp16, int8): of a registered version, "
    "its newest one that is; default: the newest export, whatever its precision.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def predict_cmd(
    ref: str,
    images: Path,
    top_k: int,
    batch_size: int,
    provider: str,
    precision: str | None,
    as_json: bool,
) -> None:
    """Classify images with an exported ONNX model (ONNX Runtime).

    REF is a registered ONNX version (models:/NAME.onnx/N), a registered version that has
    an export (its newest), or a folder or .onnx file written by `zoo export`. A bare NAME
    that is also a folder here is the registered model (one line says so; ./NAME is the
    folder); a path form (./x, /x, x/) is always a path. Images get exactly the
    preprocessing the model was trained with.

    \b
      zoo predict models:/pets.onnx/1 photo.jpg
      zoo predict pets ./inbox --top-k 3 --json
      zoo predict pets ./inbox --precision int8
    """
    from zoo.deploy.exported import open_model
    from zoo.deploy.predict import predict

    model = open_model(ref, provider=provider, precision=precision)
    if model.taken:  # REF is both a registered model and a folder or file here
        note(model.taken)
    run = predict(model, images, top_k=top_k, batch_size=batch_size)
    for line in run.notes:
        note(line)
    failed = [p for p in run.predictions if p.error]
    if as_json:
        emit_json(
            "predictions",
            model=model.source,
            precision=model.precision,
            provider=run.provider,
            notes=[model.taken, *run.notes] if model.taken else run.notes,
            predictions=[p.to_dict() for p in run.predictions],
        )
    else:
        out = console()
        for p in run.predictions:
            if p.error:
                continue
            best = ", ".join(f"{name} {prob:.1%}" for name, prob in p.top)
            out.print(f"{p.path}: {best}")
    for p in failed:
        note(f"skipped {p.error}")


COMMANDS = [export_cmd, predict_cmd]
