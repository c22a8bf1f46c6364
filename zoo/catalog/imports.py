"""`zoo import`: a checkpoint of the user's own becomes the base model ``local:NAME``.

The checkpoint is read by content (:mod:`zoo.weights.checkpoints`: no code runs unless the
user passes ``--trust-pickle``), mapped onto an architecture from any provider (by name,
or by order and shape), loaded into that architecture to prove it fits, and written as
``$ZOO_HOME/local/NAME/model.safetensors`` plus ``record.json`` (:mod:`zoo.weights.local`).
The folder is assembled beside its final place and renamed into it, so a failed import
leaves nothing behind. It lives in the catalogue's room because it builds the architecture
through the catalogue.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from zoo.catalog.build import build_backbone
from zoo.catalog.index import describe, resolution_note
from zoo.contract.errors import IntegrityError, UsageError
from zoo.disk.paths import atomic_write_text, disk_full, release_staging, staging_dir
from zoo.licenses.ids import parse_license, spdx_url
from zoo.weights.checkpoints import (
    detect_format,
    load_weights,
    map_state_dict,
    nonfinite_tensors,
    save_safetensors,
)
from zoo.weights.download import file_lock, sha256_file
from zoo.weights.local import (
    _MAX_NAME,
    _NAME,
    RECORD,
    STAGING_PREFIX,
    WEIGHTS,
    LocalModel,
    clean_staging,
    local_dir,
)

__all__ = ["import_checkpoint"]


def _head_keys(backbone: Any) -> list[str]:
    ids = {id(p) for p in backbone.head.parameters()}
    return [n for n, p in backbone.model.named_parameters() if id(p) in ids]


def _checkpoint_classes(
    source: dict[str, Any], target: dict[str, Any], head: list[str], by: str
) -> int | None:
    """The checkpoint's head width when it differs from the architecture's default."""
    weight = next((k for k in head if target[k].ndim >= 2), None)
    if weight is None:
        return None
    if by == "name":
        tensor = source.get(weight)
    else:
        keys = list(target)
        pos = keys.index(weight)
        values = list(source.values())
        tensor = values[pos] if len(values) == len(keys) else None
    if tensor is None or tensor.ndim != target[weight].ndim:
        return None
    if tuple(tensor.shape[1:]) != tuple(target[weight].shape[1:]):
        return None
    n = int(tensor.shape[0])
    return n if n != int(target[weight].shape[0]) else None


def _resolved(path: Path) -> Path:
    """The checkpoint's real path; a symbolic link loop is the user's input, refused."""
    try:
        return path.expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: pathlib's loop (Python < 3.13)
        why = getattr(exc, "strerror", None) or "a symbolic link loop"
        raise UsageError(
            f"{path} cannot be resolved ({why}: its links never reach a file): give the "
            "checkpoint file itself"
        ) from None


def import_checkpoint(
    path: str | Path,
    *,
    arch: str,
    license: str,
    name: str,
    map_by: Literal["name", "order"] = "name",
    trust_pickle: bool = False,
    force: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> LocalModel:
    """Import ``path`` as ``local:NAME`` on architecture ``arch``; see the module doc.
    ``on_note`` hears what the user should know, e.g. that ``arch`` had no tag and was
    given its provider's default one."""
    if not _NAME.match(name) or len(name) > _MAX_NAME:
        raise UsageError(
            f"'{name[:40]}' is not a local model name: use up to {_MAX_NAME} letters, "
            "digits, '_', '-', '.', '+'"
        )
    if not license.strip():
        raise UsageError("--license is empty: give the licence id of the checkpoint")
    lic = parse_license(license)  # a typo is refused with the nearest ids, not stored
    path = _resolved(Path(path))
    fmt = detect_format(path)  # by content, before anything is loaded
    loaded = load_weights(path, trust_pickle=trust_pickle)  # with the SHA-256 of what was read
    source = loaded.tensors
    bad = nonfinite_tensors(source)
    if bad:
        raise IntegrityError(
            f"{path} holds NaN or infinite values in {len(bad)} tensors (e.g. {bad[0]}): "
            "refused; import a checkpoint saved before training diverged"
        )
    arch_info = describe(arch)
    if arch_info.provider == "local":
        raise UsageError("--arch must name a provider architecture (timm:, torchvision:, hf:)")
    said = resolution_note(arch, arch_info.reference, option="--arch")
    if said and on_note is not None:
        on_note(said)
    backbone = build_backbone(arch_info.reference, pretrained=False)
    target = backbone.model.state_dict()
    head = _head_keys(backbone)
    classes = _checkpoint_classes(source, target, head, map_by)
    if classes is not None:  # the user's own head width (a fine-tuned model)
        backbone = build_backbone(arch_info.reference, num_classes=classes, pretrained=False)
        target = backbone.model.state_dict()
    mapped = map_state_dict(source, target, by=map_by)
    backbone.model.load_state_dict(mapped, strict=True)  # proves the fit
    num_classes = getattr(backbone.model, "num_classes", None) or classes or arch_info.num_classes
    info = replace(
        arch_info,
        reference=f"local:{name}",
        provider="local",
        tag=None,
        license=lic,
        license_url=spdx_url(lic),
        license_source="given at `zoo import` (--license)",
        source=str(path),
        pretrained=True,
        pretrained_dataset=None,  # the checkpoint's own training data: zoo cannot know it
        imagenet_top1=None,
        num_classes=num_classes,
        num_params=sum(p.numel() for p in backbone.model.parameters()),
        feature_dim=backbone.info.feature_dim or arch_info.feature_dim,
    )
    root = local_dir()
    final = root / name
    with file_lock(f"local-{name}"):
        if final.exists() and not force:
            raise UsageError(
                f"local:{name} exists already: pick another --name, or pass --force to replace it"
            )
        clean_staging()
        with disk_full(f"local:{name}"), staging_dir(root, STAGING_PREFIX) as staging:
            try:
                weights = staging / WEIGHTS
                save_safetensors(mapped, weights, metadata={"zoo.arch": arch_info.reference})
                model = LocalModel(
                    name=name,
                    arch=arch_info.reference,
                    license=lic,
                    weights=str(final / WEIGHTS),
                    sha256=sha256_file(weights),
                    size=weights.stat().st_size,
                    num_classes=num_classes,
                    source=str(path),
                    source_sha256=loaded.sha256,
                    source_format=fmt,
                    map_by=map_by,
                    imported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    info=info,
                )
                atomic_write_text(staging / RECORD, json.dumps(model.to_dict(), indent=2))
                release_staging(staging)
                if final.exists():
                    old = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}old-", dir=root))
                    os.replace(final, old / name)
                    os.replace(staging, final)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return model
