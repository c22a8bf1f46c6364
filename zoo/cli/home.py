"""`zoo home ...`: where zoo keeps its files, and moving them without breaking the store."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.output import emit_json, note


@click.group("home")
def home_group() -> None:
    """The zoo home ($ZOO_HOME): every file zoo writes.

    \b
      zoo home path
      zoo home move /data/zoo      then: export ZOO_HOME=/data/zoo
    """


@home_group.command("path")
def path_cmd() -> None:
    """Print the zoo home folder."""
    from zoo.home import home

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
    from zoo.store_move import move_home

    old, new, changed = move_home(dest)
    if as_json:
        emit_json("home_move", old=str(old), new=str(new), rewritten=changed)
        return
    note(f"zoo home {old} -> {new} ({changed} artifact locations rewritten)")
    note(f"set ZOO_HOME={new} (e.g. export ZOO_HOME={new}) for the next commands")


COMMANDS = [home_group]
