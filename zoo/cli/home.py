"""`zoo home ...`: where zoo keeps its files, what they weigh, pruning, moving them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zoo.cli.output import console, emit_json, note, warn


@click.group("home")
def home_group() -> None:
    """The zoo home ($ZOO_HOME): every file zoo writes.

    \b
      zoo home path
      zoo home du                  what it holds, by kind
      zoo home prune               what prune would remove (a dry run); --yes removes
      zoo home move /data/zoo      then: export ZOO_HOME=/data/zoo
    """


@home_group.command("path")
def path_cmd() -> None:
    """Print the zoo home folder."""
    from zoo.disk.paths import home

    click.echo(str(home()))


@home_group.command("move")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def move_cmd(dest: Path, as_json: bool) -> None:
    """Move the zoo home to DEST and rewrite the store's artifact locations.

    MLflow keeps absolute artifact locations, so a folder moved with `mv` leaves every
    registered version pointing at the old place. This moves the folder and rewrites
    the embedded store's locations so zoo and plain MLflow clients keep working. If the
    home was already moved by hand, run it with DEST = the new place to only rewrite.
    Run it while no other zoo command is running, then set ZOO_HOME=DEST.
    """
    from zoo.upkeep.move import move_home

    old, new, changed = move_home(dest)
    if as_json:
        emit_json("home_move", old=str(old), new=str(new), rewritten=changed)
        return
    note(f"zoo home {old} -> {new} ({changed} artifact locations rewritten)")
    note(f"set ZOO_HOME={new} (e.g. export ZOO_HOME={new}) for the next commands")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class Age(click.ParamType):
    """A time ago: a number with a unit, s, m, h, d or w (``7d``, ``12h``, ``0d``)."""

    name = "AGE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        text = str(value).strip().lower()
        try:
            seconds = float(text[:-1]) * _UNITS[text[-1:]]
        except (KeyError, ValueError):
            seconds = float("nan")
        if not 0 <= seconds < float("inf"):
            self.fail(
                f"{value!r} is not an age: give a number with s, m, h, d or w (e.g. 7d, 12h, 0d)",
                param,
                ctx,
            )
        return seconds


@home_group.command("du")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def du_cmd(as_json: bool) -> None:
    """What the home holds, by kind: sizes and file counts.

    Kinds: the registry store and its artifacts, exports, pulled weights, local imports,
    checkpoints of registered and of unfinished runs, run records, feature, stage-feature
    and frozen-prefix caches, decoded images, image check verdicts, catalogue indexes,
    logs, other. Every file counts once, by its size; pulled Hub files in the Hugging Face
    cache are shown apart (they are outside the home). Writes nothing.
    """
    from zoo.disk.paths import existing_home
    from zoo.upkeep.usage import human, measure

    usage = measure(existing_home())
    if as_json:
        emit_json("home_du", **usage.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"{usage.root}")
    table.add_column("kind")
    table.add_column("files", justify="right")
    table.add_column("size", justify="right")
    for k in usage.kinds.values():
        if k.files:
            table.add_row(k.label, str(k.files), human(k.bytes))
    table.add_row("total", str(usage.files), human(usage.bytes), style="bold")
    out = console()
    out.print(table)
    if usage.outside_models:
        out.print(
            f"outside the home: pulled Hub weights in the Hugging Face cache, "
            f"{usage.outside_models} model(s), {human(usage.outside_bytes)}"
        )
    for folder in usage.unreadable:
        warn(f"{folder} could not be read: not counted")
    note("`zoo home prune` shows what can go (a dry run; --yes removes)")


@home_group.command("prune")
@click.option(
    "--older-than",
    type=Age(),
    default="7d",
    show_default=True,
    help="Remove caches and decoded images not used for this long (s, m, h, d, w; 0d: all).",
)
@click.option(
    "--unreferenced-weights",
    is_flag=True,
    help="Also remove pulled weights no registered lineage, local import or unfinished run "
    "refers to.",
)
@click.option("--yes", "-y", is_flag=True, help="Remove (without it: a dry run, nothing removed).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def prune_cmd(older_than: float, unreferenced_weights: bool, yes: bool, as_json: bool) -> None:
    """Free space: a dry run unless --yes.

    \b
    Removes:
      checkpoints of runs that registered a version (each run keeps its result.json:
        the same finetune command prints the registered version, trains nothing);
      feature, stage-feature and frozen-prefix caches, decoded images and image
        check verdicts not used for --older-than (default 7d; they are recomputed
        when needed);
      with --unreferenced-weights, pulled weights nothing refers to.
    Never: the registry store and its artifacts, exports, local imports, run records,
    checkpoints of unfinished runs, pulled weights a lineage or local import refers to.

    A running fine-tune's checkpoints (it holds its recipe lock) and caches a running
    finetune or rank uses are skipped, and the output says so. Removal moves the files
    aside first: an error removes nothing.
    """
    from zoo.disk.paths import ReadOnlyHomeError, existing_home, is_writable
    from zoo.upkeep.prune import apply, planned
    from zoo.upkeep.usage import human

    root = existing_home()
    if yes and not is_writable(root):
        raise ReadOnlyHomeError(
            f"ZOO_HOME {root} is read-only: zoo home prune --yes removes files there, nothing "
            "was removed. Make it writable (or run without --yes for the dry run)"
        )
    with planned(
        root, older_than=older_than, unreferenced_weights=unreferenced_weights, removing=yes
    ) as plan:
        failed = apply(plan) if yes else []
    if as_json:
        emit_json("home_prune", dry_run=not yes, failed=failed, **plan.to_dict())
    else:
        for item in plan.items:
            click.echo(f"{human(item.bytes):>10}  {item.what}")
        for skip in plan.skipped:
            note(f"skipped {skip.what}: {skip.reason}")
        for line in plan.kept:
            note(f"kept: {line}")
        done = "removed" if yes else "would remove"
        count = f"{len(plan.items)} item{'' if len(plan.items) == 1 else 's'}"
        note(f"{done} {count}, {human(plan.bytes)}" + ("" if yes else "; --yes removes them"))
    if failed:
        from zoo.contract.errors import UsageError

        raise UsageError(
            f"{len(failed)} pulled model(s) could not be removed ({failed[0]}); the rest was "
            "removed. Remove them with `zoo cache rm REF`"
        )


COMMANDS = [home_group]
