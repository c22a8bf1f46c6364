"""Render docs/cli-reference.md from the commands themselves, so the page cannot drift.

    python -m zoo.cli.reference > docs/cli-reference.md

tests/test_docs.py fails when the committed page differs from what this prints.
"""

from __future__ import annotations

import click

HEADER = """# CLI reference

Generated from the commands' own `--help` by `python -m zoo.cli.reference >
docs/cli-reference.md`; do not edit by hand. Exit codes and environment: docs/cli.md.
"""


def _walk(command: click.Command, path: list[str], out: list[str]) -> None:
    # The root group's help option names (-h, --help) hold for every subcommand, as in the
    # real CLI, whichever context click happened to cache a command's help option from.
    ctx = click.Context(
        command,
        info_name=" ".join(path),
        terminal_width=100,
        max_content_width=100,
        help_option_names=["-h", "--help"],
    )
    out.append(f"\n## `{' '.join(path)}`\n\n```text\n{command.get_help(ctx).rstrip()}\n```\n")
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                _walk(sub, [*path, name], out)


def render() -> str:
    """The whole reference page for the built-in commands (no third-party plugins)."""
    import os

    from zoo.cli import build_cli
    from zoo.contract.plugins import reset_plugin_manager

    first_party = "timm,torchvision,hf,local,strategies,onnx"
    old = os.environ.get("ZOO_LOAD_PLUGINS")
    os.environ["ZOO_LOAD_PLUGINS"] = first_party
    reset_plugin_manager()
    try:
        out = [HEADER]
        _walk(build_cli(), ["zoo"], out)
        return "".join(out)
    finally:
        if old is None:
            os.environ.pop("ZOO_LOAD_PLUGINS", None)
        else:
            os.environ["ZOO_LOAD_PLUGINS"] = old
        reset_plugin_manager()


if __name__ == "__main__":
    print(render(), end="")
