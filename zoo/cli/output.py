"""Output helpers shared by commands: versioned JSON, tables, plain lines under CI."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

__all__ = [
    "SCHEMA_VERSION",
    "aligned",
    "console",
    "emit_json",
    "is_plain",
    "note",
    "plural",
    "warn",
]

# Bumped when a --json document changes incompatibly; documented in docs/json.md.
SCHEMA_VERSION = 1


def emit_json(kind: str, **payload: Any) -> None:
    """Print one JSON document: {"schema_version": N, "kind": KIND, ...payload}."""
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind, **payload}
    click.echo(json.dumps(doc, indent=2, default=str))


def is_plain() -> bool:
    """Plain lines instead of live bars: under CI=true or when stdout is not a terminal."""
    return os.environ.get("CI", "").lower() in {"1", "true"} or not sys.stderr.isatty()


# In a pipe a table's rows are never wrapped (as `ls -l` or `kubectl get` print them):
# rich's 80 columns would fold long cells onto lines of their own. COLUMNS still wins.
_PIPE_WIDTH = 100_000


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr): the terminal's width on a terminal, no
    wrapping at all in a pipe or a file unless COLUMNS says otherwise."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty())
    width = _PIPE_WIDTH if piped and not os.environ.get("COLUMNS") else None
    return Console(stderr=stderr, soft_wrap=False, highlight=False, width=width)


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows in columns two spaces apart under their headers, as ``pip list`` or ``kubectl
    get`` print a listing: greppable, never wrapped, and cheap (a listing is what users
    run most; rich's import and table cost more than the rest of ``zoo list``)."""
    table = [list(headers), *([c.replace("\n", " ") for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    rule = ["-" * w for w in widths]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (table[0], rule, *table[1:])
    )


def warn(message: str) -> None:
    click.echo(f"zoo: warning: {message}", err=True)


def note(message: str) -> None:
    click.echo(f"zoo: {message}", err=True)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 version``, ``2 versions``, ``0 versions`` (``nouns`` for irregular plurals)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "none" if value is None else str(value)


def readable(value: Any, indent: str = "") -> str:
    """A nested record (strategy settings, an import record) as lines of ``key: value``
    for a table cell, nested records indented and lists of records numbered, instead of
    a Python dict's repr."""
    if not isinstance(value, (dict, list, tuple)):
        return indent + _scalar(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return indent + "none"
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return indent + ", ".join(_scalar(v) for v in value)
        return "\n".join(readable(v, indent) for v in value)
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            lines += [f"{indent}{key}:", readable(item, indent + "  ")]
        elif isinstance(item, (list, tuple)) and any(isinstance(v, dict) for v in item):
            for i, entry in enumerate(item, 1):
                lines += [f"{indent}{key} {i}:", readable(entry, indent + "  ")]
        else:
            lines.append(f"{indent}{key}: {readable(item).strip() if item != {} else 'none'}")
    return "\n".join(lines) if lines else indent + "none"
