"""`zoo list`, `zoo info`, `zoo strategies` (`zoo plugins`: zoo/cli/plugins.py)."""

from __future__ import annotations

import click

from zoo.cli.output import console, emit_json, note

_MAX_ROWS = 200


def _fmt_params(n: int | None) -> str:
    if n is None:
        return ""
    return f"{n / 1e6:.1f}M"


@click.command("list")
@click.argument("pattern", required=False)
@click.option("--provider", "-p", help="Only this provider (hf is contacted only when named).")
@click.option("--pretrained", is_flag=True, help="Only entries with pretrained weights.")
@click.option("--license", "license_", metavar="ID", help="Only this licence id (e.g. apache-2.0).")
@click.option(
    "--timeout", default=10.0, show_default=True, help="Seconds to wait for a remote hub."
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
    from zoo.catalog import list_models

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
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("reference", "licence", "params", "input", "source"):
        table.add_column(col, overflow="fold")
    for e in listing.entries[:_MAX_ROWS]:
        size = f"{e.input_size[1]}x{e.input_size[2]}" if e.input_size else ""
        lic = e.license if e.license != "unknown" else "[yellow]unknown[/]"
        table.add_row(e.reference, lic, _fmt_params(e.num_params), size, e.source or "")
    out = console()
    out.print(table)
    shown = min(len(listing.entries), _MAX_ROWS)
    tail = (
        f" (showing {shown}; narrow the pattern or use --json)"
        if shown < len(listing.entries)
        else ""
    )
    out.print(f"{len(listing.entries)} models{tail}")


@click.command("info")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def info_cmd(ref: str, as_json: bool) -> None:
    """Describe one backbone: input config, licence, source, size.

    \b
      zoo info timm:resnet50.a1_in1k
      zoo info torchvision:efficientnet_b0
    """
    from zoo.catalog import describe

    info = describe(ref)
    extra = _info_extras(info.reference)
    if as_json:
        emit_json("model_info", model=info.to_dict(), **extra)
        return
    from rich.table import Table

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in info.to_dict().items():
        if key == "license" and value == "unknown":
            value = "[yellow]unknown (check the source before shipping a derivative)[/]"
        table.add_row(key, "" if value is None else str(value))
    for key, value in extra.items():
        table.add_row(key, str(value))
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
    architecture built on the meta device: no weights are read or allocated. A provider
    that cannot build that way simply shows none."""
    try:
        import torch

        from zoo.build import build_backbone

        with torch.device("meta"):
            backbone = build_backbone(reference, pretrained=False)
        return {"stages": [name for name, _ in backbone.stages()]}
    except Exception:
        return {}


_INFO_EXTRAS.append(_stage_extras)


@click.command("strategies")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def strategies_cmd(as_json: bool) -> None:
    """List fine-tuning strategies and the plugin that provides each."""
    from zoo.plugins import get_plugin_manager

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
