"""The Protocols plugins implement. zoo checks registrations with isinstance
(runtime_checkable) plus its own validation (zoo.contract.checks), so a broken plugin
fails loudly at registration time.

Everything here is light: no torch at import time (annotations name torch types as
strings), so the CLI can import it on its start-up path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from zoo.contract.types import (
    BackboneInfo,
    Candidate,
    ExportOptions,
    ExportResult,
    Phase,
    PulledWeights,
    SourceImage,
    StrategySettings,
    TrainingPlan,
    TrainingSummary,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from zoo.contract.refs import Ref

__all__ = [
    "STRATEGY_EXTRAS",
    "Backbone",
    "Chooses",
    "DataSource",
    "Exporter",
    "FinalizesModel",
    "Metric",
    "PlansOnSummary",
    "PreparesModel",
    "Progress",
    "Provider",
    "RegisterDataSource",
    "RegisterExporter",
    "RegisterMetric",
    "RegisterProvider",
    "RegisterStrategy",
    "Strategy",
]


class Progress(Protocol):
    """A sink for progress of long work (downloads, epochs): rich bars or plain lines."""

    def start(self, description: str, total: float | None, unit: str = "items") -> None:
        """Begin a task of ``total`` units ("bytes" renders sizes; anything else N/M)."""
        ...

    def advance(self, amount: float) -> None: ...

    def finish(self) -> None: ...


@runtime_checkable
class Backbone(Protocol):
    """A built model with a new head, exposed as ordered stages from input to head.

    Exactly what the training engine and the registry use:

    - ``info``: the catalogue's :class:`BackboneInfo`, completed from the built model;
    - ``model``: the whole ``nn.Module`` (images in, logits out);
    - ``stages()``: (name, module) pairs, earliest first, that *partition* the model's
      parameters: each parameter in exactly one stage (:func:`zoo.check_partition`, run by
      zoo on every build). Strategies freeze and unfreeze by position in this list,
      whatever the source;
    - ``head``: the last stage's module. The head stage holds the classifier and only the
      classifier (what a new ``num_classes`` replaces), so "train the head" never trains a
      pretrained layer;
    - ``weights_sha256``: SHA-256 of the file the pretrained weights were loaded from
      (recorded as the derivative's parent hash), or None when built without weights.
    """

    info: BackboneInfo
    model: nn.Module
    weights_sha256: str | None

    def stages(self) -> Sequence[tuple[str, nn.Module]]: ...

    @property
    def head(self) -> nn.Module: ...


@runtime_checkable
class Provider(Protocol):
    """A source of backbones: lists, describes, pulls and builds them.

    ``name`` is the reference scheme it answers for (``timm`` answers ``timm:...``).

    Optional members, checked when present (docs/plugins/register_providers.md):

    - ``grammar: NameGrammar``: how its names parse, what may follow ``NAME:``
      (``NameGrammar.simple()``, ``.tagged()`` like timm's ARCH[.TAG], ``.repo()`` like the
      Hub's ORG/REPO; docs/references.md). zoo refuses a reference outside it, naming the
      form, before the provider is called, and ``Ref.arch``/``Ref.tag`` split by it.
      Without it: ``zoo.contract.refs.GENERIC`` (a name or ``ORG/REPO``, ``@REV`` allowed).
    - ``cache_index: bool``: False to index and describe local state on every call.
    - ``search(pattern, *, timeout)``: ask a remote catalogue (only when named).
    """

    name: str

    def version(self) -> str:
        """Version of what the index is built from; cheap (no heavy imports).

        zoo caches ``index()`` under the zoo home and rebuilds it when this changes.
        """
        ...

    def index(self) -> Iterable[BackboneInfo]:
        """Every backbone known without the network (``num_params`` may be None)."""
        ...

    def describe(self, ref: Ref) -> BackboneInfo:
        """Full information on one reference; raise UnknownModelError if unknown."""
        ...

    def pull(
        self, ref: Ref, *, force: bool = False, progress: Progress | None = None
    ) -> PulledWeights:
        """Fetch and verify weights into the local cache."""
        ...

    def build(
        self, ref: Ref, *, num_classes: int | None = None, pretrained: bool = True
    ) -> Backbone:
        """Build the model (weights from the cache when pretrained) with a new head of
        ``num_classes`` outputs (None keeps the original head)."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """A fine-tuning recipe: decides what trains, with which learning rates, per epoch.

    ``plan`` is a pure function from the backbone's stage names (input -> head, the last
    is the head) and the user's settings to a :class:`TrainingPlan`: the engine builds the
    optimizer's parameter groups, freezes, unfreezes and re-initialises from it, and can
    therefore resume at any epoch. Raise ``zoo.UsageError`` for settings that make no
    sense for this backbone (say, ``--unfreeze 9`` on 6 stages).

    Optional members (plugin API 2, docs/strategies.md), declared below as
    :class:`PlansOnSummary`, :class:`PreparesModel`, :class:`FinalizesModel` and
    :class:`Chooses`. :data:`STRATEGY_EXTRAS` lists the arguments zoo passes to each; the
    contract (``zoo.contract.checks``) checks at registration that a strategy's members
    accept them, and the registry hands the strategy out in an adapter that knows which
    of them it has (``checks.DeclaredStrategy``), so the engine never looks them up. A
    strategy that defines none of them behaves exactly as one written for API 1.
    """

    name: str
    summary: str  # one line for `zoo strategies`

    def plan(self, stages: Sequence[str], settings: StrategySettings) -> TrainingPlan: ...


class PlansOnSummary(Protocol):
    """``plan`` with a parameter named ``summary`` (or ``**kwargs``): it receives a
    :class:`TrainingSummary` of the training split alone (counts, input size, features on
    demand) as ``summary=``."""

    def plan(
        self, stages: Sequence[str], settings: StrategySettings, summary: TrainingSummary
    ) -> TrainingPlan: ...


class PreparesModel(Protocol):
    """Called when each phase that trains on images starts (a resumed one too, before the
    checkpoint's weights are loaded), before its optimizer is built: it may wrap modules or
    add parameters (adapters) in place and returns the parameters that train in this
    phase, finer than stages, or None to train by stage. Idempotent on a prepared model."""

    def prepare_model(
        self,
        model: nn.Module,
        stages: Sequence[tuple[str, nn.Module]],
        phase: Phase,
        plan: TrainingPlan,
    ) -> Iterable[nn.Parameter] | None: ...


class FinalizesModel(Protocol):
    """Called once before registration on the registered epoch's weights (merge adapters
    into the base weights); what it returns is registered and exported."""

    def finalize_model(self, model: nn.Module) -> nn.Module: ...


class Chooses(Protocol):
    """A choosing strategy (``auto``): the engine's search scores the candidates on the
    training split and trains the best; ``parents`` is the number of backbones."""

    def candidates(
        self,
        stages: Sequence[str],
        settings: StrategySettings,
        summary: TrainingSummary,
        parents: int = 1,
    ) -> Sequence[Candidate]: ...


# The optional members and the arguments zoo passes to each: (positional, keyword).
STRATEGY_EXTRAS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "prepare_model": (("model", "stages", "phase", "plan"), ()),
    "finalize_model": (("model",), ()),
    "candidates": (("stages", "settings", "summary"), ("parents",)),
}


@runtime_checkable
class Exporter(Protocol):
    """Turns a built model into a deployable artifact, verified against the eager model.

    zoo resolves the reference, builds the check set, and registers what ``export``
    returns; the exporter converts, verifies, and raises :class:`zoo.IntegrityError` when
    the artifact disagrees with the model (zoo then leaves nothing behind).

    Optional members, used when present (docs/plugins/register_exporters.md):

    - ``log_model(path, *, input_example, run_id, model_id) -> Sequence[str]``: log the
      artifact into the MLflow logged model ``model_id`` with an MLflow flavour (so plain
      MLflow loads it) and return the paths it wrote there. Without it zoo stores the file
      as a plain artifact of the version.
    - ``open(path, *, provider) -> runtime``: what ``zoo predict`` runs: an object with
      ``run(batch: numpy float32 N,C,H,W) -> logits`` and optionally ``provider`` (str),
      ``note`` (str or None), ``input_shape`` (one input's dimensions after the batch,
      None where free) and ``output_width`` (the logits' last dimension or None), which
      zoo checks the export's recorded preprocessing and classes against. Without
      ``open`` the format cannot be used by ``zoo predict``; zoo itself knows no runtime.
    - ``report_lines(result) -> Sequence[str]``: the human-readable summary of the
      exporter's own report that ``zoo export`` prints (the report's keys are the
      exporter's; ``--json`` shows it whole).
    """

    name: str  # the --format value, e.g. "onnx"
    summary: str
    precisions: tuple[str, ...]  # the --precision values it supports, the default first

    def export(
        self, module: nn.Module, example: torch.Tensor, options: ExportOptions
    ) -> ExportResult:
        """Convert ``module`` (in eval mode) traced from ``example`` (batch >= 2) into
        ``options.out_dir``, verify it on ``options.check`` and return the result."""
        ...


@runtime_checkable
class Metric(Protocol):
    """A transferability estimator: how well features (or the source model's class
    probabilities) fit a dataset's labels, from one forward pass (docs/rank.md).

    ``score`` gets ``features`` (N x D float array), ``labels`` (N ints) and, when
    ``needs_source`` is True, ``source_probs`` (N x K, the backbone's original
    classifier's softmax); higher is better.
    """

    name: str  # the --metric value
    summary: str
    needs_source: bool

    def score(self, *, features: Any, labels: Any, source_probs: Any = None) -> float: ...


@runtime_checkable
class DataSource(Protocol):
    """Labelled images kept in files zoo does not read itself (tar shards, Arrow, Parquet):
    a DATA path that is neither a CSV manifest nor a plain folder of class folders is
    offered to every registered source (docs/plugins/register_data_sources.md).

    zoo hashes and decodes the bytes ``images`` yields exactly as it does a folder's files,
    so the same images give the same dataset digest, split and duplicates whatever holds
    them; ``read`` is asked for one image again only when its decoded array is gone.
    """

    name: str  # recorded as the dataset's source in the lineage, e.g. "webdataset"
    summary: str

    def claims(self, path: Path) -> bool:
        """Is ``path`` (a folder or a file) this source's? Cheap: names, not contents."""
        ...

    def images(self, path: Path) -> Iterable[SourceImage]:
        """Every image of ``path`` with its class name, streamed (one pass, in a stable
        order); a :class:`zoo.DataError` in one line for data that cannot be used."""
        ...

    def read(self, path: Path, name: str) -> bytes:
        """The bytes of the image ``images`` named ``name``."""
        ...


# A data source's optional member: ``count(path) -> int | None``, how many images
# ``images`` will yield when that is known cheaply (Parquet metadata, a saved dataset's
# length): the check's progress then shows a total and the time left.


RegisterProvider = Callable[[Provider], None]
RegisterStrategy = Callable[[Strategy], None]
RegisterExporter = Callable[[Exporter], None]
RegisterMetric = Callable[[Metric], None]
RegisterDataSource = Callable[[DataSource], None]
