"""`zoo registry list`: registered versions a page at a time, filtered by the store.
Attached to the `zoo registry` group by zoo/cli/registry.py (which adds its
--tracking-uri option)."""

from __future__ import annotations

from typing import Any

import click

from zoo.cli.output import console, emit_json, plural
from zoo.cli.registry_lineage import license_cell, warn_unknown

__all__ = ["PAGE", "list_cmd"]

PAGE = 100  # the table's page when --limit is not given


@click.command("list")
@click.option("--license", "license_", metavar="ID", help="Only versions with this licence.")
@click.option("--base", metavar="REF", help="Only derivatives of this base model.")
@click.option(
    "--dataset",
    metavar="DIGEST|PATH",
    help="Only versions trained on this data set: its digest (sha256:HEX, the 32-hex form "
    "MLflow shows, or a unique prefix) or its folder/CSV (hashed as `zoo finetune` does).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    help=f"Versions per page, by model name and number (default: {PAGE} in the table; "
    "--json lists every version unless --limit is given). 0: every version.",
)
@click.option(
    "--page-token",
    metavar="TOKEN",
    help="Go on where the previous page stopped: the token its last line (or its JSON's "
    "next_page_token) gave; the same filters as that page.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def list_cmd(
    license_: str | None,
    base: str | None,
    dataset: str | None,
    limit: int | None,
    page_token: str | None,
    as_json: bool,
) -> None:
    """List registered versions with parent, base model and licence, a page at a time.

    Versions come by model name and number; the store is asked for one page, filters
    included. Below a page that is not the last, a line says how many versions follow
    and gives the command that prints the next page:

    \b
      zoo registry list --license cc-by-nc-4.0
      zoo registry list --limit 20
      zoo registry list --limit 20 --page-token TOKEN   # the next 20
      zoo registry list --json --limit 500              # JSON: next_page_token
    """
    from zoo.registry.paging import Page, VersionFilter, base_stem
    from zoo.registry.records import TAG
    from zoo.registry.search import page

    tags: list[tuple[str, str]] = []
    if license_:
        from zoo.licenses.ids import normalize_license

        tags.append((TAG.LICENSE, normalize_license(license_)))
    extra: dict[str, Any] = {}
    if dataset is not None:
        digest = _dataset_digest(dataset)
        extra["dataset"] = {"query": dataset, "digest": digest}
        if digest is not None:
            tags.append((TAG.DATASET_DIGEST, digest))
    query = VersionFilter(tags=tuple(tags), base=base_stem(base) if base else None)
    per_page = (None if as_json else PAGE) if limit is None else (limit or None)
    if dataset is not None and extra["dataset"]["digest"] is None:
        got = Page()  # a digest no version has
    else:
        got = page(query, limit=per_page, token=page_token)
    versions = got.versions
    if as_json:
        rows = [_row(v) for v in versions]
        emit_json(
            "registry_list",
            count=len(versions),
            versions=rows,
            next_page_token=got.next_page_token,
            total=got.total,
            **extra,
        )
        return
    from rich.table import Table

    table = Table()
    for col in ("model", "version", "licence", "relation", "parent", "base", "aliases"):
        table.add_column(col, overflow="fold")
    for v in versions:
        table.add_row(
            v.name,
            str(v.version),
            license_cell(v.license),
            v.relation,
            v.parent or "",
            v.base or "",
            ", ".join(v.aliases),
        )
    console().print(table)
    trained_on = f" trained on {extra['dataset']['digest']}" if extra.get("dataset") else ""
    console().print(_shown(got) + trained_on, soft_wrap=True)
    if got.next_page_token:
        more = (
            "more follow"
            if got.total is None
            else f"{got.total - got.start - len(versions):,} more"
        )
        options = {"--license": license_, "--base": base, "--limit": limit}
        if extra.get("dataset"):
            options["--dataset"] = extra["dataset"]["digest"]
        console().print(
            f"{more}; next page: {_next_command(options, got.next_page_token)}", soft_wrap=True
        )
    warn_unknown(versions)


def _shown(got: Any) -> str:
    """``12 versions``; on a page: ``versions 101-200 of 10,000``."""
    n = len(got.versions)
    if got.start == 0 and got.next_page_token is None:
        return plural(n, "version")
    if n == 0:
        return f"no versions after the first {got.start:,}"
    of = "" if got.total is None else f" of {got.total:,}"
    return f"versions {got.start + 1:,}-{got.start + n:,}{of}"


def _next_command(options: dict[str, Any], token: str) -> str:
    """The command that prints the next page: this one's filters, the token, and the
    store when --tracking-uri named it."""
    import shlex

    ctx = click.get_current_context()
    words = ctx.command_path.split()
    uri = ctx.meta.get("zoo.tracking_uri")
    if uri:
        words += ["--tracking-uri", uri]
    for option, value in options.items():
        if value is not None:
            words += [option, str(value)]
    return shlex.join([*words, "--page-token", token])


def _dataset_digest(query: str) -> str | None:
    """The full digest ``--dataset`` names (None: no version has it); a prefix is matched
    against the digests the store holds that contain it (asked of the store)."""
    from zoo.registry.datasets import resolve_digest
    from zoo.registry.records import TAG
    from zoo.registry.search import tag_values

    def known() -> Any:  # asked only for a prefix (resolve_digest iterates it then)
        text = query.strip().lower()
        yield from tag_values(TAG.DATASET_DIGEST, text.split(":", 1)[-1])

    return resolve_digest(query, known(), digest_of=_digest_of)


def _digest_of(path: Any) -> str:
    """A data folder's or CSV's digest, as a fine-tune computes it (nothing cached)."""
    from zoo.data import load_dataset
    from zoo.progress import make_progress

    return load_dataset(path, cache=False, progress=make_progress()).digest


def _row(v: Any) -> dict[str, Any]:
    d = v.to_dict()
    d.pop("lineage", None)
    d.pop("tags", None)
    return d
