"""`zoo list`, `zoo info`, `zoo strategies` (`zoo plugins`: zoo/cli/plugins.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover
    from zoo.contract.types import BackboneInfo

from zoo.cli.options import TIMEOUT
from zoo.cli.output import aligned, console, emit_json, note, plural, readable

_MAX_ROWS = 200


def _input(e: BackboneInfo) -> str:
    return f"{e.input_size[1]}x{e.input_size[2]}" if e.input_size else ""


# `zoo list`'s columns: each filled for some entry of every provider that lists any
# (tests/test_catalog.py checks). Parameter counts are not among them: timm states none,
# and counting 1,100 architectures would cost minutes; `zoo info` counts one.
LIST_COLUMNS: tuple[tuple[str, Callable[[BackboneInfo], str]], ...] = (
    ("reference", lambda e: e.reference),
    ("licence", lambda e: e.license),
    ("dataset", lambda e: e.pretrained_dataset or ""),
    ("input", _input),
    ("source", lambda e: e.source or ""),
)


@click.command("list")
@click.argument("pattern", required=False)
@click.option("--provider", "-p", help="Only this provider (hf is contacted only when named).")
@click.option("--pretrained", is_flag=True, help="Only entries with pretrained weights.")
@click.option("--license", "license_", metavar="ID", help="Only this licence id (e.g. apache-2.0).")
@click.option(
    "--timeout",
    type=TIMEOUT,
    default=10.0,
    show_default=True,
    help="Seconds to wait for a remote hub (more than 0, at most 3600).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def list_cmd(
    pattern: str | None,
    provider: str | None,
    pretrained: bool,
    license_: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """List backbones from every provider; PATTERN is a glob such as 'resnet50*'.

    \b
      zoo list 'resnet50*'
      zoo list 'convnext*' --pretrained --license apache-2.0
      zoo list 'vit*' --provider hf        # asks the Hugging Face Hub
    """
    from zoo.catalog.listing import list_models

    listing = list_models(
        pattern, provider=provider, pretrained=pretrained, license=license_, timeout=timeout
    )
    for line in listing.notes:
        note(line)
    if as_json:
        emit_json(
            "model_list",
            count=len(listing.entries),
            notes=listing.notes,
            models=[e.to_dict() for e in listing.entries],
        )
        return
    rows = [[cell(e) for _, cell in LIST_COLUMNS] for e in listing.entries[:_MAX_ROWS]]
    if rows:
        click.echo(aligned([col for col, _ in LIST_COLUMNS], rows))
    shown = min(len(listing.entries), _MAX_ROWS)
    tail = (
        f" (showing {shown}; narrow the pattern or use --json)"
        if shown < len(listing.entries)
        else ""
    )
    click.echo(f"{plural(len(listing.entries), 'model')}{tail}")


@click.command("info")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def info_cmd(ref: str, as_json: bool) -> None:
    """Describe one backbone: input config, licence, source, size.

    REF may join several references with commas (REF1,REF2): each is described in turn.

    \b
      zoo info timm:resnet50.a1_in1k
      zoo info torchvision:efficientnet_b0
      zoo info effnet-lite:lite0,effnet-lite:lite1
    """
    from zoo.catalog.index import describe, resolution_note
    from zoo.contract.refs import is_joined, parse_refs

    def described(asked: str) -> BackboneInfo:
        info = describe(asked)
        said = resolution_note(asked, info.reference)
        if said:
            note(said)
        return info

    if is_joined(ref):
        parts = [described(str(part)) for part in parse_refs(ref)]  # every part checked first
        if as_json:
            emit_json(
                "model_info_joined",
                models=[{"model": i.to_dict(), **_info_extras(i.reference)} for i in parts],
            )
            return
        for i, part in enumerate(parts):
            if i:
                console().print()
            console().print(f"[bold]{part.reference}[/]")
            _print_info(part)
        return
    info = described(ref)
    if as_json:
        emit_json("model_info", model=info.to_dict(), **_info_extras(info.reference))
        return
    _print_info(info)


def _print_info(info: BackboneInfo) -> None:
    from rich.table import Table

    extra = _info_extras(info.reference)

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in info.to_dict().items():
        if value is None:
            continue  # not stated for these weights (e.g. imagenet_top1 on timm's): not shown
        if key == "license" and value == "unknown":
            value = "[yellow]unknown (check the source before shipping a derivative)[/]"
        table.add_row(key, str(value))
    for key, value in extra.items():
        table.add_row(key, readable(value))
    console().print(table)


def _info_extras(reference: str) -> dict[str, object]:
    """Extra facts other parts of zoo attach to `zoo info` (e.g. the local cache record)."""
    extras: dict[str, object] = {}
    for hook in _INFO_EXTRAS:
        extras.update(hook(reference))
    return extras


# Functions reference -> dict of extra fields; modules of higher features append to it.
_INFO_EXTRAS: list = []


def _stage_extras(reference: str) -> dict[str, object]:
    """The backbone's stage names, input to head (what ``--unfreeze`` counts), from its
    architecture built on the meta device once (no weights are read or allocated) and
    then kept with the catalogue. A provider that cannot build that way shows none."""
    from zoo.catalog.index import cached_fact

    def count() -> list[str] | None:
        try:
            import torch

            from zoo.catalog.build import build_backbone

            with torch.device("meta"):
                backbone = build_backbone(reference, pretrained=False)
            return [name for name, _ in backbone.stages()]
        except Exception:
            return None

    stages = cached_fact(reference, "stages", count)
    return {"stages": stages} if stages else {}


_INFO_EXTRAS.append(_stage_extras)


@click.command("strategies")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def strategies_cmd(as_json: bool) -> None:
    """List fine-tuning strategies and the plugin that provides each."""
    from zoo.contract.plugins import get_plugin_manager

    pm = get_plugin_manager()
    strategies = pm.strategies()
    rows = [
        {"name": name, "summary": getattr(s, "summary", ""), "plugin": pm.owner("strategy", name)}
        for name, s in sorted(strategies.items())
    ]
    if as_json:
        emit_json("strategy_list", strategies=rows)
        return
    from rich.table import Table

    table = Table()
    for col in ("strategy", "plugin", "what it does"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["plugin"] or "", r["summary"])
    console().print(table)


COMMANDS = [list_cmd, info_cmd, strategies_cmd]
