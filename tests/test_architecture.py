"""docs/architecture.md's room map is the tree: every folder and top-level module of zoo/
is named in the map, every module of a room in its paragraph, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo"
DOC = ROOT / "docs" / "architecture.md"
ROOMS_WITH_PARAGRAPHS = (
    "contract",
    "catalog",
    "weights",
    "disk",
    "licenses",
    "choose",
    "registry",
    "deploy",
    "upkeep",
)


def _section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _map_entries() -> set[str]:
    """The names in the map's `zoo/` block: `room/` and `module.py` one level down."""
    block = _section("Rooms").split("    zoo/", 1)[1].split("\n    plugins/", 1)[0]
    return set(re.findall(r"^ {6}(\w+/|\w+\.py)", block, flags=re.M))


def _tree_entries() -> set[str]:
    found = set()
    for path in ZOO.iterdir():
        if path.name.startswith(("_", ".")):
            continue
        if path.is_dir():
            found.add(path.name + "/")
        elif path.suffix == ".py":
            found.add(path.name)
    return found


def test_the_room_map_names_every_folder_and_module_of_zoo_and_nothing_else() -> None:
    assert _map_entries() == _tree_entries()


def test_each_room_paragraph_names_every_module_of_its_room_and_no_other() -> None:
    rooms = _section("Rooms")
    for room in ROOMS_WITH_PARAGRAPHS:
        match = re.search(rf"^\*\*{room}/\*\*(.*?)(?=^\*\*|\Z)", rooms, flags=re.M | re.S)
        assert match, f"docs/architecture.md has no paragraph for {room}/"
        named = set(re.findall(r"`(\w+\.py)`", match.group(1)))
        modules = {p.name for p in (ZOO / room).glob("*.py") if p.name != "__init__.py"}
        assert named == modules, room


MAX_LINES = 400


def test_no_module_in_zoo_or_the_plugins_is_over_400_lines() -> None:
    over = {
        str(path.relative_to(ROOT))
        for folder in (ZOO, ROOT / "plugins")
        for path in folder.rglob("*.py")
        if "tests" not in path.parts
        and len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES
    }
    assert over == set()
