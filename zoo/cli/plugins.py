"""`zoo plugins` (what is installed, what each registered, what failed) and
`zoo plugins new` (a plugin package from zoo's template)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zoo.cli.output import console, emit_json, note


def _exporters() -> list[dict[str, Any]]:
    """Each exporter with its --precision values (what `zoo export --format` accepts)."""
    from zoo.contract.plugins import get_plugin_manager

    pm = get_plugin_manager()
    try:
        exporters = pm.exporters()
    except Exception:  # duplicates: reported as problems
        return []
    return [
        {
            "name": name,
            "plugin": pm.owner("exporter", name),
            "precisions": list(e.precisions),
            "summary": e.summary,
        }
        for name, e in sorted(exporters.items())
    ]


def _rows(hook: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    from zoo.contract.errors import UsageError
    from zoo.contract.plugins import get_plugin_manager

    pm = get_plugin_manager()
    problems = pm.collect_all()  # fills "registered"; duplicates come back as lines
    specs = sorted(
        name
        for name, caller in vars(pm.pm.hook).items()
        if not name.startswith("_") and getattr(caller, "spec", None) is not None
    )
    if hook is not None and hook not in specs:
        raise UsageError(f"no hook named '{hook}': zoo's hooks are {', '.join(specs)}")
    plugins = sorted(pm.plugins.values(), key=lambda p: p.name)
    if hook is not None:
        plugins = [p for p in plugins if hook in p.hooks]
    return [p.to_dict() for p in plugins], problems


@click.group("plugins", invoke_without_command=True)
@click.option("--hook", metavar="NAME", help="Only plugins implementing this hook.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
@click.pass_context
def plugins_group(ctx: click.Context, hook: str | None, as_json: bool) -> None:
    """List installed plugins: version, hooks, what each registered, what failed.

    A plugin that failed to load, or registered something that breaks zoo's contract, is
    listed with its error and skipped; one whose command would replace another is listed
    with the conflict. Write a new plugin with `zoo plugins new NAME`.

    \b
      zoo plugins
      zoo plugins --hook register_exporters --json
    """
    if ctx.invoked_subcommand is not None:
        return
    from zoo.contract.plugins import get_plugin_manager

    plugins, problems = _rows(hook)
    precisions = {e["name"]: e["precisions"] for e in _exporters()}
    if as_json:
        emit_json("plugin_list", plugins=plugins, problems=problems, exporters=_exporters())
        return
    from rich.table import Table

    table = Table()
    for col in ("plugin", "distribution", "hooks", "registered", "status"):
        table.add_column(col, overflow="fold")
    for p in plugins:
        dist = f"{p['distribution']} {p['version']}" if p["distribution"] else ""
        registered = "; ".join(
            f"{kind}: "
            + ", ".join(
                f"{n} ({'/'.join(precisions[n])})" if kind == "exporter" and n in precisions else n
                for n in names
            )
            for kind, names in p["registered"].items()
        )
        if p["status"] == "failed":
            status = f"[red]failed[/]: {p['error']}"
        elif p["status"] == "conflict":
            status = "[yellow]conflict[/]: " + "; ".join(p["conflicts"])
        else:
            status = "[green]ok[/]"
        table.add_row(p["name"], dist, ", ".join(p["hooks"]), registered, status)
    console().print(table)
    for line in problems:
        note(line)
    for info in sorted(get_plugin_manager().plugins.values(), key=lambda p: p.name):
        printed = info.printed.strip().splitlines()
        if printed and (hook is None or hook in info.hooks):
            note(
                f"plugin '{info.name}' printed {len(printed)} line(s) while loading (kept off "
                f"stdout), the first: {printed[0][:200]!r}"
            )


@plugins_group.command("new")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["provider", "strategy", "exporter"]),
    default="provider",
    show_default=True,
    help="What the plugin registers.",
)
@click.option(
    "--dir",
    "parent",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("."),
    show_default=True,
    help="Where to create the NAME folder.",
)
def new_cmd(name: str, kind: str, parent: Path) -> None:
    """Write a plugin package NAME/ whose own tests pass as written.

    The package (distribution zoo-NAME, module zoo_NAME) registers one KIND through the
    `zoo` entry-point group and tests it with zoo.testing's contract checks.

    \b
      zoo plugins new demo
      cd demo && python -m pip install -e . && python -m pytest
    """
    from zoo.plugin_template import render_plugin

    folder = render_plugin(name, kind=kind, parent=parent)
    click.echo(f"wrote {folder}: pip install -e {folder} && python -m pytest {folder}")


COMMANDS = [plugins_group]
