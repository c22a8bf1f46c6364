"""`zoo finetune`: fine-tune a backbone on a folder of images and register the result."""

from __future__ import annotations

from typing import Any

import click

from zoo.cli.options import (
    BATCH_SIZE,
    EPOCHS,
    LICENSE_ID,
    LR,
    MODEL_NAME,
    REASON,
    SEED,
    StrictFloat,
    StrictInt,
    torchrun_options,
)
from zoo.cli.output import emit_json, note

MAX_IMAGE_SIZE = 4096  # zoo.engine.recipe.MAX_IMAGE_SIZE (not imported: --help stays light)


@click.command("finetune")
@click.argument("ref")
@click.argument("data", type=click.Path())
@click.option(
    "--strategy",
    "-s",
    default=None,
    help="Fine-tuning strategy (see `zoo strategies`). [default: linear-probe]",
)
@click.option(
    "--unfreeze",
    type=StrictInt(0, 10_000),
    default=None,
    metavar="K",
    help="Stages below the head that train (partial, lp-ft, gradual, early-layers); "
    "with auto, the most its partial candidates train (0: frozen candidates only).",
)
@click.option(
    "--budget",
    default=None,
    metavar="TIME",
    help="With --strategy auto: the time its search may spend comparing candidates, "
    "e.g. 90s, 10m, 1h; what would not fit is skipped and listed. [default: no bound]",
)
@click.option(
    "--epochs", type=EPOCHS, default=None, help="Epochs, 1 to 100000 (default: the strategy's)."
)
@click.option(
    "--batch-size", type=BATCH_SIZE, default=None, help="Global batch size. [default: 32]"
)
@click.option(
    "--lr",
    type=LR,
    default=None,
    help="Peak learning rate, a positive finite number (default: the strategy's).",
)
@click.option(
    "--image-size",
    type=StrictInt(1, MAX_IMAGE_SIZE),
    default=None,
    metavar="PX",
    help="Square input size (default: the backbone's own).",
)
@click.option(
    "--val-split",
    type=StrictFloat(0.0, 1.0, max_open=True),
    default=None,
    help="Fraction of each class held out for validation; 0: none, the last epoch is "
    "registered (chosen_by last-epoch). [default: 0.2]",
)
@click.option(
    "--test-split",
    type=StrictFloat(0.0, 1.0, max_open=True),
    default=None,
    metavar="F",
    help="Fraction of each class held out as a test set that no choice sees; its accuracy "
    "is reported and registered as test_accuracy. [default: 0, none]",
)
@click.option(
    "--seed",
    type=SEED,
    default=None,
    help="Seed of the split and training, 0 to 2**32-1. [default: 0]",
)
@click.option(
    "--name",
    type=MODEL_NAME,
    default=None,
    help="Registered model name: letters, digits, '_', '-', '.', '+', spaces "
    "(default: DATA-STRATEGY).",
)
@click.option(
    "--license",
    "license_",
    type=LICENSE_ID,
    default=None,
    metavar="ID",
    help="Licence of the derivative (default: the parent's).",
)
@click.option(
    "--license-override",
    type=REASON,
    default=None,
    metavar="REASON",
    help="Register despite a licence conflict; the reason is recorded.",
)
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N. [default: auto]")
@torchrun_options("with DDP", "from the recipe")
@click.option(
    "--resume", is_flag=True, help="Continue this recipe's interrupted run (error if none)."
)
@click.option("--restart", is_flag=True, help="Discard this recipe's checkpoints and start over.")
@click.option(
    "--again",
    is_flag=True,
    help="Train and register a new version even if this recipe already finished on the "
    "same data (without it, the existing version is printed).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Refuse (exit 2, before training) when the training split holds images a "
    "registered ancestor of REF held out as its test or validation split, or the "
    "validation or test split holds images one trained on; without it, one warning line "
    "per ancestor and direction (docs/finetune.md).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check the data and show the plan without training (for --strategy auto: its "
    "cross-validation table and the trials it would run, with their cost).",
)
@click.option("--random-init", is_flag=True, help="Start from random weights (a baseline).")
@click.option(
    "--config",
    "config",
    type=click.Path(),
    default=None,
    metavar="FILE",
    help="YAML or TOML recipe; options given here win over it.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result (docs/json.md).")
def finetune_cmd(
    ref: str,
    data: str,
    strategy: str | None,
    unfreeze: int | None,
    budget: str | None,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    image_size: int | None,
    val_split: float | None,
    test_split: float | None,
    seed: int | None,
    name: str | None,
    license_: str | None,
    license_override: str | None,
    device: str | None,
    nproc_per_node: int | None,
    nnodes: int | None,
    rdzv_endpoint: str | None,
    rdzv_id: str | None,
    resume: bool,
    restart: bool,
    again: bool,
    strict: bool,
    dry_run: bool,
    random_init: bool,
    config: str | None,
    as_json: bool,
) -> None:
    """Fine-tune REF on the labelled images in DATA and register the best epoch.

    DATA is a folder with one sub-folder per class (nested folders allowed), a CSV
    manifest of path,label rows, or what an installed data source plugin reads (a folder
    of WebDataset *.tar shards, a saved or Parquet Hugging Face dataset: zoo plugins
    --hook register_data_sources). Files that do not decode are skipped and listed; the run
    fails when more than 25% are bad; identical files count once. The split follows the
    files (their content), not the order they are listed in. The registered epoch is the
    one with the best validation accuracy; --test-split holds out a test set that chose
    nothing. Re-running the same command after an interruption resumes from the last
    completed epoch; re-running a finished one prints its version (--again trains anew).
    REF may join several backbones with commas: one linear probe on their concatenated
    features, registered as one version (docs/finetune.md).

    \b
      zoo finetune timm:resnet50.a1_in1k ./pets --name pets
      zoo finetune local:effnet-lite0 ./clipart --strategy lp-ft --unfreeze 3
      zoo finetune models:/pets/2 ./more-pets --strategy partial --epochs 3
      zoo finetune effnet-lite:lite0,effnet-lite:lite1,effnet-lite:lite2 ./pets
      zoo finetune timm:convnext_tiny ./pets --config recipe.yaml --nproc-per-node 4
      zoo finetune timm:convnext_tiny /data/pets --nnodes 2 --nproc-per-node 8 \\
          --rdzv-endpoint node1:29400        # the same command on both nodes
    """
    from zoo.cli.options import check_model_name, check_recipe_file, check_strategy_settings
    from zoo.engine import Recipe, launch, load_recipe_file

    settings: dict[str, Any] = {}
    if config:
        settings = check_recipe_file(config, load_recipe_file(config), finetune_cmd)
    overrides = {
        "ref": ref,
        "data": data,
        "strategy": strategy,
        "unfreeze": unfreeze,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "image_size": image_size,
        "val_split": val_split,
        "test_split": test_split,
        "seed": seed,
        "name": name,
        "license": license_,
        "license_override": license_override,
        "device": device,
        "nproc_per_node": nproc_per_node,
        "random_init": True if random_init else None,
        "strict": True if strict else None,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if budget is not None:
        settings["strategy_settings"] = {
            **dict(settings.get("strategy_settings") or {}),
            "budget": parse_budget(budget, settings.get("strategy")),
        }
    recipe = Recipe.from_dict(settings)
    if recipe.name is None:  # DATA-STRATEGY must be a model name too, known before training
        check_model_name(
            recipe.model_name(), where="the default name (DATA-STRATEGY; give --name),"
        )
    check_strategy_settings(recipe)  # the strategy's settings and --unfreeze, before the data
    if dry_run:
        from zoo.engine import plan_only

        plan = plan_only(recipe)
        if as_json:
            emit_json("finetune_plan", plan=plan)
            return
        for phase in plan["phases"]:
            trains = ", ".join(phase["trainable"][-1])
            cached = " (on cached features)" if phase["head_on_features"] else ""
            click.echo(
                f"{phase['name']}: {phase['epochs']} epoch(s) at lr {phase['lr']:g}, "
                f"trains {trains}{cached}"
            )
        click.echo("dry run: nothing trained or registered")
        return
    from zoo.engine.distributed import Nodes
    from zoo.registry.store import ready_to_write

    nodes = None
    if nnodes is not None or rdzv_endpoint is not None or rdzv_id is not None:
        nodes = Nodes(1 if nnodes is None else nnodes, rdzv_endpoint, rdzv_id)
    (nodes or Nodes()).check(recipe)  # the processes' options, before anything is written
    ready_to_write("zoo finetune (its checkpoints, the registration)")  # before any data is read
    result = launch(recipe, resume=resume, restart=restart, again=again, nodes=nodes)
    if as_json:
        emit_json("finetune_result", **result.to_dict())
        return
    if result.already_registered:
        click.echo(
            f"already registered {result.model_uri}: this recipe finished on the same data; "
            "nothing trained (add --again to train and register a new version)"
        )
        return
    if result.skipped:
        note(f"{len(result.skipped)} file(s) skipped (listed above and in the run's artifacts)")
    click.echo(f"registered {result.model_uri}: {result_line(result)}")


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_budget(text: str, strategy: str | None) -> float:
    """--budget TIME in seconds: a positive number with a unit s, m or h (90s, 10m, 1h)."""
    from zoo.contract.errors import UsageError

    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        seconds = float(value) * _UNITS[unit]
    except (KeyError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise UsageError(
            f"--budget {text!r} is not a time: give a positive number with s, m or h "
            "(e.g. 90s, 10m, 1h)"
        )
    if strategy != "auto":
        raise UsageError(
            "--budget bounds --strategy auto's search; other strategies train what they "
            "are told: add --strategy auto or drop --budget"
        )
    return seconds


def result_line(result: Any) -> str:
    """The figures of a run, saying which of them chose the registered epoch."""
    m = result.metrics
    epoch = f"best epoch {result.best_epoch}/{result.epochs}"
    val = m.get("val_accuracy")
    by = getattr(result, "chosen_by", "validation")
    if by != "validation":  # nothing chose among epochs: the figures do not flatter
        why = "no validation split" if by == "last-epoch" else "the plan fixed the epoch"
        shown = ", ".join(
            f"{key.replace('_', ' ')} {m[key]:.3f}"
            for key in ("test_accuracy", "val_accuracy")
            if key in m
        )
        return (
            f"{shown or 'no held-out figure (add --test-split)'}; registered epoch "
            f"{result.best_epoch}/{result.epochs} ({why}), {result.seconds:.0f}s"
        )
    if "test_accuracy" in m:
        return (
            f"test accuracy {m['test_accuracy']:.3f} (held out, chose nothing), validation "
            f"accuracy {val:.3f} (chose the {epoch}), {result.seconds:.0f}s"
        )
    return (
        f"validation accuracy {val:.3f} (it also chose the {epoch}, so it flatters; add "
        f"--test-split for an unbiased figure), {result.seconds:.0f}s"
    )


COMMANDS = [finetune_cmd]
