"""Option types and checks shared by the commands: every value is refused at the command
line, in one line naming the option (or the recipe file and key) and showing the bad
value's repr, before any data is read.

click's own types (``IntRange``, ``FloatRange``, ``Choice``) are used where they fit:
click reports a bad value in one line, exit 2. A recipe file's settings go through the
same types as the options of the same name (:func:`check_recipe_file`).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import click

from zoo.contract.errors import UsageError

__all__ = [
    "BATCH_SIZE",
    "EPOCHS",
    "LR",
    "MODEL_NAME",
    "SEED",
    "TIMEOUT",
    "NonEmpty",
    "PositiveFinite",
    "check_argv",
    "check_model_name",
    "check_opset",
    "check_recipe_file",
    "check_strategy_settings",
    "torchrun_options",
]

MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit
MAX_PROCESSES = 4_096
MAX_TIMEOUT = 3_600.0


def _control(text: str) -> str | None:
    """The first control character in ``text`` (newline, escape, NUL...), if any."""
    for ch in text:
        if unicodedata.category(ch) in {"Cc", "Cf"} and ch != "\t":
            return ch
    return None


def check_argv(argv: Sequence[str]) -> None:
    """Refuse command-line words holding control characters: they would cut or forge the
    one-line error (a newline) or the terminal (an escape)."""
    for word in argv:
        ch = _control(word)
        if ch is not None:
            raise UsageError(
                f"the argument {word!r} holds the control character {ch!r}: names, "
                "references, paths and option values must be printable text"
            )


class PositiveFinite(click.ParamType):
    """A float > 0 that is finite (``--lr``, ``--timeout``), at most ``maximum``."""

    name = "float"

    def __init__(self, maximum: float | None = None) -> None:
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number", param, ctx)
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a positive finite number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is not a positive finite number", param, ctx)
        if self.maximum is not None and number > self.maximum:
            self.fail(f"{value!r} is above the largest allowed, {self.maximum:g}", param, ctx)
        return number


class StrictInt(click.IntRange):
    """click.IntRange that refuses 2.5 and True (click would truncate them to 2 and 1)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        return super().convert(value, param, ctx)


class StrictFloat(click.FloatRange):
    """click.FloatRange that refuses NaN (it compares false with both bounds) and True."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number", param, ctx)
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class NonEmpty(click.ParamType):
    """Text refused when empty or blank (an absent option means the default: leave it out)."""

    name = "text"

    def __init__(self, hint: str) -> None:
        self.hint = hint

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{value!r} is empty: {self.hint}", param, ctx)
        return value.strip()


def check_model_name(name: str, where: str = "--name") -> str:
    """A registered model name, or UsageError naming the allowed form."""
    from zoo.contract.errors import BadReferenceError
    from zoo.contract.refs import MAX_NAME_LENGTH, parse_ref

    form = (
        f"a model name starts with a letter or digit and holds letters, digits, '_', '-', "
        f"'.', '+' and spaces, at most {MAX_NAME_LENGTH} characters"
    )
    if not name.strip():
        raise UsageError(f"{where} is empty: give the registered model a name, or leave it out")
    if _control(name) is not None or len(name) > MAX_NAME_LENGTH:
        raise UsageError(f"{where} {name!r} is not a model name: {form}")
    try:
        ref = parse_ref(f"models:/{name}/1")
    except BadReferenceError:
        raise UsageError(f"{where} {name!r} is not a model name: {form}") from None
    if ref.name != name.strip():
        raise UsageError(f"{where} {name!r} is not a model name: {form}")
    return name


class ModelName(click.ParamType):
    name = "name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            self.fail(f"{value!r} is not text", param, ctx)
        try:
            return check_model_name(value, where="")
        except UsageError as exc:
            self.fail(str(exc).lstrip(), param, ctx)


EPOCHS = StrictInt(1, MAX_EPOCHS)
BATCH_SIZE = StrictInt(1, MAX_BATCH_SIZE)
SEED = StrictInt(0, MAX_SEED)
PROCESSES = StrictInt(1, MAX_PROCESSES)


def torchrun_options(what: str, default_id: str) -> Callable[[Any], Any]:
    """``--nproc-per-node``, ``--nnodes``, ``--rdzv-endpoint`` and ``--rdzv-id``: the
    processes torchrun starts (``what``: what they do), as `zoo finetune` and `zoo rank`
    take them (``default_id``: where the job's name at the rendezvous comes from)."""
    options = [
        click.option(
            "--nproc-per-node",
            type=PROCESSES,
            default=None,
            metavar="N",
            help=f"Processes (GPUs) on this machine, launched by torchrun {what}. [default: 1]",
        ),
        click.option(
            "--nnodes",
            type=int,
            default=None,
            metavar="N",
            help="Machines in the job: run the same command on each, with the same "
            "--rdzv-endpoint (docs/finetune.md). [default: 1]",
        ),
        click.option(
            "--rdzv-endpoint",
            default=None,
            metavar="HOST:PORT",
            help="torchrun's c10d rendezvous: the address of one of the nodes, the same on all.",
        ),
        click.option(
            "--rdzv-id",
            default=None,
            metavar="ID",
            help=f"Names the job at the rendezvous, the same on all nodes. [default: {default_id}]",
        ),
    ]

    def apply(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return apply


LR = PositiveFinite()
TIMEOUT = PositiveFinite(maximum=MAX_TIMEOUT)
MODEL_NAME = ModelName()
LICENSE_ID = NonEmpty(
    "give a licence id such as apache-2.0 (docs/licenses.md), or leave the option out to "
    "keep the parent's"
)
REASON = NonEmpty("say why the licence conflict is acceptable, or leave the option out")


def check_opset(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """``--opset``: within what the installed exporter (torch.onnx) and onnx support."""
    if value is None:
        return None
    low, high = opset_range()
    if not low <= value <= high:
        raise click.BadParameter(
            f"{value!r} is outside the opsets this installation can write, {low} to {high} "
            "(torch.onnx's lowest; the lower of onnx's and torch.onnx's highest)",
            ctx=ctx,
            param=param,
        )
    return value


def opset_range() -> tuple[int, int]:
    try:  # onnx comes with the ONNX exporter (zoo-onnx), not with zoo
        import onnx

        written = int(onnx.defs.onnx_opset_version())
    except ImportError:  # no onnx: `zoo export` then says which exporter to install
        written = None
    try:  # torch.onnx keeps its bounds in a private module; fall back on its documented ones
        from torch.onnx import _constants

        low = int(getattr(_constants, "ONNX_MIN_OPSET", 7))
        high = int(getattr(_constants, "ONNX_MAX_OPSET", written or 7))
    except ImportError:  # pragma: no cover - torch is a dependency
        low, high = 7, written or 7
    return low, high if written is None else min(high, written)


# ------------------------------------------------------------------ recipe files

_BOOL = click.BOOL
# Recipe settings without a command-line option, with the type each must convert through.
_FILE_ONLY: dict[str, click.ParamType] = {
    "ref": click.STRING,
    "data": click.STRING,
    "optimizer": click.Choice(["adamw", "sgd"]),
    "weight_decay": StrictFloat(0.0, 1.0),
    "momentum": StrictFloat(0.0, 1.0),
    "warmup_epochs": StrictFloat(0.0, float(MAX_EPOCHS)),
    "label_smoothing": StrictFloat(0.0, 1.0, max_open=True),
    "workers": StrictInt(0, 256),
    "max_bad_fraction": StrictFloat(0.0, 1.0),
    "precision": click.Choice(["auto", "bf16", "fp32"]),
    "channels_last": _BOOL,
    "deterministic": _BOOL,
    "random_init": _BOOL,
    "cache_frozen": _BOOL,
}


def check_recipe_file(
    path: str, settings: Mapping[str, Any], command: click.Command
) -> dict[str, Any]:
    """Each setting converted through the type of the option of the same name (or of
    ``_FILE_ONLY``); a bad one is a UsageError naming the file, the key and the value."""
    by_key = {(p.name or "").rstrip("_"): p for p in command.params if isinstance(p, click.Option)}
    checked: dict[str, Any] = {}
    for key, value in settings.items():
        if value is None:
            checked[key] = value
            continue
        if key == "strategy_settings":
            if not isinstance(value, Mapping):
                raise UsageError(
                    f"{path}: setting 'strategy_settings' must be a mapping of the strategy's "
                    f"settings, got {value!r}"
                )
            checked[key] = dict(value)
            continue
        param = by_key.get(key)
        kind = param.type if param is not None else _FILE_ONLY.get(key)
        if kind is None or (param is not None and param.is_flag):
            kind = _FILE_ONLY.get(key, kind)
        if kind is None:
            checked[key] = value  # unknown keys: Recipe.from_dict lists the known ones
            continue
        if isinstance(kind, click.types.StringParamType | click.Choice) and not isinstance(
            value, str
        ):
            raise UsageError(f"{path}: setting '{key}' must be text, got {value!r}")
        try:
            checked[key] = kind.convert(value, None, None)
        except click.BadParameter as exc:
            raise UsageError(f"{path}: setting '{key}': {exc.message}") from None
        if key == "name":
            check_model_name(value, where=f"{path}: setting 'name'")
    return checked


def check_strategy_settings(recipe: Any) -> None:
    """Ask the strategy to plan on stand-in stage names before any data is read, so that
    its settings are refused now (``r: 0`` for lora) and an ``--unfreeze`` it ignores is
    refused rather than silently dropped. Strategies that plan from the training split
    (a ``summary`` parameter: auto) are asked only once the data is read."""
    from zoo.contract.errors import ZooError
    from zoo.contract.plugins import get_plugin_manager
    from zoo.contract.types import StrategySettings

    strategy = get_plugin_manager().strategies().get(recipe.strategy)
    if strategy is None:
        return  # the engine names the known strategies
    if strategy.extras.plan_summary:  # declared at registration (zoo.contract.strategy)
        return
    k = recipe.unfreeze
    stages = [f"stage{i}" for i in range(max(64, (k or 0) + 2))] + ["head"]

    def plan(unfreeze: int | None) -> Any:
        settings = StrategySettings(
            unfreeze=unfreeze,
            epochs=recipe.epochs,
            lr=recipe.lr,
            options=dict(recipe.strategy_settings),
        )
        return strategy.plan(stages, settings)

    asked = plan(k)  # a UsageError about a setting reaches the user as it is
    if k is None:
        return
    # a strategy uses --unfreeze when another K gives another plan (K may be its default)
    others = []
    for other in (k + 1, k - 1):
        if other < 0:
            continue
        try:
            others.append(plan(other))
        except ZooError:
            continue
    if others and all(asked == o for o in others):
        raise UsageError(
            f"--unfreeze {k}: strategy '{recipe.strategy}' does not use it (it decides what "
            "trains itself); leave --unfreeze out, or use a strategy that takes it: partial, "
            "lp-ft, gradual, early-layers"
        )
