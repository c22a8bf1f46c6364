"""`zoo registry lineage`: the tree of a registered model, or every registered derivative of
a catalogue reference, as text, SVG, Graphviz DOT or Mermaid. Attached to the `zoo
registry` group by zoo/cli/registry.py (which adds its --tracking-uri option)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from zoo.cli.output import console, emit_json, note, warn

__all__ = ["license_cell", "lineage_cmd", "warn_unknown"]

FORMATS = ("text", "svg", "dot", "mermaid")


def license_cell(license_id: str) -> str:
    return "[yellow]unknown ⚠[/]" if license_id == "unknown" else license_id


def warn_unknown(versions: list[Any]) -> None:
    for v in versions:
        if v.license_warning:
            warn(v.license_warning)


def _trees(name: str) -> tuple[list[Any], str]:
    """The trees NAME asks for, and what to call them (a picture's title)."""
    from zoo.contract.errors import UsageError
    from zoo.contract.refs import parse_ref
    from zoo.registry.tree import derivative_trees, lineage_trees

    ref = parse_ref(name)
    if ref.scheme == "bare":
        return lineage_trees(name), f"Lineage of {name}"
    if ref.is_registered:
        raise UsageError(
            f"'{name}' is a registered version: give its model name (zoo registry lineage "
            f"{ref.name}) or a catalogue reference such as timm:ARCH"
        )
    return derivative_trees(name), f"Registered derivatives of {name}"


def _text(roots: list[Any]) -> None:
    from rich.tree import Tree

    out = console()
    for root in roots:
        tree = Tree(f"[bold]{root.reference}[/]  {license_cell(root.license)}")

        def add(branch: Any, node: Any) -> None:
            for child in node.children:
                v = child.version
                bits = [f"[bold]{child.reference}[/]", license_cell(child.license)]
                if v is None:  # a pushed repo a version here was fine-tuned from
                    add(branch.add("  ".join([*bits, "(not in this store)"])), child)
                    continue
                if v.relation == "export":
                    bits.append(f"export ({v.tags.get('zoo.format', '?')})")
                elif v.tags.get("zoo.strategy"):
                    bits.append(f"strategy {v.tags['zoo.strategy']}")
                if v.aliases:
                    bits.append("@" + ", @".join(v.aliases))
                if v.tags.get("zoo.license_override"):
                    bits.append(f"[magenta]licence override: {v.tags['zoo.license_override']}[/]")
                if child.also_under:
                    bits.append(f"(also under {', '.join(child.also_under)})")
                add(branch.add("  ".join(bits)), child)

        add(tree, root)
        out.print(tree)


def _picture(roots: list[Any], fmt: str, title: str) -> bytes:
    from zoo.registry.picture import to_dot, to_mermaid, to_svg, tree_graph

    graph = tree_graph(roots)
    if fmt == "svg":
        return to_svg(graph, title=title)
    return (to_dot(graph) if fmt == "dot" else to_mermaid(graph)).encode("utf-8")


@click.command("lineage")
@click.argument("name", metavar="NAME|REF")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: a tree on the terminal; svg: a picture (drawn with matplotlib); dot: "
    "Graphviz (`dot -Tpng`); mermaid: a flowchart for Markdown pages.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the svg, dot or mermaid output to this file instead of stdout ('-': stdout).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def lineage_cmd(name: str, fmt: str, output: Path | None, as_json: bool) -> None:
    """Tree from the root base model to every derivative of NAME, with licences; or, for
    a catalogue reference (timm:ARCH, effnet-lite:lite0, local:NAME, ...), every
    registered derivative of that base, whatever model name it was registered under.

    Exports (ONNX, ...) appear under the version they were made from; a version of
    several parents under each of them (a DAG in the pictures).

    \b
      zoo registry lineage pets
      zoo registry lineage effnet-lite:lite0
      zoo registry lineage pets --format svg -o pets-lineage.svg
      zoo registry lineage pets --format mermaid -o pets-lineage.mmd
    """
    from zoo.contract.errors import UsageError

    if as_json and fmt != "text":
        raise UsageError(f"--json and --format {fmt} are two outputs: give one of them")
    if output is not None and fmt == "text":
        raise UsageError("--output writes a picture: add --format svg, dot or mermaid")
    roots, title = _trees(name)
    if as_json:
        emit_json("registry_lineage", name=name, roots=[r.to_dict() for r in roots])
        return
    if not roots:
        note(f"no registered version derives from {name}")
        return
    unknown = [n.version for r in roots for n in r.walk() if n.version and n.license == "unknown"]
    if fmt == "text":
        _text(roots)
    else:
        data = _picture(roots, fmt, title)
        if output is None or str(output) == "-":
            click.echo(data, nl=False)  # bytes go to the binary stream as they are
        else:
            from zoo.disk.paths import atomic_writer

            with atomic_writer(output) as fh:
                fh.write(data)
            note(f"wrote the lineage of {name} to {output} ({fmt})")
    warn_unknown(list({v.model_uri: v for v in unknown}.values()))
