"""`zoo rank`: rank backbones by how well their features fit a dataset (one pass each)."""

from __future__ import annotations

from typing import Any

import click

from zoo.cli.options import StrictInt, torchrun_options
from zoo.cli.output import console, emit_json, note


@click.command("rank")
@click.argument("data", type=click.Path())
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--metric",
    default="logme,knn",
    show_default=True,
    help="Transferability metric(s), comma-separated (plugins): logme, knn, hscore, nce, "
    "leep; one column each, rows ordered by the first.",
)
@click.option(
    "--layers",
    default="final",
    show_default=True,
    help="final (the head's input), mid (the middle stage's output), or final,mid.",
)
@click.option(
    "--max-images",
    type=StrictInt(1, 10_000_000),
    default=None,
    metavar="N",
    help="Score on at most N images (the same share of each class, chosen by content).",
)
@click.option(
    "--image-size", type=StrictInt(1, 4096), default=None, metavar="PX", help="Square input size."
)
@torchrun_options("(each extracts its share of the features)", "from the arguments")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result (docs/json.md).")
def rank_cmd(
    data: str,
    refs: tuple[str, ...],
    metric: str,
    layers: str,
    max_images: int | None,
    image_size: int | None,
    nproc_per_node: int | None,
    nnodes: int | None,
    rdzv_endpoint: str | None,
    rdzv_id: str | None,
    as_json: bool,
) -> None:
    """Rank backbones REFS by how well they transfer to the labelled images in DATA.

    One forward pass per backbone through the same feature cache a linear probe uses
    (a later `zoo finetune --strategy linear-probe` on the same images reuses it), then
    transferability scores: LogME and k-NN leave-one-out accuracy side by side (default),
    H-score, NCE or LEEP. Higher is better; scores compare backbones on the same data
    and metric, not across datasets.
    A REF may join several backbones with commas (REF1,REF2): their features side by side.

    \b
      zoo rank ./pets timm:resnet50.a1_in1k torchvision:efficientnet_b0
      zoo rank ./digits effnet-lite:lite0 effnet-lite:lite1 --layers final,mid
      zoo rank ./pets effnet-lite:lite0 effnet-lite:lite0,effnet-lite:lite1
      zoo rank ./pets effnet-lite:lite0 effnet-lite:lite1 --nproc-per-node 4
    """
    from zoo.choose.rank import rank

    if max_images is not None and max_images < 2:
        raise click.UsageError("--max-images must be at least 2")
    chosen = [part.strip() for part in layers.split(",") if part.strip()]
    metrics = [part.strip() for part in metric.split(",") if part.strip()]

    def progress(r: Any) -> None:
        note(
            f"{r.reference} ({r.layer}): " + ", ".join(f"{k} {v:.4f}" for k, v in r.scores.items())
        )

    options: dict[str, Any] = {
        "metric": metrics,
        "layers": chosen,
        "max_images": max_images,
        "image_size": image_size,
    }
    nproc = nproc_per_node or 1
    if nproc > 1 or nnodes is not None or rdzv_endpoint is not None or rdzv_id is not None:
        from zoo.choose.rank_dist import launch_rank
        from zoo.engine.distributed import Nodes, launch_line

        nodes = Nodes(1 if nnodes is None else nnodes, rdzv_endpoint, rdzv_id)
        nodes.check_nodes()
        note(launch_line(nproc, nodes, "ranking"))
        rows = launch_rank(data, list(refs), nproc=nproc, nodes=nodes, **options)
        if not as_json:
            for row in rows:
                progress(row)
    else:
        rows = rank(data, list(refs), **options, on_row=None if as_json else progress)
    if as_json:
        emit_json(
            "rank_result", metric=metrics[0], metrics=metrics, rows=[r.to_dict() for r in rows]
        )
        return
    from rich.table import Table

    table = Table()
    numeric = {"#", *metrics, "dim", "images", "seconds"}
    for column in ("#", "reference", "layer", *metrics, "dim", "images", "seconds"):
        table.add_column(column, justify="right" if column in numeric else "left")
    has_top1 = any(r.imagenet_top1 is not None for r in rows)
    if has_top1:
        table.add_column("ImageNet top-1", justify="right")
    for i, r in enumerate(rows, start=1):
        cells = [
            str(i),
            r.reference,
            r.layer,
            *(f"{r.scores[m]:.4f}" for m in metrics),
            str(r.feature_dim),
            str(r.images),
            f"{r.seconds:.1f}",
        ]
        if has_top1:
            cells.append("" if r.imagenet_top1 is None else f"{r.imagenet_top1:.1f}")
        table.add_row(*cells)
    console().print(table)
    if "mid" in chosen:
        note("mid = the output of each backbone's middle stage (named in the layer column)")
    sampled = next((r for r in rows if r.of_images and r.of_images > r.images), None)
    if sampled is not None:
        note(
            f"scored on a stratified subsample of {sampled.images:,} of the "
            f"{sampled.of_images:,} images (each class its share, the same for every "
            "backbone); every image went through the forward pass into the feature cache"
        )


COMMANDS = [rank_cmd]
