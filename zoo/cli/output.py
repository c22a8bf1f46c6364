"""Output helpers shared by commands: versioned JSON, rich tables, plain lines under CI."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

__all__ = ["SCHEMA_VERSION", "console", "emit_json", "is_plain", "note", "plural", "warn"]

# Bumped when a --json document changes incompatibly; documented in docs/json.md.
SCHEMA_VERSION = 1


def emit_json(kind: str, **payload: Any) -> None:
    """Print one JSON document: {"schema_version": N, "kind": KIND, ...payload}."""
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind, **payload}
    click.echo(json.dumps(doc, indent=2, default=str))


def is_plain() -> bool:
    """Plain lines instead of live bars: under CI=true or when stdout is not a terminal."""
    return os.environ.get("CI", "").lower() in {"1", "true"} or not sys.stderr.isatty()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False, highlight=False)


def warn(message: str) -> None:
    click.echo(f"zoo: warning: {message}", err=True)


def note(message: str) -> None:
    click.echo(f"zoo: {message}", err=True)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 version``, ``2 versions``, ``0 versions`` (``nouns`` for irregular plurals)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"
