"""What zoo learns about a plugin before and while running its code.

- :func:`declared_api` reads ``zoo_plugin_api = N`` from the module's source with ``ast``,
  without executing it: ``importlib.machinery.PathFinder`` locates the file one package
  level at a time (``importlib.util.find_spec`` would import the parent packages of a
  dotted name). A plugin needing a newer API is refused before any of its code runs.
- :func:`captured` collects what a plugin prints while it is imported or registers, so
  that nothing a plugin writes reaches stdout (``--json`` stays one JSON document).
"""

from __future__ import annotations

import ast
import contextlib
import io
from collections.abc import Iterator
from importlib.machinery import PathFinder
from pathlib import Path

__all__ = ["NOT_DECLARED", "captured", "declared_api"]

NOT_DECLARED = object()  # no literal ``zoo_plugin_api = ...`` at the module's top level


def _source_file(module: str) -> Path | None:
    path: list[str] | None = None
    spec = None
    for part in module.split("."):
        spec = PathFinder.find_spec(part, path)
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    if not origin or not origin.endswith(".py"):
        return None
    return Path(origin)


def declared_api(module: str) -> object:
    """The literal value assigned to ``zoo_plugin_api`` at the top of ``module``'s source,
    or NOT_DECLARED (no such assignment, not a literal, no readable source: the value is
    then checked once the module is imported)."""
    path = _source_file(module)
    if path is None:
        return NOT_DECLARED
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return NOT_DECLARED  # the import reports it
    found: object = NOT_DECLARED
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "zoo_plugin_api" for t in targets):
            try:
                found = ast.literal_eval(node.value)  # type: ignore[arg-type]
            except ValueError:
                found = NOT_DECLARED
    return found


class Captured:
    """Text a plugin wrote to stdout/stderr while zoo ran its code."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()

    @property
    def text(self) -> str:
        return self.buffer.getvalue()


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    """Redirect Python-level stdout and stderr into one buffer while the block runs."""
    box = Captured()
    with contextlib.redirect_stdout(box.buffer), contextlib.redirect_stderr(box.buffer):
        yield box
