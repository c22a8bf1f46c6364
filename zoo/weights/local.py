"""Imported checkpoints on disk: ``$ZOO_HOME/local/NAME/model.safetensors`` plus
``record.json``, the base model ``local:NAME``. :mod:`zoo.catalog.imports` writes them
(`zoo import`); the ``local`` provider plugin (plugins/zoo_local) lists, describes and
builds them.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.contract.errors import NotFoundError
from zoo.contract.types import BackboneInfo
from zoo.disk.paths import (
    ReadOnlyHomeError,
    remove_stale_staging,
    subdir,
)

__all__ = [
    "LOCAL_FORMAT",
    "LocalModel",
    "clean_staging",
    "local_dir",
    "local_model",
    "local_models",
]

LOCAL_FORMAT = 1
WEIGHTS = "model.safetensors"
RECORD = "record.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_MAX_NAME = 200  # the folder's name: under the file systems' 255-byte limit
STAGING_PREFIX = ".zoo-import-"  # local/.zoo-import-*: folders being assembled


@dataclass(frozen=True)
class LocalModel:
    """One imported checkpoint, as ``record.json`` holds it."""

    name: str
    arch: str  # the architecture's canonical reference, e.g. timm:tf_efficientnet_lite0.in1k
    license: str
    weights: str  # absolute path of model.safetensors
    sha256: str  # of model.safetensors
    size: int
    num_classes: int | None
    source: str  # the file imported
    source_sha256: str
    source_format: str
    map_by: str
    imported_at: str
    info: BackboneInfo  # what `zoo info local:NAME` shows (input config from the arch)

    @property
    def reference(self) -> str:
        return f"local:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "info"}
        data["info"] = self.info.to_dict()
        data["reference"] = self.reference
        data["format"] = LOCAL_FORMAT
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: Path) -> LocalModel:
        kw = {k: data[k] for k in cls.__dataclass_fields__ if k not in ("info", "weights")}
        return cls(**kw, weights=str(folder / WEIGHTS), info=BackboneInfo.from_dict(data["info"]))


def local_dir() -> Path:
    return subdir("local")


def local_model(name: str) -> LocalModel:
    folder = local_dir() / name
    path = folder / RECORD
    if not _NAME.match(name) or not path.is_file():
        raise NotFoundError(
            f"no local model named '{name}': import one with `zoo import PATH --arch REF "
            f"--license ID --name {name}`"
        )
    return LocalModel.from_dict(json.loads(path.read_text(encoding="utf-8")), folder)


def local_models() -> list[LocalModel]:
    out: list[LocalModel] = []
    try:
        root = local_dir()
    except ReadOnlyHomeError:
        return out  # a read-only home without local/: nothing imported
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not (folder / RECORD).is_file():
            continue
        try:
            out.append(local_model(folder.name))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def clean_staging() -> list[Path]:
    """Remove folders that imports killed mid-way left in ``local/`` (none a live import
    holds): ``.zoo-import-*``, and the ``.NAME.*`` folders older versions of zoo used."""
    root = local_dir()
    removed = remove_stale_staging(root, STAGING_PREFIX)
    for folder in sorted(root.glob(".*")):
        legacy = folder.is_dir() and not folder.name.startswith(STAGING_PREFIX)
        if legacy and not folder.name.startswith(".zoo-") and not any(folder.iterdir()):
            folder.rmdir()  # empty: an import killed before it wrote a byte
            removed.append(folder)
    return removed


def remove_local(name: str) -> LocalModel:
    from zoo.weights.download import file_lock  # hashing and downloads: not for listing

    model = local_model(name)
    with file_lock(f"local-{name}"):
        shutil.rmtree(local_dir() / name)
    return model


def info_extras(reference: str) -> dict[str, object]:
    """`zoo info local:NAME`'s "import" field."""
    if not reference.startswith("local:"):
        return {}
    try:
        model = local_model(reference.split(":", 1)[1])
    except NotFoundError:
        return {}
    data = model.to_dict()
    for key in ("info", "format", "reference"):
        data.pop(key, None)
    return {"import": data}
