"""Lineage as a picture: a DAG of models (base, fine-tunes, exports) with their licences,
written as SVG (drawn with matplotlib), Graphviz DOT or Mermaid.

Two graphs are drawn: a version's ancestors (:func:`ancestors_graph`, the ``lineage.svg``
artifact written at registration: ancestors never change, so the artifact stays true) and
the whole tree of ``zoo registry lineage`` (:func:`tree_graph`). A version of several
parents has an edge from each. The SVG is deterministic: the same graph gives the same
bytes (fixed font, hash salt and metadata; text kept as text, so it can be searched).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zoo.contract.errors import NotFoundError
from zoo.licenses.ids import UNKNOWN
from zoo.registry.records import TAG, RegisteredVersion, parents_of

__all__ = [
    "SVG_FILE",
    "Graph",
    "Node",
    "ancestors_graph",
    "lineage_svg",
    "to_dot",
    "to_mermaid",
    "to_svg",
    "tree_graph",
]

SVG_FILE = "lineage.svg"
_FILL = {"base": "#e8e8e8", "finetune": "#d6e6f5", "export": "#fbe3c8", "this": "#fff2b3"}


@dataclass(frozen=True)
class Node:
    reference: str
    license: str
    kind: str  # "base", "finetune", "export" or "this" (the version being registered)
    detail: str = ""  # strategy, export format

    @property
    def lines(self) -> list[str]:
        out = [self.reference, f"licence {self.license}"]
        return [*out, self.detail] if self.detail else out


@dataclass
class Graph:
    """Nodes in a fixed order (parents before children) and parent -> child edges."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: Node) -> None:
        self.nodes.setdefault(node.reference, node)

    def link(self, parent: str, child: str) -> None:
        if (parent, child) not in self.edges:
            self.edges.append((parent, child))


def _version_node(v: RegisteredVersion) -> Node:
    if v.relation == "export":
        return Node(v.model_uri, v.license, "export", f"export ({v.tags.get(TAG.FORMAT, '?')})")
    strategy = v.tags.get(TAG.STRATEGY)
    return Node(v.model_uri, v.license, "finetune", f"strategy {strategy}" if strategy else "")


def _record_parents(lineage: Mapping[str, Any]) -> list[dict[str, Any]]:
    if lineage.get("derived_from"):
        ref = str(lineage["derived_from"])
        return [{"reference": ref, "kind": "registered"}]
    return parents_of(lineage)


def ancestors_graph(
    record: Mapping[str, Any],
    *,
    label: str,
    get_version: Callable[[str], RegisteredVersion],
) -> Graph:
    """The ancestors of a version about to be registered (``record``, shown as ``label``),
    each registered one read from the store, up to the roots."""
    graph = Graph()
    order: list[Node] = []
    edges: list[tuple[str, str]] = []
    done: set[str] = set()

    def visit(parent: Mapping[str, Any], child: str) -> None:
        ref = str(parent.get("reference") or "?")
        edges.append((ref, child))
        if ref in done:
            return
        done.add(ref)
        if ref.startswith("models:/"):
            try:
                v = get_version(ref)
            except NotFoundError:  # deleted since: drawn from what the child recorded
                order.append(Node(ref, str(parent.get("license") or UNKNOWN), "finetune"))
                return
            for grand in _record_parents(v.lineage):
                visit(grand, v.model_uri)
            order.append(_version_node(v))
        else:
            order.append(Node(ref, str(parent.get("license") or UNKNOWN), "base"))

    for p in _record_parents(record):
        visit(p, label)
    for node in order:
        graph.add(node)
    lic = str((record.get("license") or {}).get("id") or UNKNOWN)
    if record.get("relation") == "export":
        fmt = (record.get("exporter") or {}).get("name") or record.get("model_format")
        detail = f"export ({fmt})"
    else:
        strategy = (record.get("strategy") or {}).get("name")
        detail = f"strategy {strategy}" if strategy else ""
    graph.add(Node(label, lic, "this", detail))
    for parent, child in edges:
        graph.link(parent, child)
    return graph


def tree_graph(roots: Iterable[Any]) -> Graph:
    """The graph of :func:`zoo.registry.tree.lineage_trees` (or ``derivative_trees``)."""
    graph = Graph()

    def visit(node: Any) -> None:
        for child in node.children:
            if child.version is None:  # a pushed repo a version here was fine-tuned from
                graph.add(Node(child.reference, child.license, "base", "not in this store"))
            else:
                graph.add(_version_node(child.version))
            graph.link(node.reference, child.reference)
            visit(child)

    for root in roots:
        graph.add(Node(root.reference, root.license, "base"))
        visit(root)
    return graph


def _quote_dot(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    """Graphviz DOT (``dot -Tsvg``)."""
    out = ["digraph lineage {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled"];']
    for ref, node in graph.nodes.items():
        label = "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in node.lines)
        fill = _FILL[node.kind]
        out.append(f'  {_quote_dot(ref)} [label="{label}", fillcolor="{fill}"];')
    out += [f"  {_quote_dot(a)} -> {_quote_dot(b)};" for a, b in graph.edges]
    return "\n".join([*out, "}"]) + "\n"


def to_mermaid(graph: Graph) -> str:
    """A Mermaid flowchart (GitHub and many wikis render it in a ```mermaid block)."""
    ids = {ref: f"n{i}" for i, ref in enumerate(graph.nodes)}
    out = ["flowchart TD"]
    for ref, node in graph.nodes.items():
        label = "<br/>".join(line.replace('"', "#quot;") for line in node.lines)
        out.append(f'  {ids[ref]}["{label}"]')
    out += [f"  {ids[a]} --> {ids[b]}" for a, b in graph.edges]
    return "\n".join(out) + "\n"


def _layers(graph: Graph) -> list[list[str]]:
    """Each node one row below its lowest parent; within a row, by the parents' places."""
    parents: dict[str, list[str]] = {ref: [] for ref in graph.nodes}
    for a, b in graph.edges:
        parents[b].append(a)
    depth: dict[str, int] = {}

    def level(ref: str, trail: frozenset[str] = frozenset()) -> int:
        if ref not in depth:
            above = [p for p in parents[ref] if p not in trail]
            depth[ref] = 1 + max((level(p, trail | {ref}) for p in above), default=-1)
        return depth[ref]

    rows: list[list[str]] = [[] for _ in range(1 + max((level(r) for r in graph.nodes), default=0))]
    place: dict[str, float] = {}
    order = {ref: i for i, ref in enumerate(graph.nodes)}
    for ref in graph.nodes:
        rows[depth[ref]].append(ref)
    for row in rows:
        row.sort(
            key=lambda r: (
                sum(place.get(p, 0.0) for p in parents[r]) / max(1, len(parents[r])),
                order[r],
            )
        )
        for i, ref in enumerate(row):
            place[ref] = i - (len(row) - 1) / 2
    return rows


def to_svg(graph: Graph, *, title: str | None = None) -> bytes:
    """The graph drawn with matplotlib (no display needed): boxes with each model's
    reference, licence and strategy or export format; arrows from parent to child."""
    import matplotlib
    from matplotlib.figure import Figure

    rows = _layers(graph)
    chars = max((len(line) for n in graph.nodes.values() for line in n.lines), default=10)
    box_w, box_h, gap_x, gap_y = 0.075 * chars + 0.3, 0.75, 0.35, 0.55
    width = max(len(r) for r in rows) * (box_w + gap_x) + gap_x
    top = 0.45 if title else 0.15
    height = len(rows) * (box_h + gap_y) - gap_y + top + 0.15
    centre: dict[str, tuple[float, float]] = {}
    for i, row in enumerate(rows):
        y = height - top - box_h / 2 - i * (box_h + gap_y)
        for j, ref in enumerate(row):
            centre[ref] = (width / 2 + (j - (len(row) - 1) / 2) * (box_w + gap_x), y)
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "zoo-lineage",
            "font.family": "DejaVu Sans",
            "font.size": 9,
        }
    ):
        fig = Figure(figsize=(width, height))
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_xlim(0, width)
        ax.set_ylim(0, height)
        ax.axis("off")
        if title:
            ax.text(width / 2, height - 0.22, title, ha="center", va="center", weight="bold")
        for a, b in graph.edges:
            (xa, ya), (xb, yb) = centre[a], centre[b]
            ax.annotate(
                "",
                xy=(xb, yb + box_h / 2),
                xytext=(xa, ya - box_h / 2),
                arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.0},
            )
        for ref, node in graph.nodes.items():
            x, y = centre[ref]
            edge = "#b8860b" if node.kind == "this" else "#666666"
            ax.text(
                x,
                y,
                "\n".join(node.lines),
                ha="center",
                va="center",
                color="#b00020" if node.license == UNKNOWN else "#111111",
                bbox={
                    "boxstyle": "round,pad=0.4",
                    "fc": _FILL[node.kind],
                    "ec": edge,
                    "lw": 1.5 if node.kind == "this" else 0.8,
                },
            )
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "zoo"})
    return buf.getvalue()


def lineage_svg(
    record: Mapping[str, Any], *, name: str, get_version: Callable[[str], RegisteredVersion]
) -> bytes:
    """The ``lineage.svg`` of a version of ``name`` being registered from ``record``."""
    label = f"{name} (this version)"
    graph = ancestors_graph(record, label=label, get_version=get_version)
    return to_svg(graph, title=f"Lineage of {name}")
