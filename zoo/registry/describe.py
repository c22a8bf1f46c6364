"""The version description the MLflow UI shows (Markdown): the lineage readable on its own,
and the versions derived from it, kept up to date as children register.

The part written at registration never changes; the section under
:data:`CHILDREN_HEADING` is rewritten, from the store, each time a child (a fine-tune or
an export) of the version registers. MLflow has no parent-model concept: these links are
how a person browsing the UI walks the tree both ways.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from zoo.contract.refs import parse_ref
from zoo.licenses.ids import UNKNOWN
from zoo.registry.records import TAG, RegisteredVersion, parents_of

__all__ = [
    "CHILDREN_HEADING",
    "HEADLINE_METRICS",
    "children_markdown",
    "describe_markdown",
    "list_in_parents",
    "version_link",
    "with_children",
]

CHILDREN_HEADING = "#### Derived from this version"
# shown first, in this order, when the record has them; otherwise the first two by name
HEADLINE_METRICS = ("test_accuracy", "val_accuracy", "test_loss", "val_loss")


def version_link(model_uri: str) -> str:
    """The MLflow UI's page for ``models:/NAME/N`` (a hash route, relative to the UI)."""
    ref = parse_ref(model_uri)
    return f"#/models/{quote(ref.name, safe='')}/versions/{ref.version}"


def _code(text: Any) -> str:
    return f"`{text}`" if text not in (None, "") else "—"


def headline_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    """At most two figures to headline a version with (test before validation)."""
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    chosen = [k for k in HEADLINE_METRICS if k in numbers][:2] or sorted(numbers)[:2]
    return [(k, numbers[k]) for k in chosen]


def _license_chain_md(record: Mapping[str, Any]) -> str:
    """Every ancestor's licence, roots first, then this version's (overrides marked)."""
    lic = record.get("license") or {}
    ancestors = [a for a in lic.get("ancestors") or () if isinstance(a, Mapping)]
    if not ancestors:
        return ""
    items = []
    for a in ancestors:
        ref = str(a.get("reference") or "?")
        item = f"{_chain_item(ref)} {a.get('license') or UNKNOWN}"
        items.append(item + (" (override)" if a.get("override") else ""))
    own = f"this version **{lic.get('id', UNKNOWN)}**" + (
        " (override)" if lic.get("override") else ""
    )
    joiner = " → " if len(parents_of(record)) < 2 else ", "
    return joiner.join(items) + (" → " if joiner == " → " else "; ") + own


def describe_markdown(record: Mapping[str, Any]) -> str:
    """The version description the MLflow UI shows: the lineage, readable on its own."""
    base = record.get("base") or {}
    lic = record.get("license") or {}
    strategy = record.get("strategy") or {}
    dataset = record.get("dataset") or {}
    parent_md = ", ".join(_parent_md(p) for p in parents_of(record)) or "—"
    plugin = strategy.get("plugin") or {}
    plugin_txt = " ".join(str(p) for p in (plugin.get("distribution"), plugin.get("version")) if p)
    strategy_md = _code(strategy.get("name")) + (f" from {plugin_txt}" if plugin_txt else "")
    dataset_md = _code(dataset.get("digest"))
    classes = dataset.get("classes")
    counts = dataset.get("counts")
    if classes:
        total = sum(counts.values()) if isinstance(counts, Mapping) else None
        dataset_md += f" ({len(classes)} classes" + (f", {total} images)" if total else ")")
    license_md = f"**{lic.get('id', UNKNOWN)}**"
    if lic.get("id", UNKNOWN) == UNKNOWN:
        license_md += " ⚠️ unknown: check the base model's terms before shipping"
    elif lic.get("inherited"):
        license_md += " (inherited from the parent)"
    relation = record.get("relation", "finetune")
    metrics = record.get("metrics") or {}
    headline = [f"base {_code(base.get('reference'))}", f"licence **{lic.get('id', UNKNOWN)}**"]
    headline += [f"{k} **{v:.4g}**" for k, v in headline_metrics(metrics)]
    lines = [
        f"**zoo {relation}** of {parent_md}",
        "",
        " · ".join(headline),
        "",
        "| lineage | |",
        "|---|---|",
        f"| Parent | {parent_md} |",
        f"| Base model | {_code(base.get('reference'))} |",
        f"| Relation | {relation} |",
    ]
    if relation != "export":
        lines += [f"| Strategy | {strategy_md} |", f"| Dataset digest | {dataset_md} |"]
    lines.append(f"| Licence | {license_md} |")
    chain_md = _license_chain_md(record)
    if chain_md:
        lines.append(f"| Licence chain | {chain_md} |")
    if lic.get("override"):
        lines.append(
            f"| Licence override | {lic['override']} (parent licence {lic.get('parent')}) |"
        )
    if metrics:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        lines.append(f"| Metrics | {shown} |")
    chain = record.get("chain") or []
    if len(chain) > 1 and len(parents_of(record)) < 2:  # several parents: a DAG, listed above
        lines += ["", "Chain: " + " → ".join(_chain_item(c) for c in chain)]
    lines += ["", "Picture of the ancestors: the `lineage.svg` artifact."]
    return "\n".join(lines) + "\n"


def _parent_md(parent: Mapping[str, Any]) -> str:
    reference = str(parent.get("reference") or "")
    if parent.get("kind") == "registered":
        out = f"[{reference}]({version_link(reference)})"
    else:
        out = _code(reference)
    if parent.get("sha256"):
        out += f" (sha256 `{str(parent['sha256'])[:16]}…`)"
    return out


def _chain_item(reference: str) -> str:
    if reference.startswith("models:/"):
        return f"[{reference}]({version_link(reference)})"
    return f"`{reference}`"


def children_markdown(children: Sequence[RegisteredVersion]) -> str:
    """The section listing a version's children, each linked to its page."""
    lines = [CHILDREN_HEADING, ""]
    for c in children:
        if c.relation == "export":
            what = f"export ({c.tags.get(TAG.FORMAT, '?')})"
        else:
            what = f"strategy {_code(c.tags.get(TAG.STRATEGY))}"
        metrics = headline_metrics(c.lineage.get("metrics") or {})
        figures = ", ".join(f"{k} {v:.4g}" for k, v in metrics)
        bits = [f"[{c.model_uri}]({version_link(c.model_uri)})", what, f"licence {c.license}"]
        lines.append("- " + " · ".join([*bits, *([figures] if figures else [])]))
    return "\n".join(lines) + "\n"


def with_children(description: str, children: Sequence[RegisteredVersion]) -> str:
    """``description`` with its children section replaced by one listing ``children``."""
    head, _, _ = description.partition(CHILDREN_HEADING)
    if not children:
        return head
    return head.rstrip("\n") + "\n\n" + children_markdown(children)


def _registered_parents(record: Mapping[str, Any]) -> list[str]:
    if record.get("derived_from"):
        return [str(record["derived_from"])]
    refs = [str(p.get("reference") or "") for p in parents_of(record)]
    return [r for r in refs if r.startswith("models:/")]


def _refresh(mc: Any, parent_uri: str) -> None:
    """Rewrite ``parent_uri``'s children section from the store; once more if a sibling
    registered meanwhile (two children registering at once both end up listed)."""
    from zoo.registry.read import get_version
    from zoo.registry.tree import children_of

    for _ in range(3):
        parent = get_version(parent_uri)
        kids = children_of(parent_uri)
        text = with_children(parent.description, kids)
        if text != parent.description:
            mc.update_model_version(parent.name, str(parent.version), description=text)
        if [k.model_uri for k in children_of(parent_uri)] == [k.model_uri for k in kids]:
            return


def list_in_parents(mc: Any, record: Mapping[str, Any], child_uri: str) -> None:
    """List the newly registered ``child_uri`` in each registered parent's description.

    A failure here never undoes the registration: it is one warning line, and the next
    child registered under that parent (each rewrite lists every child) repairs it.
    """
    from zoo.progress import say

    for parent_uri in _registered_parents(record):
        try:
            _refresh(mc, parent_uri)
        except Exception as exc:  # the child is registered whatever happens here
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            say(
                f"warning: {child_uri} is registered, but {parent_uri}'s description does "
                f"not list it yet ({reason}); the next version registered under "
                f"{parent_uri} lists it"
            )
