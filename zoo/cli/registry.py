"""`zoo registry ...` (show, where, alias, delete, check; `list`, `lineage`, `serve`, `copy`,
`push` and `reproduce` each in zoo/cli/registry_<name>.py); `zoo ui` is in zoo/cli/serve.py
with `zoo serve`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from zoo.cli.output import console, emit_json, note, plural, readable, warn
from zoo.cli.registry_copy import copy_cmd
from zoo.cli.registry_lineage import license_cell as _license_cell
from zoo.cli.registry_lineage import lineage_cmd
from zoo.cli.registry_lineage import warn_unknown as _warn_unknown
from zoo.cli.registry_list import list_cmd
from zoo.cli.registry_push import push_cmd
from zoo.cli.registry_reproduce import reproduce_cmd
from zoo.cli.registry_server import serve_cmd

F = TypeVar("F", bound=Callable[..., Any])


def _use_tracking_uri(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        from zoo.registry.store import configure

        configure(value)
        ctx.meta["zoo.tracking_uri"] = value  # a next-page command names the store too


def tracking_uri_option(func: F) -> F:
    """``--tracking-uri`` on every registry command (also read from MLFLOW_TRACKING_URI)."""
    return click.option(
        "--tracking-uri",
        metavar="URI",
        expose_value=False,
        is_eager=True,
        callback=_use_tracking_uri,
        help="MLflow server or database to use instead of the embedded store under ZOO_HOME "
        "(default: $MLFLOW_TRACKING_URI).",
    )(func)


@click.group("registry")
@tracking_uri_option
def registry_group() -> None:
    """Registered derivatives in MLflow: lineage, licences, aliases.

    \b
      zoo registry list --license cc-by-nc-4.0
      zoo registry show models:/pets-classifier/2
      zoo registry lineage pets-classifier
      zoo registry lineage timm:resnet50 --format svg -o tree.svg

    The store is the embedded one under ZOO_HOME unless --tracking-uri or
    MLFLOW_TRACKING_URI names a server.
    """


@registry_group.command("show")
@tracking_uri_option
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def show_cmd(ref: str, as_json: bool) -> None:
    """Show one version: lineage, licence, dataset, metrics.

    REF is models:/NAME/N, models:/NAME/latest, models:/NAME@ALIAS or a registered NAME.
    """
    from zoo.registry import get_version
    from zoo.registry.datasets import describe
    from zoo.registry.leakage_finding import seen_note
    from zoo.registry.modelcard import chosen_by_text, evaluation_text
    from zoo.registry.records import parents_of

    v = get_version(ref)
    if as_json:
        emit_json("registry_version", version=v.to_dict())
        return
    from rich.table import Table

    lin = v.lineage
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    strategy = lin.get("strategy") or {}
    dataset = lin.get("dataset") or {}
    lic = lin.get("license") or {}
    rows = [
        ("version", v.model_uri),
        ("aliases", ", ".join(v.aliases)),
        ("licence", _license_cell(v.license) + (" (inherited)" if lic.get("inherited") else "")),
        ("licence override", lic.get("override") or ""),
        ("relation", v.relation),
        *_parent_rows(v),
        ("base model", v.base or ""),
        ("chain", " -> ".join(lin.get("chain") or []) if len(parents_of(lin)) < 2 else ""),
        ("strategy", str(strategy.get("name") or "")),
        ("strategy settings", readable(strategy["settings"]) if strategy.get("settings") else ""),
        ("strategy plugin", v.tags.get("zoo.strategy_plugin", "")),
        ("dataset digest", str(dataset.get("digest") or "")),
        ("datasets", "\n".join(map(describe, _run_datasets(v.run_id))) or "none recorded"),
        ("classes", ", ".join(v.class_names)),
        ("metrics", ", ".join(f"{k}={val:.4g}" for k, val in (lin.get("metrics") or {}).items())),
        ("leakage", seen_note(lin)),  # an ancestor trained on this version's test images
        ("computed in", evaluation_text(lin)),
        ("chosen by", chosen_by_text(lin)),
        ("weights sha256", v.tags.get("zoo.weights_sha256", "")),
        ("run", v.run_id or ""),
        ("artifacts", v.source),
    ]
    for key, value in rows:
        if value:
            table.add_row(key, value)
    console().print(table)
    _warn_unknown([v])


def _run_datasets(run_id: str | None) -> list[dict[str, Any]]:
    """The run's datasets: from an SQLite store's tables, else through MLflow."""
    from zoo.registry import sqlite_read
    from zoo.registry.datasets import run_datasets

    direct = sqlite_read.run_datasets(run_id)
    return run_datasets(run_id) if direct is None else direct


def _parent_rows(v: Any) -> list[tuple[str, str]]:
    """One parent: its reference and sha256; several: one line each, pinned."""
    from zoo.registry.records import parents_of

    parents = parents_of(v.lineage)
    if len(parents) < 2:
        return [("parent", v.parent or ""), ("parent sha256", v.tags.get("zoo.parent_sha256", ""))]
    lines = [
        f"{p.get('reference')}  sha256 {p.get('sha256') or 'unknown'}  licence "
        f"{p.get('license') or 'unknown'}"
        for p in parents
    ]
    return [("parents", "\n".join(lines))]


@registry_group.command("where")
@tracking_uri_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def where_cmd(as_json: bool) -> None:
    """Print the MLFLOW_TRACKING_URI of the store zoo uses, for plain MLflow clients.

    \b
      export MLFLOW_TRACKING_URI=$(zoo registry where)
      mlflow ui --backend-store-uri "$(zoo registry where)"
    """
    from zoo.registry import store

    uri = store.tracking_uri()
    db = store.sqlite_path(uri)
    exists = db.is_file() if db is not None else None
    if as_json:
        emit_json(
            "registry_where",
            tracking_uri=uri,
            embedded=store.is_embedded(uri),
            exists=exists,
        )
        return
    click.echo(uri)
    if exists is False:
        note("nothing is registered there yet: the store is created on first use")


@registry_group.command("alias")
@tracking_uri_option
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("alias")
def alias_cmd(name: str, version: int, alias: str) -> None:
    """Point ALIAS of model NAME at VERSION (then use models:/NAME@ALIAS)."""
    from zoo.registry import set_alias
    from zoo.registry.store import ready_to_write

    ready_to_write("zoo registry alias", home_too=False)
    v = set_alias(name, version, alias)
    note(f"models:/{name}@{alias} -> {v.model_uri}")


@registry_group.command("delete")
@tracking_uri_option
@click.argument("ref")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--cascade", is_flag=True, help="Also delete every version derived from it.")
def delete_cmd(ref: str, yes: bool, cascade: bool) -> None:
    """Delete a version (models:/NAME/N) or a whole model (NAME).

    Refuses while other versions name it as their parent, unless --cascade.
    """
    from zoo.registry import delete, plan_delete
    from zoo.registry.store import ready_to_write

    ready_to_write("zoo registry delete", home_too=False)
    plan = plan_delete(ref, cascade=cascade)
    if not yes:
        listing = ", ".join(v.model_uri for v in plan)
        click.confirm(f"Delete {listing}?", abort=True, err=True)
    done = delete(ref, cascade=cascade)
    for v in done:
        note(f"deleted {v.model_uri}")


@registry_group.command("check")
@tracking_uri_option
@click.option(
    "--clean",
    is_flag=True,
    help="Remove runs of registrations that never finished, and staging folders that "
    "killed imports and exports left under ZOO_HOME.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Also re-hash every version's weights and lineage.json against the record made "
    "at registration (downloads each version's weights).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def check_cmd(clean: bool, verify: bool, as_json: bool) -> None:
    """Check that no version points at missing (or, with --verify, altered) artifacts;
    list unfinished registrations."""
    from zoo.contract.errors import IntegrityError
    from zoo.registry import check

    staging = _clean_staging() if clean else []
    report = check(clean=clean, verify=verify)
    report.staging_removed = staging
    if as_json:
        emit_json("registry_check", **report.to_dict())
    else:
        what = f"{plural(report.versions, 'version')} checked"
        if verify:
            what += f" ({plural(report.verified, 'file')} re-hashed)"
        note(f"{what}, {plural(len(report.problems) + len(report.altered), 'problem')}")
        for p in [*report.problems, *report.altered]:
            warn(p)
        if report.orphans and not clean:
            note(
                f"{plural(len(report.orphans), 'unfinished registration')} (no version points "
                "at them); "
                "remove with `zoo registry check --clean`"
            )
        for run_id in report.cleaned:
            note(f"removed unfinished registration run {run_id}")
        for folder in staging:
            note(f"removed leftover staging folder {folder}")
    if report.problems:
        n = len(report.problems)
        raise IntegrityError(
            f"{plural(n, 'version')} {'points' if n == 1 else 'point'} at missing artifacts: "
            f"{report.problems[0]}"
        )
    if report.altered:
        raise IntegrityError(
            f"{plural(len(report.altered), 'artifact')} "
            f"{'was' if len(report.altered) == 1 else 'were'} altered after registration: "
            f"{report.altered[0]}; register those models again (or restore the files)"
        )


def _clean_staging() -> list[str]:
    """Leftovers of killed `zoo import` (local/), `zoo export` ($ZOO_HOME/exports) and
    `zoo registry reproduce` ($ZOO_HOME/reproduce)."""
    from zoo.deploy.export import clean_staging as clean_exports
    from zoo.disk.paths import home, remove_stale_staging, subdir
    from zoo.weights.local import clean_staging as clean_imports

    reproduced = remove_stale_staging(home() / "reproduce", "run-")
    return [str(p) for p in [*clean_imports(), *clean_exports(subdir("exports")), *reproduced]]


registry_group.add_command(tracking_uri_option(list_cmd))
registry_group.add_command(tracking_uri_option(lineage_cmd))
registry_group.add_command(serve_cmd)
registry_group.add_command(tracking_uri_option(reproduce_cmd))
registry_group.add_command(push_cmd)
registry_group.add_command(tracking_uri_option(copy_cmd))  # the source store

COMMANDS = [registry_group]
