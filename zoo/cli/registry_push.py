"""`zoo registry push`: a registered version onto the Hugging Face Hub, attached to the
`zoo registry` group by zoo/cli/registry.py; and `zoo info`'s "lineage" of a pulled repo
that such a push wrote."""

from __future__ import annotations

import click

from zoo.cli.catalog import _INFO_EXTRAS
from zoo.cli.output import emit_json, note

__all__ = ["push_cmd"]


def _use_tracking_uri(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:  # as zoo/cli/registry.py's tracking_uri_option (which imports this module)
        from zoo.registry.store import configure

        configure(value)


@click.command("push")
@click.option(
    "--tracking-uri",
    metavar="URI",
    expose_value=False,
    is_eager=True,
    callback=_use_tracking_uri,
    help="MLflow server or database holding the version (default: $MLFLOW_TRACKING_URI, "
    "else the embedded store under ZOO_HOME).",
)
@click.argument("ref", metavar="models:/NAME/N")
@click.argument("target", metavar="hf:ORG/REPO")
@click.option("--private", is_flag=True, help="Create the repo private (when it is new).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")
def push_cmd(ref: str, target: str, private: bool, as_json: bool) -> None:
    """Push a registered version to the Hugging Face Hub with its lineage.

    \b
      zoo registry push models:/pets/2 hf:acme/pets-classifier
      zoo pull hf:acme/pets-classifier && zoo info hf:acme/pets-classifier

    The repo (created when missing; one commit on main) gets the registered
    model.safetensors, timm's config.json (architecture, num_classes, label_names,
    pretrained_cfg: `timm.create_model("hf-hub:ORG/REPO")` loads it), a model card
    whose base_model is the nearest ancestor on the Hub (the Hub's model tree) with
    base_model_relation finetune, license, datasets and metrics, and lineage.json, so a
    fine-tune of the pulled repo records the original base.

    The Hub is HF_ENDPOINT (default https://huggingface.co); the token is
    huggingface_hub's (HF_TOKEN or `hf auth login`). Refused in one line: a reference
    that is not models:/NAME/N or a target not hf:ORG/REPO, no token, a token or request
    the Hub refuses, an export, a module zoo composed (a multi-stage or multi-backbone
    probe: the Hub's formats cannot describe it), a base that is not a timm architecture
    (exit 2); a licence along the chain that forbids distributing derivatives (exit 5);
    an unreachable Hub (exit 3).
    """
    from zoo.registry.push import push_version

    result = push_version(ref, target, private=private)
    if as_json:
        emit_json("registry_push", **result.to_dict())
        return
    base = f" (base_model {result.base_model})" if result.base_model else ""
    if not result.base_model:
        note("no ancestor is a Hub repo: the card has no base_model, the Hub shows no tree")
    click.echo(f"pushed {result.model_uri} to {result.url}{base} at commit {result.commit[:12]}")


def _pushed_lineage(reference: str) -> dict[str, object]:
    """`zoo info`'s "lineage" for a pulled repo that `zoo registry push` wrote."""
    from zoo.registry.upstream import upstream_lineage

    try:
        up = upstream_lineage(reference)
    except Exception:
        return {}
    if up is None:
        return {}
    return {
        "lineage": {
            "base": up.base,
            "pushed_from": up.pushed.get("from"),
            "chain": [*up.chain],
            "license": (up.record.get("license") or {}).get("id"),
        }
    }


_INFO_EXTRAS.append(_pushed_lineage)
