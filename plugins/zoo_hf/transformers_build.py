"""transformers-format Hub repos (``config.json`` with ``model_type`` + ``model.safetensors``)
built through transformers into a zoo Backbone.

The transformers model is wrapped (:class:`LogitsModel`) so that ``model(x)`` takes a
pixel batch and returns the logits tensor, not a ``ModelOutput``: the engine's feature
and prefix caches, the registry's ``torch.export`` and ONNX export all need a tensor.
Its stages are ``embeddings`` (everything before the encoder's blocks), one stage per
encoder block or stage (``layers.N`` for ViT, ``stages.N`` for ResNet; a final norm or
pooler joins the last one), and ``head``: the classifier alone, outside the base model.

Imported only when such a repo is built or checked: it imports torch and transformers.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zoo
from zoo import BackboneInfo, ModuleBackbone, UsageError

HEAD = "head"
EMBEDDINGS = "embeddings"


def image_model_types() -> Any:
    """transformers' model types that have an image-classification class."""
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        )
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UsageError(
            "building a transformers-format hf: repo needs transformers: "
            "pip install 'transformers>=4.45'"
        ) from exc
    return MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES


class LogitsModel(nn.Module):
    """A transformers image classifier as ``pixels -> logits``.

    ``interpolate_pos_encoding=True`` is passed to models that take it (the ViT family),
    so that they run at any ``--image-size``; at the size they were trained for it
    changes nothing. While ``torch.export`` traces it (the registry's program, ONNX
    export) attention runs in transformers' plain implementation (:func:`_eager_attention`).
    """

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf
        params = inspect.signature(hf.forward).parameters
        self.interpolate = "interpolate_pos_encoding" in params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _exporting():
            with _eager_attention(self.hf):
                return self._logits(x)
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.interpolate:
            out = self.hf(pixel_values=x, interpolate_pos_encoding=True)
        else:
            out = self.hf(pixel_values=x)
        logits: torch.Tensor = out.logits
        return logits


def _exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    return bool(is_exporting()) if is_exporting is not None else False


@contextmanager
def _eager_attention(hf: nn.Module) -> Iterator[None]:
    """transformers' plain attention while ``torch.export`` traces the model.

    With PyTorch's fused attention (``sdpa``, transformers' default) Swin's window
    attention reshapes a transposed output that the ONNX decomposition turns into an
    invalid ``view``; the plain implementation computes the same softmax(QK^T)V with
    ops that export everywhere. Training and inference keep ``sdpa``.
    """
    configs = {id(c): c for m in hf.modules() if (c := getattr(m, "config", None)) is not None}
    saved = {
        key: c._attn_implementation
        for key, c in configs.items()
        if getattr(c, "_attn_implementation", None) not in (None, "eager")
    }
    try:
        for key in saved:
            configs[key]._attn_implementation = "eager"
        yield
    finally:
        for key, value in saved.items():
            configs[key]._attn_implementation = value


class TransformersBackbone(ModuleBackbone):
    """A ModuleBackbone whose pooled features are the classifier's input."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head
        classifier = next(
            m for m in head.modules() if m is not head and any(True for _ in m.parameters())
        )
        box: dict[str, torch.Tensor] = {}

        def hook(_m: Any, args: tuple[Any, ...]) -> None:
            box["x"] = args[0]

        handle = classifier.register_forward_pre_hook(hook)
        try:
            self.model(x)
        finally:
            handle.remove()
        return box["x"].flatten(1)


@contextmanager
def _quiet() -> Iterator[None]:
    """transformers' warnings and loading bars off while zoo builds (zoo reports itself)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def head_names(hf: nn.Module) -> list[str]:
    """The classification model's children outside its base model: the classifier(s)."""
    base = getattr(hf, "base_model", None)
    return [
        name
        for name, child in hf.named_children()
        if child is not base and any(True for _ in child.parameters())
    ]


def _new_head(hf: Any, num_classes: int) -> None:
    """Replace each classifier's output layer (a Linear of ``num_labels`` outputs) with a
    fresh one of ``num_classes``; the engine then starts it near zero."""
    old = int(hf.config.num_labels)
    replaced = 0
    for name in head_names(hf):
        child = getattr(hf, name)
        linears = [
            (path, m)
            for path, m in child.named_modules()
            if isinstance(m, nn.Linear) and m.out_features == old
        ]
        for path, linear in linears:
            fresh = nn.Linear(linear.in_features, num_classes, bias=linear.bias is not None)
            if not path:
                setattr(hf, name, fresh)
            else:
                parent_path, _, attr = path.rpartition(".")
                parent = child.get_submodule(parent_path) if parent_path else child
                setattr(parent, attr, fresh)
            replaced += 1
    if not replaced:
        raise UsageError(
            f"{type(hf).__name__} has no classifier layer of {old} outputs that zoo can "
            "replace with a new head"
        )
    hf.config.num_labels = num_classes  # also resets id2label / label2id
    hf.num_labels = num_classes


def _blocks(base: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The encoder's block list: the ModuleList holding the most parameters (the outermost
    one on a tie, so Swin's stages win over the blocks inside them)."""
    best: tuple[str, nn.ModuleList, int] | None = None
    for name, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            n = sum(p.numel() for p in module.parameters())
            if n and (best is None or n > best[2]):
                best = (name, module, n)
    return (best[0], best[1]) if best else None


def stages(model: LogitsModel) -> list[tuple[str, nn.Module]]:
    """embeddings -> encoder blocks -> head, partitioning the model's parameters."""
    hf = model.hf
    stage_of: dict[int, str] = {}
    for name in head_names(hf):
        for p in getattr(hf, name).parameters():
            stage_of[id(p)] = HEAD
    blocks = _blocks(getattr(hf, "base_model", hf))
    block_names: list[str] = []
    if blocks is not None:
        list_name, block_list = blocks
        short = list_name.rsplit(".", 1)[-1] or "blocks"
        for i, block in enumerate(block_list):
            label = f"{short}.{i}"
            block_names.append(label)
            for p in block.parameters():
                stage_of.setdefault(id(p), label)
    # the rest by where it is declared: before the first block -> embeddings; after a
    # block -> that block's stage (a final norm or pooler feeds the head, it is not new)
    current = EMBEDDINGS
    table: dict[str, str] = {}
    for pname, p in model.named_parameters():
        stage = stage_of.get(id(p))
        if stage is None:
            stage = current
        elif stage != HEAD:
            current = stage
        table[pname] = stage
    return zoo.stages_from_assignment(model, table.__getitem__, [EMBEDDINGS, *block_names, HEAD])


def _load(snapshot: Path, pretrained: bool) -> Any:
    from transformers import AutoConfig, AutoModelForImageClassification

    with _quiet():
        config = AutoConfig.from_pretrained(str(snapshot), local_files_only=True)
        if not pretrained:
            return AutoModelForImageClassification.from_config(config)
        return AutoModelForImageClassification.from_pretrained(
            str(snapshot), config=config, local_files_only=True
        )


def build(
    repo_id: str,
    snapshot: Path,
    config: dict[str, Any],
    info: BackboneInfo,
    *,
    num_classes: int | None,
    pretrained: bool,
    weights_sha256: str | None,
) -> TransformersBackbone:
    """The repo's model from its snapshot folder (config.json and, when ``pretrained``,
    the verified weights file zoo pulled into it), with a new head of ``num_classes``
    outputs (None keeps the repo's head)."""
    from zoo_hf.formats import task_refusal

    reason = task_refusal(repo_id, config, image_model_types())
    if reason is not None:
        raise UsageError(reason)
    try:
        hf = _load(snapshot, pretrained)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"hf:{repo_id}: transformers could not build it ({first}); if the model type is "
            "newer than the installed transformers, upgrade it"
        ) from exc
    hf = hf.float()
    if num_classes is not None:
        _new_head(hf, num_classes)
    hf.eval()
    model = LogitsModel(hf)
    split = stages(model)
    classifier = next(m for m in split[-1][1].modules() if isinstance(m, nn.Linear))
    info = replace(
        info,
        pretrained=pretrained,
        num_classes=int(hf.config.num_labels),
        feature_dim=classifier.in_features,
        num_params=sum(p.numel() for p in model.parameters()),
    )
    return TransformersBackbone(info, model, split, weights_sha256=weights_sha256)
