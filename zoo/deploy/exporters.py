"""The installed exporters: the one a ``--format`` names, those ``zoo predict`` can run,
and what to install when the one asked for is missing.

zoo ships no exporter of its own: each format is a plugin's (ONNX is the zoo-onnx
distribution's, docs/plugins/register_exporters.md). Without it ``zoo export`` stops in
one line, before any model is loaded, naming the format and the distribution to install.
"""

from __future__ import annotations

from typing import Any

from zoo.contract.errors import UsageError

__all__ = ["KNOWN_EXPORTERS", "exporter_for", "install_hint", "runtimes"]

# format -> the distribution that provides it, for the line that says what to install
# (the first-party exporter plugins; a third party's format is found with `zoo plugins`)
KNOWN_EXPORTERS = {"onnx": ("zoo-onnx", "plugins/zoo-onnx")}


def install_hint(fmt: str) -> str:
    """What to install for ``fmt``, in a few words."""
    known = KNOWN_EXPORTERS.get(fmt)
    if known is None:
        return "install its plugin (see `zoo plugins`)"
    dist, folder = known
    return f"install {dist}: python -m pip install {dist} (in a zoo checkout: -e {folder})"


def _exporters() -> dict[str, Any]:
    from zoo.contract.plugins import get_plugin_manager

    return dict(get_plugin_manager().exporters())


def exporter_for(fmt: str) -> Any:
    """The registered exporter of ``fmt``; a UsageError (exit 2) in one line without one."""
    exporters = _exporters()
    if fmt not in exporters:
        names = ", ".join(sorted(exporters)) or "none"
        raise UsageError(
            f"--format {fmt}: no installed exporter writes '{fmt}' (installed: {names}); "
            f"{install_hint(fmt)}"
        )
    return exporters[fmt]


def runtimes() -> dict[str, Any]:
    """Installed exporters that can run their format for ``zoo predict`` (an ``open``)."""
    return {name: e for name, e in _exporters().items() if callable(getattr(e, "open", None))}
