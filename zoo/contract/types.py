"""Records that cross module boundaries (the Protocols plugins implement: zoo.contract.protocols).

Everything here is light: no torch at import time (annotations name torch types as
strings), so the CLI can import it on its start-up path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class BackboneInfo:
    """What the catalogue knows about one backbone (architecture + pretrained weights)."""

    # identity
    reference: str  # canonical reference, e.g. "timm:resnet50.a1_in1k"
    provider: str  # provider name (the reference's scheme)
    architecture: str
    tag: str | None = None  # weights tag / enum name / revision
    # weight source and licence
    license: str = "unknown"  # lowercase HF licence id, a custom licence's own name, or "unknown"
    license_url: str | None = None  # the licence's text, where known
    license_source: str | None = None  # who states the licence, and where
    source: str | None = None  # where the weights come from (URL)
    pretrained: bool = True  # False: architecture only, randomly initialised
    pretrained_dataset: str | None = None
    imagenet_top1: float | None = None  # top-1 % on ImageNet-1K where the weights state it
    # input
    input_size: tuple[int, int, int] | None = None  # (C, H, W)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None  # "bilinear", "bicubic", ...
    crop_pct: float | None = None
    # head and size
    num_classes: int | None = None
    num_params: int | None = None  # counted on the meta device, never by loading weights
    feature_dim: int | None = None  # width of the pooled features the head sees

    @property
    def name(self) -> str:
        """The reference without its provider prefix."""
        return self.reference.split(":", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackboneInfo:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for key in ("input_size", "mean", "std"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass(frozen=True)
class FileRecord:
    """One file of a pulled model, as verified when it was pulled."""

    name: str  # the file's name inside its repo or cache folder
    path: str  # absolute local path
    sha256: str
    size: int


@dataclass(frozen=True)
class PulledWeights:
    """A model's weights in the local cache, verified against what its source publishes."""

    reference: str  # canonical reference, pinned where the source has revisions
    provider: str
    revision: str | None
    files: tuple[FileRecord, ...]
    license: str
    source: str | None
    pulled_at: str  # ISO-8601 UTC
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def weights_file(self) -> FileRecord:
        """The file holding the tensors (the first one, by convention)."""
        return self.files[0]


@dataclass(frozen=True)
class StrategySettings:
    """What the user asked for; None means "the strategy's default"."""

    unfreeze: int | None = None  # --unfreeze K: how many stages below the head train
    epochs: int | None = None
    lr: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # recipe's strategy_settings


@dataclass(frozen=True)
class TrainingSummary:
    """What a strategy may know of the training split when it plans (plugin API 2).

    Everything here comes from the training images alone, never from the validation or
    test images, so a choice made on it leaves the reported figures unbiased.
    """

    classes: tuple[str, ...]
    class_counts: Mapping[str, int]  # training images per class
    num_train: int
    input_size: tuple[int, int, int]  # (C, H, W) the model sees
    # features(stage=None) -> (features [N, D] float32, labels [N] int64) of the training
    # images: the head's input (None) or the named stage's output, averaged over space or
    # tokens. Computed once through the engine's feature cache, on first call.
    features: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None


@dataclass(frozen=True)
class Phase:
    """A run of epochs with one optimizer: which stages train, at which learning rates.

    Stages are indices into the backbone's ``stages()`` (the last is the head).
    ``trainable[e]`` lists the stages that train in epoch ``e`` of the phase; the last
    entry repeats, so a constant phase has one entry and gradual unfreezing has one per
    epoch. The optimizer holds every stage that trains at some epoch of the phase, each
    stage in its own parameter group at ``lr * lr_scale.get(stage, 1.0)``; a stage frozen
    in the current epoch has ``requires_grad`` off and its BatchNorm in eval mode.
    """

    name: str  # "probe", "finetune", ...
    epochs: int
    lr: float  # base learning rate (peak of the warm-up + cosine schedule)
    trainable: tuple[tuple[int, ...], ...]
    lr_scale: Mapping[int, float] = field(default_factory=dict)
    reinit: tuple[int, ...] = ()  # stages re-initialised when the phase starts
    # True: only the head trains, on pooled features computed once and cached on disk.
    head_on_features: bool = False
    # False: training sees eval crops (no augmentation), which lets the engine compute the
    # frozen stages' output once and train the rest on it.
    augment: bool = True
    # What a head_on_features phase trains on: "head" (the classifier's input) or "stages"
    # (every stage's pooled output and the classifier's input, standardised, concatenated:
    # the registered model is the backbone plus that head, zoo.catalog.heads.StageProbe).
    features: str = "head"
    # How a head_on_features phase fits its head: "passes" (the recipe's optimizer over
    # ``epochs`` passes at ``lr``) or "lbfgs" (the L2 logistic regression that auto's
    # cross-validation scores, fitted to convergence: ``epochs`` must be 1, ``lr`` unused).
    fit: str = "passes"

    def trainable_at(self, epoch: int) -> tuple[int, ...]:
        """Stages that train in ``epoch`` (0-based within the phase)."""
        return self.trainable[min(epoch, len(self.trainable) - 1)]

    def stages_in_optimizer(self) -> tuple[int, ...]:
        return tuple(sorted({i for epoch in self.trainable for i in epoch}))


@dataclass(frozen=True)
class TrainingPlan:
    """A strategy's answer: phases run in order; ``settings`` go into the lineage."""

    strategy: str
    phases: tuple[Phase, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)


@dataclass(frozen=True)
class CheckSet:
    """Inputs an exporter verifies against, already preprocessed (N, C, H, W float32).

    ``real`` says the images are real (from the model's data or ``--calibration``): then
    top-1 must agree image by image. ``labels`` index the model's classes (-1: unknown).
    ``calibration`` are training images for int8 calibration, ``validation`` the
    validation split the accuracy gate is measured on (with ``validation_labels``).
    """

    images: torch.Tensor
    real: bool = False
    labels: tuple[int, ...] = ()
    calibration: torch.Tensor | None = None
    validation: torch.Tensor | None = None
    validation_labels: tuple[int, ...] = ()


def _no_step(_detail: str) -> None:
    """What ``ExportOptions.step`` is when nobody shows the steps (library use)."""


@dataclass(frozen=True)
class ExportOptions:
    """What ``zoo export`` asks an exporter for.

    ``step(detail)`` says what the export does now (``"converting to ONNX ..."``): call
    it before each part that may take more than a couple of seconds; `zoo export` shows
    it as its progress line (a spinner on a terminal, a plain line in a pipe)."""

    out_dir: str  # write the artifact and its reports here (a fresh, empty folder)
    check: CheckSet
    precision: str = "fp32"  # "fp32", "fp16" or "int8"
    opset: int | None = None  # None: the exporter's default
    dynamic_batch: bool = True
    benchmark: bool = True
    step: Callable[[str], None] = field(default=_no_step, repr=False, compare=False)


@dataclass(frozen=True)
class ExportResult:
    """A verified artifact. Exporters raise IntegrityError instead of returning a bad one."""

    path: str  # the artifact file
    format: str  # the exporter's name
    precision: str
    exporter: str  # which converter produced it, e.g. "torch.onnx (dynamo)"
    report: Mapping[str, Any]  # parity report (JSON-serialisable)
    metrics: Mapping[str, float] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)  # extra files: name -> path
    notes: tuple[str, ...] = ()  # lines for the user (fallbacks, skipped gates)


@dataclass(frozen=True)
class Candidate:
    """A plan a choosing strategy offers the engine's search (``candidates``, plugin API 2):
    ``cost`` "cheap" is scored by k-fold CV on the cached ``features`` (None: the head's
    input; stage names: those stages' outputs, concatenated); "trial" trains on images."""

    strategy: str  # a registered strategy's name
    settings: StrategySettings
    cost: str = "cheap"  # "cheap" or "trial"
    features: tuple[str | None, ...] = (None,)
    label: str = ""  # how the table names it (default: the strategy's name)
    prior: str = ""  # why the strategy offers it


@dataclass(frozen=True)
class SourceImage:
    """One labelled image a data source reads (``register_data_sources``, plugin API 4).

    ``name`` is where it lies, relative to DATA (DATA's folder when DATA is a file), with
    ``/`` between parts: ``shard-000.tar/cat-0001.jpg``; zoo shows it in its lines and
    records, and hands it back to the source's ``read`` to read the image again. ``data``
    is the image file's bytes as stored (zoo hashes and decodes them exactly as it does a
    file's); ``label`` its class name.
    """

    name: str
    label: str
    data: bytes
