"""Errors users see. Each carries its exit code and a message that says how to fix it.

The CLI turns these into one line on stderr and the exit code below; nothing else in zoo
decides exit codes. The table is documented in docs/cli.md.
"""

from __future__ import annotations

# Exit codes: one table for every command.
EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2  # bad input or usage
EXIT_NOT_FOUND = 3
EXIT_INTEGRITY = 4  # refused for integrity or security
EXIT_LICENSE = 5  # refused for licence
EXIT_INTERRUPTED = 130  # Ctrl-C (work so far saved where the command says so)

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_UNEXPECTED: "unexpected error (run with --debug for the traceback)",
    EXIT_USAGE: "bad input or usage",
    EXIT_NOT_FOUND: "not found (model, reference, file, plugin)",
    EXIT_INTEGRITY: "refused for integrity or security (hash mismatch, pickle)",
    EXIT_LICENSE: "refused for licence",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class ZooError(Exception):
    """Base of every error zoo expects; ``exit_code`` says how the CLI exits."""

    exit_code = EXIT_UNEXPECTED


class UsageError(ZooError):
    """The user asked for something malformed: a bad reference, option or file."""

    exit_code = EXIT_USAGE


class BadReferenceError(UsageError):
    """A model reference does not parse."""


class DataError(UsageError):
    """A dataset or input file cannot be used as given."""


class NotFoundError(ZooError):
    exit_code = EXIT_NOT_FOUND


class UnknownModelError(NotFoundError):
    """No provider knows this reference."""


class NotCachedError(NotFoundError):
    """Offline, and the model is not in the local cache."""


class IntegrityError(ZooError):
    """Downloaded or cached bytes do not match what the source publishes."""

    exit_code = EXIT_INTEGRITY


class SecurityError(ZooError):
    """Refused because loading would run code (pickles) or cross a trust boundary."""

    exit_code = EXIT_INTEGRITY


class LicenseError(ZooError):
    """A declared licence is not compatible with the parent's."""

    exit_code = EXIT_LICENSE


class PluginError(ZooError):
    """A plugin broke the contract (duplicate name, unknown hook, bad registration)."""

    exit_code = EXIT_UNEXPECTED


class OfflineError(ZooError):
    """A network source could not be reached."""

    exit_code = EXIT_NOT_FOUND


class Interrupted(ZooError):
    """The user pressed Ctrl-C; the message says what was saved."""

    exit_code = EXIT_INTERRUPTED


class TrainingError(ZooError):
    """Training cannot go on (the loss became NaN or infinite); nothing is registered."""

    exit_code = EXIT_UNEXPECTED
