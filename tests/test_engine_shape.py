"""The engine's shape (docs/architecture.md): a short loop, small parts, no import circle,
and only the MLflow listener (tracking.py, with register.py) talks to MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).parents[1] / "zoo" / "engine"


def _imports(path: Path) -> set[str]:
    """Every zoo module a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {f"zoo.engine.{p.stem}": p for p in ENGINE.glob("*.py") if p.stem != "__init__"}
    return {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_the_loop_is_short_and_every_part_small() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in ENGINE.glob("*.py")}
    assert sizes["run.py"] < 300, sizes
    assert max(sizes.values()) <= 400, sizes


def test_no_part_imports_the_loop_and_there_is_no_circle() -> None:
    graph = _graph()
    importers = {name for name, deps in graph.items() if "zoo.engine.run" in deps}
    assert importers <= {"zoo.engine.job"}, importers  # finetune() runs the loop

    def visit(node: str, path: tuple[str, ...]) -> None:
        for dep in graph[node]:
            assert dep not in path, " -> ".join((*path, dep))
            visit(dep, (*path, dep))

    for name in graph:
        visit(name, (name,))


def test_only_tracking_talks_to_mlflow() -> None:
    for path in ENGINE.glob("*.py"):
        imported = _imports(path)
        talks = any(
            m == "mlflow" or m.startswith(("mlflow.", "zoo.registry.store")) for m in imported
        )
        assert not talks or path.name in {"tracking.py", "register.py"}, path.name
    assert not any(m.startswith("zoo.registry") for m in _imports(ENGINE / "run.py"))
