"""`zoo plugins new NAME --kind KIND`: a plugin package from the files in this folder.

``common/`` holds what every kind shares (pyproject.toml, README, the listing test);
``<kind>/`` the module and its contract test. Files end in ``.tmpl`` (so neither ruff nor
pytest reads them here) and name their placeholders ``{{name}}``, ``{{module}}``,
``{{dist}}``, ``{{class}}`` and ``{{plugin_api}}``.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from zoo.contract.errors import UsageError

__all__ = ["KINDS", "render_plugin"]

KINDS = ("provider", "strategy", "exporter")
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def _values(name: str, kind: str) -> dict[str, str]:
    from zoo.contract.hookspecs import PLUGIN_API

    module = "zoo_" + name.replace("-", "_")
    return {
        "name": name,
        "module": module,
        "dist": f"zoo-{name}",
        "class": "".join(part.title() for part in name.split("-")) + kind.title(),
        "kind": kind,
        "plugin_api": str(PLUGIN_API),
    }


def render_plugin(name: str, *, kind: str = "provider", parent: Path = Path(".")) -> Path:
    """Write ``parent/NAME/`` and return it; refuses a name or folder that is taken."""
    if not _NAME.match(name):
        raise UsageError(
            f"'{name}' is not a plugin name: use lowercase letters, digits and '-', starting "
            "with a letter (it becomes the provider scheme, zoo-NAME and zoo_NAME)"
        )
    if kind not in KINDS:
        raise UsageError(f"--kind is one of {', '.join(KINDS)}, not {kind}")
    folder = parent / name
    if folder.exists():
        raise UsageError(f"{folder} already exists: choose another name or --dir")
    values = _values(name, kind)
    root = resources.files(__name__)
    files: dict[str, str] = {}
    for sub in ("common", kind):
        for rel, text in _read_tree(root / sub, ""):
            files[rel] = text
    for rel, text in sorted(files.items()):
        target_rel = rel.removesuffix(".tmpl").replace("__module__", values["module"])
        target = folder / target_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_fill(text, values), encoding="utf-8")
    return folder


def _read_tree(node: object, prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):  # type: ignore[attr-defined]
        rel = f"{prefix}{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                out.extend(_read_tree(child, rel + "/"))
        elif child.name.endswith(".tmpl"):
            out.append((rel, child.read_text(encoding="utf-8")))
    return out


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text
