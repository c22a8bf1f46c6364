"""`zoo registry copy`: a version with its lineage into another store, attached to the
`zoo registry` group by zoo/cli/registry.py."""

from __future__ import annotations

import click

from zoo.cli.output import emit_json, note, plural

__all__ = ["copy_cmd"]


@click.command("copy")
@click.argument("ref")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="URI",
    help="The destination store: sqlite:///PATH/NAME.db (created if missing, its artifacts "
    "beside it in NAME-artifacts/) or an MLflow server, http(s)://HOST:PORT.",
)
@click.option(
    "--with-exports",
    is_flag=True,
    help="Also copy every export (ONNX, ...) of each version copied.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def copy_cmd(ref: str, to: str, with_exports: bool, as_json: bool) -> None:
    """Copy a registered version, and every ancestor it needs, to another store.

    REF (models:/NAME/N, models:/NAME@ALIAS, NAME) is read from this zoo's store (the
    embedded one, or --tracking-uri / MLFLOW_TRACKING_URI), which is never written.
    Each version keeps its name, files (weights byte for byte, checked by SHA-256
    after the copy), tags, run (params, metrics, datasets, artifacts) and licence, which
    is decided again on the destination; parent models:/ references are re-pointed to
    the destination's version numbers. A copy is tagged zoo.copied_from, so running the
    command again copies nothing and prints where each version is; an interrupted copy
    is completed by running it again.

    \b
      zoo registry copy models:/pets/2 --to sqlite:///backup/registry.db
      zoo registry copy models:/pets@prod --to https://registry.example.com --with-exports
    """
    from zoo.registry.copy import copy_version

    report = copy_version(ref, to, with_exports=with_exports)
    if as_json:
        emit_json("registry_copy", **report.to_dict())
        return
    for c in report.versions:
        if c.copied:
            note(f"copied {c.source} -> {c.destination} (sha256 {str(c.sha256)[:12]}... checked)")
        else:
            note(f"{c.source} is already there as {c.destination}: nothing to copy")
    new = sum(c.copied for c in report.versions)
    note(f"{plural(new, 'version')} copied to {report.destination_store}")
    click.echo(report.versions[-1].destination)
