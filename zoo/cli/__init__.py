"""The `zoo` command line: thin commands; the only place errors become exit codes.

Command groups live in one module each (``zoo/cli/<topic>.py``) and are listed in
``_COMMAND_MODULES``; plugins add theirs through the ``register_commands`` hook.
Heavy libraries are imported inside command bodies: ``zoo --help`` imports no torch.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import traceback

import click

from zoo.contract.errors import EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USAGE, ZooError

__all__ = ["build_cli", "main"]

# Built-in command modules; each exposes COMMANDS, a list of click commands.
_COMMAND_MODULES = [
    "zoo.cli.catalog",
    "zoo.cli.export",
    "zoo.cli.finetune",
    "zoo.cli.home",
    "zoo.cli.plugins",
    "zoo.cli.pull",
    "zoo.cli.rank",
    "zoo.cli.registry",
    "zoo.cli.serve",
]

EPILOG = """\b
Exit codes: 0 ok, 1 unexpected, 2 bad input or usage, 3 not found,
4 refused for integrity or security, 5 refused for licence, 130 interrupted.
Docs: docs/cli.md. ZOO_HOME: where zoo writes; move it with `zoo home move DEST`."""


def _root() -> click.Group:
    """A fresh top-level group: building the CLI twice in one process (tests, embedding)
    must not re-add plugin commands to a shared global group."""

    @click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
    @click.version_option(package_name="transfer-zoo", prog_name="zoo")
    def cli(debug: bool) -> None:
        """zoo: pretrained backbones from any source, fine-tuned, tracked and exported.

        \b
          zoo list 'resnet*' --pretrained      every provider, one table
          zoo info timm:resnet50.a1_in1k       input config, licence, size
          zoo pull timm:resnet50.a1_in1k       verified weights into the local cache
          zoo finetune REF ./images --name my-model
          zoo registry lineage my-model        base -> derivative chain, licences
          zoo export models:/my-model/latest   ONNX, verified against PyTorch
          zoo serve my-model.onnx              images over HTTP until Ctrl-C
        """

    return cli


def build_cli() -> click.Group:
    """The top-level group with built-in and plugin commands added."""
    from zoo.contract.plugins import get_plugin_manager

    group = _root()
    for module_name in _COMMAND_MODULES:
        module = importlib.import_module(module_name)
        for command in module.COMMANDS:
            group.add_command(command)
    get_plugin_manager().add_commands(group)
    return group


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("ZOO_DEBUG", "") in {"1", "true"}


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    first = " ".join(message.strip().split("\n")[0].split()) or "error"
    click.echo(f"zoo: error: {first}", err=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this in-process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    # MLflow's usage telemetry starts a sender thread when mlflow is first imported: off
    # unless the user turns it on (MLFLOW_DISABLE_TELEMETRY=false); docs/cli.md
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        from zoo.cli.options import check_argv

        check_argv(argv)  # a newline in a name would cut the one-line error
        group = build_cli()
        rv = group.main(args=argv, prog_name="zoo", standalone_mode=False)
    except ZooError as exc:
        return _fail(str(exc), exc.exit_code, debug)
    except click.exceptions.Abort:
        return _fail("aborted", EXIT_INTERRUPTED, debug)
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        else:
            hint = ""
        return _fail(
            exc.format_message() + hint, EXIT_USAGE if exc.exit_code == 2 else exc.exit_code, debug
        )
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED, debug)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the one place an unexpected error becomes an exit code
        return _fail(
            f"unexpected {type(exc).__name__}: {exc} (run `zoo --debug ...` for the traceback)",
            EXIT_UNEXPECTED,
            debug,
        )
    return rv if isinstance(rv, int) else 0


def main() -> None:
    code = run()
    # What the command made stays alive until the interpreter's end anyway: the
    # collector need not walk it (torch, MLflow and their modules: a fine-tune's exit took
    # 2.3 s, 0.4 s so). Threads, atexit functions and open files end as they always do.
    gc.freeze()
    sys.exit(code)
