"""Several frozen backbones as one model: the multi-backbone probe's architecture.

``zoo finetune REF1,REF2 DATA`` trains one linear head on the concatenated pooled features
of several backbones. The derivative is one ``nn.Module``: it takes one image at a fixed
size (the largest branch's), scaled to [0, 1], and each branch resizes it to its own input
size and normalises it with its own mean and std *inside* the module (``F.interpolate``
and ``(x - mean) / std``: torch ops that torch.export and ONNX keep), so the registered
version, its ONNX export and the serving model all take the same one input.

The engine sees an ordinary backbone with two stages, the branches and the head, so the
linear probe's feature cache trains it unchanged. The lineage records the branches
(:meth:`CompositeSpec.to_dict`, the ``architecture`` entry): a reload rebuilds them from
that record, not from today's catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.catalog.backbone import ModuleBackbone
from zoo.contract.errors import UsageError
from zoo.contract.refs import Ref, join_refs, parse_refs
from zoo.contract.types import BackboneInfo

if TYPE_CHECKING:  # pragma: no cover
    from zoo.data import Preprocessing

__all__ = ["KIND", "Branch", "CompositeSpec", "build_composite", "describe_joined"]

KIND = "multi-backbone"  # the lineage's architecture kind
# Only probes on the frozen branches are allowed (the branches never train).
STRATEGIES = ("linear-probe", "auto")
_RESIZE_MODES = {"bilinear", "bicubic", "nearest"}


@dataclass(frozen=True)
class Branch:
    """One backbone of the composite and the input it expects."""

    reference: str
    input_size: tuple[int, int, int]  # (C, H, W) this branch runs at
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    license: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "license": self.license,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Branch:
        size = tuple(int(v) for v in data["input_size"])
        return cls(
            reference=str(data["reference"]),
            input_size=(size[0], size[1], size[2]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            interpolation=str(data.get("interpolation") or "bilinear"),
            license=str(data.get("license") or "unknown"),
        )


@dataclass(frozen=True)
class CompositeSpec:
    """The branches, in the order of the joined reference, and the one input size."""

    branches: tuple[Branch, ...]
    input_size: tuple[int, int, int]
    interpolation: str  # how the data pipeline resizes to input_size (the largest branch's)
    crop_pct: float

    @property
    def reference(self) -> str:
        return join_refs([b.reference for b in self.branches])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "parents": [b.to_dict() for b in self.branches],
            "input_size": list(self.input_size),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompositeSpec:
        branches = tuple(Branch.from_dict(b) for b in data["parents"])
        size = tuple(int(v) for v in data["input_size"])
        return cls(branches, (size[0], size[1], size[2]), "bilinear", 1.0)

    def preprocessing(self) -> Preprocessing:
        """What the data pipeline (and the export's sidecar) feeds: a centre crop at the
        fixed size, scaled to [0, 1] (mean 0, std 1); the branches normalise inside."""
        from zoo.data import Preprocessing

        return Preprocessing(
            self.input_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), self.interpolation, self.crop_pct
        )

    def info(self) -> BackboneInfo:
        licenses = {b.license for b in self.branches}
        return BackboneInfo(
            reference=self.reference,
            provider=KIND,
            architecture=KIND,
            license=licenses.pop() if len(licenses) == 1 else "unknown",
            input_size=self.input_size,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            interpolation=self.interpolation,
            crop_pct=self.crop_pct,
        )


def describe_joined(
    text: str, image_size: int | None, *, describe: Callable[[Ref], BackboneInfo]
) -> CompositeSpec:
    """The spec of a joined reference from each part's catalogue entry (``describe`` is
    :func:`zoo.catalog.index.describe`, passed in: the catalogue imports the registry, which
    rebuilds composites).

    The input size is the largest branch's; ``image_size`` (``--image-size``) sets it, and
    scales every branch by the same factor (Lite0/1/2 at 224/240/260 become 112/120/130
    under ``--image-size 130``).
    """
    infos = [describe(ref) for ref in parse_refs(text)]
    sizes = [tuple(i.input_size or (3, 224, 224)) for i in infos]
    largest = max(range(len(infos)), key=lambda k: (sizes[k][1] * sizes[k][2], -k))
    top = sizes[largest]
    scale = image_size / max(top[1], top[2]) if image_size else 1.0
    branches = []
    for info, size in zip(infos, sizes, strict=True):
        if int(size[0]) != 3:
            raise UsageError(
                f"{info.reference} takes {size[0]} channels: only RGB backbones can be joined"
            )
        h, w = (max(16, round(int(size[1]) * scale)), max(16, round(int(size[2]) * scale)))
        branches.append(
            Branch(
                reference=info.reference,
                input_size=(3, h, w),
                mean=tuple(info.mean or (0.485, 0.456, 0.406)),
                std=tuple(info.std or (0.229, 0.224, 0.225)),
                interpolation=info.interpolation or "bilinear",
                license=info.license,
            )
        )
    first = branches[largest]
    return CompositeSpec(
        tuple(branches),
        first.input_size,
        first.interpolation,
        float(infos[largest].crop_pct or 0.875),
    )


def _composite_module(branches: Sequence[Any], specs: Sequence[Branch], num_classes: int) -> Any:
    """The nn.Module (built here so that torch is imported only when a model is)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BranchModule(nn.Module):
        """Resize and normalise inside, then the backbone's pooled features."""

        def __init__(self, model: nn.Module, spec: Branch) -> None:
            super().__init__()
            self.model = model
            self.size = (spec.input_size[1], spec.input_size[2])
            mode = spec.interpolation if spec.interpolation in _RESIZE_MODES else "bilinear"
            self.mode = mode
            # not in the state dict: the lineage's architecture record holds them
            self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), False)
            self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if (x.shape[-2], x.shape[-1]) != self.size:
                kw: dict[str, Any] = {} if self.mode == "nearest" else {"align_corners": False}
                x = F.interpolate(x, size=self.size, mode=self.mode, **kw)
            mean: Any = self.mean
            std: Any = self.std
            model: Any = self.model
            return model.forward_head(model.forward_features((x - mean) / std), pre_logits=True)

    class MultiBackbone(nn.Module):
        """Frozen branches, their pooled features concatenated, one linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.branches = nn.ModuleList(
                BranchModule(m, s) for m, s in zip(branches, specs, strict=True)
            )
            with torch.no_grad():
                was = [b.training for b in self.branches]
                self.branches.eval()
                probe = torch.zeros(1, 3, 32, 32)
                width = sum(int(b(probe).shape[1]) for b in self.branches)
                for b, t in zip(self.branches, was, strict=True):
                    b.train(t)
            self.head = nn.Sequential(nn.Linear(width, num_classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = torch.cat([branch(x) for branch in self.branches], dim=1)
            return self.head(features)

    return MultiBackbone()


def build_composite(
    spec: CompositeSpec,
    *,
    num_classes: int,
    pretrained: bool = True,
    provider_for: Callable[[Ref], Any],
) -> ModuleBackbone:
    """Each branch built by its provider (``provider_for`` is
    :func:`zoo.catalog.index.provider_for`; pretrained from the verified cache), then the
    composite; ``weights_sha256`` of every branch is kept on ``branch_sha256``."""
    from zoo.contract.refs import parse_ref

    backbones = []
    for branch in spec.branches:
        ref = parse_ref(branch.reference)
        built = provider_for(ref).build(ref, num_classes=0, pretrained=pretrained)
        model: Any = built.model
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise UsageError(
                f"{branch.reference} has no forward_features/forward_head, so its pooled "
                "features cannot be joined with another backbone's: probe it alone"
            )
        backbones.append(built)
    module = _composite_module([b.model for b in backbones], spec.branches, num_classes)
    backbone = ModuleBackbone(
        spec.info(), module, [("branches", module.branches), ("head", module.head)]
    )
    # what the lineage records: the branches' weights hashes and the architecture
    backbone.branch_sha256 = tuple(  # type: ignore[attr-defined]
        getattr(b, "weights_sha256", None) for b in backbones
    )
    backbone.architecture = spec.to_dict()  # type: ignore[attr-defined]
    return backbone


def check_strategy(strategy: str, text: str) -> None:
    """Several backbones are only probed: anything that would train a branch is refused."""
    if strategy not in STRATEGIES:
        raise UsageError(
            f"--strategy {strategy} trains backbone weights, but '{text}' joins several "
            f"frozen backbones: use --strategy {' or '.join(STRATEGIES)}"
        )
