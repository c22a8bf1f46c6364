"""A Hugging Face-format model card (README.md with YAML front matter) per version."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["chosen_by_text", "evaluation_text", "model_card"]

NOT_RECORDED = "precision not recorded"
_WORDS = {"bf16-autocast": "bf16 autocast", "tf32": "TF32 convolutions"}

# dataset.split.chosen_by -> what the validation figure means for the registered epoch
_VAL_NOTE = {
    "validation": "chose the registered epoch, so it flatters",
    "fixed": "chose nothing: the plan fixed the registered epoch",
}


def chosen_by_text(record: Mapping[str, Any]) -> str:
    """What chose the registered epoch, beside the figure it flatters (or not); empty for
    records that do not say (exports)."""
    by = ((record.get("dataset") or {}).get("split") or {}).get("chosen_by")
    metrics = record.get("metrics") or {}
    if not by or "best_epoch" not in metrics:
        return ""
    epoch = f"{int(metrics['best_epoch'])}/{int(metrics.get('epochs', metrics['best_epoch']))}"
    if by == "last-epoch":
        return f"last-epoch: the registered epoch is the last ({epoch}); no validation split"
    val = metrics.get("val_accuracy")
    figure = f"val_accuracy {float(val):.4g} " if val is not None else ""
    return f"{by}: registered epoch {epoch}; {figure}{_VAL_NOTE.get(by, '')}".rstrip("; ")


def evaluation_text(record: Mapping[str, Any]) -> str:
    """The precision the version's metrics were computed in (the lineage's ``evaluation``,
    tag ``zoo.eval_precision``), in words; "precision not recorded" for a version older
    than that record; empty for a version without metrics."""
    if not record.get("metrics"):
        return ""
    evaluation = record.get("evaluation") or {}
    precision = evaluation.get("precision")
    if not precision:
        return NOT_RECORDED
    if record.get("relation") == "export":
        runtime = f" on {evaluation['runtime']}" if evaluation.get("runtime") else ""
        reference = (
            f", compared with {evaluation['reference']}" if evaluation.get("reference") else ""
        )
        return f"{precision}{runtime}{reference}"
    loop = evaluation.get("training_precision")
    if not loop or loop == precision:
        return f"{precision} (every figure)"
    return (
        f"{precision} (val_*, test_*); {_WORDS.get(loop, loop)} in the training loop "
        "(train_*, the choice of the epoch)"
    )


def _hub_base(reference: str) -> str:
    """``base_model`` in the Hub's form where the base is a Hub repo, else zoo's reference."""
    if reference.startswith("hf:"):
        return reference[3:].split("@", 1)[0]
    return reference


def model_card(name: str, record: Mapping[str, Any]) -> str:
    import yaml

    lic = (record.get("license") or {}).get("id", "unknown")
    base = (record.get("base") or {}).get("reference") or ""
    from zoo.registry.records import parents_of

    parent = "`, `".join(str(p.get("reference") or "") for p in parents_of(record))
    relation = record.get("relation", "finetune")
    dataset = record.get("dataset") or {}
    metrics = record.get("metrics") or {}
    strategy = record.get("strategy") or {}
    front: dict[str, Any] = {
        "license": lic if lic != "unknown" else "other",
        "library_name": "zoo",
        "base_model": _hub_base(base),
        "pipeline_tag": "image-classification",
        "tags": ["zoo", "image-classification", relation],
    }
    if relation != "export":
        # The Hub has no relation for a format conversion; only fine-tunes declare one.
        front["base_model_relation"] = "finetune"
    if lic == "unknown":
        front["license_name"] = "unknown"
    if dataset.get("digest"):
        front["datasets"] = [str(dataset.get("name") or dataset["digest"])]
    if metrics:
        front["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-classification"},
                        "dataset": {
                            "type": "imagefolder",
                            "name": str(dataset.get("name") or dataset.get("digest") or "data"),
                        },
                        "metrics": [
                            {"type": k, "value": float(v)} for k, v in sorted(metrics.items())
                        ],
                    }
                ],
            }
        ]
    classes = record.get("class_names") or []
    pre = record.get("preprocessing") or {}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        f"An image classifier fine-tuned by zoo from `{parent}` (base model `{base}`).",
        "",
        "## Intended use",
        "",
        f"Classifying images into {len(classes)} classes"
        + (
            f" ({', '.join(map(str, classes[:20]))}{', …' if len(classes) > 20 else ''})"
            if classes
            else ""
        )
        + ", the classes of the dataset it was trained on. It is not evaluated for any other "
        "use; check its metrics on your own data before relying on it.",
        "",
        "## Lineage",
        "",
        f"- Parent: `{parent}`",
        f"- Base model: `{base}`",
        f"- Relation: {relation}",
    ]
    if relation != "export":
        lines += [
            f"- Strategy: `{strategy.get('name')}` {strategy.get('settings') or ''}".rstrip(),
            f"- Dataset digest: `{dataset.get('digest')}`",
        ]
    lines += [f"- Licence: {lic}", ""]
    if (record.get("license") or {}).get("override"):
        lines += [f"Licence override: {record['license']['override']}", ""]
    if pre:
        lines += ["## Preprocessing", ""]
        lines += [f"- {k}: {v}" for k, v in pre.items()]
        lines.append("")
    if metrics:
        by = ((dataset.get("split") or {}).get("chosen_by")) or ""
        lines += ["## Metrics", ""]
        if chosen_by_text(record):
            lines += [f"Chosen by: {chosen_by_text(record)}.", ""]
        lines += [f"Computed in: {evaluation_text(record)}.", ""]
        lines += ["| metric | value |", "|---|---|"]
        lines += [
            f"| {k} | {float(v):.4f}"
            + (f" ({_VAL_NOTE[by]})" if k == "val_accuracy" and by in _VAL_NOTE else "")
            + " |"
            for k, v in sorted(metrics.items())
        ]
        lines.append("")
    return "\n".join(lines)
