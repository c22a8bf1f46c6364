"""THE plugin contract: every hook a zoo plugin may implement.

A plugin is a module (or object) exposed through the ``zoo`` entry-point group whose
functions are marked ``@zoo.hookimpl``. zoo calls each implementation on its own, with
keyword arguments only and only those it declares (pluggy's ``HookImpl.argnames``), so a
spec can grow new arguments without breaking implementations that accept fewer. One page
per hook: docs/plugins/<hook>.md.

Registration hooks hand the plugin a ``register`` callback: the host owns the registry,
validates each object and raises on a duplicate name, naming both plugins. A plugin never
mutates global state and never imports a heavy library (torch, timm, mlflow) at module
level: ``zoo --help`` loads every plugin and must stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

    from zoo.contract.protocols import (
        RegisterDataSource,
        RegisterExporter,
        RegisterMetric,
        RegisterProvider,
        RegisterStrategy,
    )

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")

# The version of this contract. A plugin that needs a newer one declares it at module
# level (``zoo_plugin_api = 3``); zoo refuses to load it, in one line, when its own is
# older. 1: the hooks below, every argument passed; 2: implementations get only the
# arguments they declare, registered objects and built backbones are checked (zoo.contract.checks),
# exporters may log, run and summarise their own format; 3: the public face names no ONNX
# symbol (``zoo.OnnxModel`` and ``zoo.export_onnx`` are the zoo-onnx distribution's, for
# one release still reached through ``zoo`` with a DeprecationWarning), ``zoo.exact_fp32``
# is public, and an exporter's runtime may declare ``input_shape`` and ``output_width``;
# 4: the hook ``register_data_sources`` (a plugin implementing it declares 4, so that an
# older zoo refuses it in one line naming the upgrade instead of "an unknown hook").
PLUGIN_API = 4

# ----------------------------------------------------------------------------- catalogue


@hookspec
def register_providers(register: RegisterProvider) -> None:
    """Register backbone providers.

    Called once per process, the first time zoo needs the catalogue (``zoo list``,
    ``zoo info``, ``zoo pull``, building a model). Call ``register(provider)`` once per
    :class:`zoo.Provider`; ``provider.name`` is the reference scheme it answers
    (``timm`` answers ``timm:ARCH.TAG``). Return nothing. Registering a name another
    plugin already registered raises :class:`zoo.PluginError`.
    """


# --------------------------------------------------------------------------- fine-tuning


@hookspec
def register_strategies(register: RegisterStrategy) -> None:
    """Register fine-tuning strategies.

    Called once per process, the first time zoo needs strategies (``zoo strategies``,
    ``zoo finetune``). Call ``register(strategy)`` once per :class:`zoo.Strategy`;
    ``strategy.name`` is the ``--strategy`` value; ``strategy.plan(stage_names, settings)``
    returns a :class:`zoo.TrainingPlan` (phases: which stages train in each epoch, at which
    learning rates) that the engine applies (docs/strategies.md). Return nothing.
    Duplicate names raise :class:`zoo.PluginError` naming both plugins.
    """


# ---------------------------------------------------------------------------------- data


@hookspec
def register_data_sources(register: RegisterDataSource) -> None:
    """Register data sources: labelled images in files zoo does not read itself.

    Called once per process, the first time zoo reads a DATA path that is not a CSV
    manifest (``zoo finetune``, ``zoo rank``, ``zoo export --calibration``). Call
    ``register(source)`` once per :class:`zoo.DataSource`; ``source.name`` is recorded as
    the data's source. zoo asks each source whether it ``claims`` the path (before taking
    a folder as a folder of class folders), then reads every image the one that claims it
    yields as it reads a folder's files (docs/plugins/register_data_sources.md). Return
    nothing. Duplicate names raise :class:`zoo.PluginError` naming both plugins (plugin
    API 4).
    """


# ------------------------------------------------------------------------------ choosing


@hookspec
def register_metrics(register: RegisterMetric) -> None:
    """Register transferability metrics (``zoo rank --metric NAME``, ``--strategy auto``).

    Called once per process, the first time zoo needs metrics (``zoo rank``). Call
    ``register(metric)`` once per :class:`zoo.Metric`; ``metric.name`` is the ``--metric``
    value; ``metric.score(features=, labels=, source_probs=)`` returns a float, higher
    meaning a better fit. Return nothing. Duplicate names raise :class:`zoo.PluginError`.
    """


# -------------------------------------------------------------------------------- export


@hookspec
def register_exporters(register: RegisterExporter) -> None:
    """Register exporters (deployable formats).

    Called once per process, the first time zoo needs exporters (``zoo export``).
    Call ``register(exporter)`` once per :class:`zoo.Exporter`; ``exporter.name`` is the
    ``--format`` value. Return nothing. Duplicate names raise :class:`zoo.PluginError`.
    """


# ----------------------------------------------------------------------------------- CLI


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``zoo`` command line.

    Called once when the CLI starts, before arguments are parsed, with the top-level
    :class:`click.Group`; add commands with ``cli.add_command(...)`` or the
    ``@cli.command()`` decorator. Return nothing. A command whose name is taken raises
    :class:`zoo.PluginError`. Keep imports of heavy libraries inside the command body.
    """
