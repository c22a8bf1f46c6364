"""`zoo registry reproduce`: a registered fine-tune trained again from its lineage and
compared with the registered weights and metrics (zoo/engine/reproduce.py); attached to
the `zoo registry` group by zoo/cli/registry.py."""

from __future__ import annotations

from typing import Any

import click

from zoo.cli.output import aligned, emit_json

__all__ = ["reproduce_cmd"]


@click.command("reproduce")
@click.argument("model_uri", metavar="MODEL_URI")
@click.argument("data", required=False, type=click.Path())
@click.option(
    "--device",
    default=None,
    help="auto, cpu, cuda, cuda:N (default: auto). The weights match bit for bit only on "
    "the kind of device the version trained on.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Exit 4 when the reproduced weights are not bit-identical to the registered ones.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def reproduce_cmd(
    model_uri: str, data: str | None, device: str | None, check: bool, as_json: bool
) -> None:
    """Train MODEL_URI's recorded recipe again and compare; nothing is registered.

    The recipe, parents, seed and split come from the version's lineage. DATA defaults
    to the folder or CSV manifest the version was trained on; data whose digest is not
    the recorded one is refused (exit 2) before anything trains. Causes for other bytes
    (library versions, device kind, a version not trained in deterministic mode) are
    said first, one line each. The run trains from scratch in a temporary folder of its
    own, never resuming or touching the registered run's checkpoint. The result: whether
    the weights' SHA-256 equals the registered one (bit-identical in deterministic mode)
    and, when not, each registered metric beside the reproduced one.

    \b
      zoo registry reproduce models:/pets/2
      zoo registry reproduce models:/pets/2 /data/pets-copy --check
    """
    from zoo.contract.errors import IntegrityError
    from zoo.engine.reproduce import reproduce

    report = reproduce(model_uri, data, device=device)
    if as_json:
        emit_json("registry_reproduce", **report)
    else:
        _print(report)
    if check and not report["identical"]:
        raise IntegrityError(
            f"the reproduced weights of {report['model_uri']} are not bit-identical to the "
            "registered ones (--check)"
        )


def _print(report: dict[str, Any]) -> None:
    sha = report["weights_sha256"]
    seconds = f"{report['seconds']:.0f}s"
    if report["identical"]:
        click.echo(
            f"reproduced {report['model_uri']}: weights identical to the registered ones "
            f"(SHA-256 {sha['reproduced']}), {seconds}"
        )
        return
    click.echo(
        f"reproduced {report['model_uri']}: weights differ (SHA-256 {sha['reproduced']}, "
        f"registered {sha['registered'] or 'unknown'}), {seconds}; the metrics:"
    )
    rows = [
        [m["name"], _num(m["registered"]), _num(m["reproduced"]), _num(m["difference"], True)]
        for m in report["metrics"]
    ]
    click.echo(aligned(["metric", "registered", "reproduced", "difference"], rows))


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4g}" if signed else f"{value:.4g}"
