"""Reading the registry: one version, every version, and zoo's pickle-free reload."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from zoo.contract.errors import IntegrityError, NotFoundError, SecurityError, UsageError
from zoo.contract.refs import Ref, parse_ref
from zoo.registry.paging import quoted
from zoo.registry.records import TAG, RegisteredVersion, from_model_version
from zoo.registry.store import client

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = [
    "WEIGHTS_FILE",
    "artifact_uri",
    "download_artifact",
    "download_files",
    "get_version",
    "has_model",
    "list_models",
    "list_versions",
    "load_model",
    "missing_artifact",
    "require_artifact",
    "sha256_file",
]

WEIGHTS_FILE = "weights/model.safetensors"  # inside the logged model's artifacts


def _not_found(what: str) -> NotFoundError:
    return NotFoundError(f"{what}: see `zoo registry list` for the registered models")


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}


def has_model(name: str) -> bool:
    """Is ``name`` a registered model? (The catalogue asks this for bare names.)"""
    from zoo.registry import store

    if store.is_embedded() and not store.embedded_exists():
        return False  # nothing registered yet: do not create a store to say so
    from mlflow.exceptions import MlflowException

    try:
        client().get_registered_model(name)
    except MlflowException as exc:
        if _is_not_found(exc):
            return False
        raise
    return True


def _to_registered(ref: str | Ref) -> Ref:
    parsed = parse_ref(ref) if isinstance(ref, str) else ref
    if parsed.scheme == "bare":
        return Ref("models", parsed.name, version="latest")
    if not parsed.is_registered:
        raise UsageError(
            f"'{parsed}' is not a registered model: write models:/NAME/VERSION, "
            "models:/NAME@ALIAS or a registered NAME"
        )
    return parsed


def get_version(ref: str | Ref) -> RegisteredVersion:
    """``models:/NAME/N``, ``models:/NAME/latest``, ``models:/NAME@ALIAS`` or bare ``NAME``.

    One version is read, whatever the store holds: on an SQLite store directly
    (:mod:`zoo.registry.sqlite_read`), elsewhere with one or two MLflow requests."""
    from zoo.registry import sqlite_read

    parsed = _to_registered(ref)
    latest = parsed.alias is None and parsed.version in (None, "latest")
    number = None if latest or parsed.alias is not None else _number(parsed.version)
    if latest or parsed.alias is not None or number is not None:
        direct = sqlite_read.one(parsed.name, number, parsed.alias)
        if direct is not None:
            if not direct:
                raise _not_found(_missing(parsed, latest))
            return direct[0]
    from mlflow.exceptions import MlflowException

    mc = client()
    try:
        if parsed.alias is not None:
            mv = mc.get_model_version_by_alias(parsed.name, parsed.alias)
        elif latest:
            found = mc.search_model_versions(
                f"name = {quoted(parsed.name)}", max_results=1, order_by=["version_number DESC"]
            )
            if not found:
                raise _not_found(_missing(parsed, latest))
            mv = mc.get_model_version(found[0].name, found[0].version)  # search omits aliases
        else:
            mv = mc.get_model_version(parsed.name, parsed.version)
    except MlflowException as exc:
        if _is_not_found(exc):
            raise _not_found(f"no registered version '{parsed}'") from exc
        raise
    return from_model_version(mv)


def _number(version: str | None) -> int | None:
    try:
        return int(str(version))
    except ValueError:
        return None  # MLflow says what is wrong with it


def _missing(parsed: Ref, latest: bool) -> str:
    if latest:
        return f"no registered model named '{parsed.name}'"
    return f"no registered version '{parsed}'"


def list_versions(
    name: str | None = None,
    *,
    license: str | None = None,
    base: str | None = None,
    filter_string: str | None = None,
) -> list[RegisteredVersion]:
    """Every version (of one model), filtered on the licence or base model tags, by name
    and number. ``filter_string``: MLflow's own filter, asked of MLflow (whatever the
    store)."""
    from zoo.registry.paging import VersionFilter, base_stem
    from zoo.registry.search import find, with_aliases

    tags: tuple[tuple[str, str], ...] = ()
    if license:
        from zoo.licenses.ids import normalize_license

        tags = ((TAG.LICENSE, normalize_license(license)),)
    wanted = VersionFilter(name=name, tags=tags, base=base_stem(base) if base else None)
    if filter_string is None:
        return find(wanted)
    mc = client()
    clauses = [c for c in (wanted.mlflow_filter(), filter_string) if c]
    found, token = [], None
    while True:
        got = mc.search_model_versions(" AND ".join(clauses), max_results=1000, page_token=token)
        found += [v for v in map(from_model_version, got) if wanted.matches(v)]
        token = got.token
        if not token:
            break
    return with_aliases(mc, sorted(found, key=lambda v: (v.name, v.version)))


def list_models() -> list[str]:
    """Every registered model's name (MLflow answers a page of them at a time)."""
    mc = client()
    names, token = [], None
    while True:
        got = mc.search_registered_models(max_results=1000, page_token=token)
        names += [rm.name for rm in got]
        token = got.token
        if not token:
            return sorted(names)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_uri(version: RegisteredVersion, inner: str = "") -> str:
    """Where a file of the version's artifacts lives (the logged model's location)."""
    model_id = version.tags.get(TAG.MODEL_ID)
    if not model_id:
        raise NotFoundError(f"{version.model_uri} has no zoo artifacts (no {TAG.MODEL_ID} tag)")
    location = str(client().get_logged_model(model_id).artifact_location).rstrip("/")
    return f"{location}/{inner}" if inner else location


def missing_artifact(version: RegisteredVersion, where: str) -> IntegrityError:
    """The one line for a registered file deleted behind zoo's back (exit 4)."""
    return IntegrityError(
        f"{version.model_uri}: {where} is missing from the artifact store (deleted behind "
        "zoo's back): run `zoo registry check --verify` to see every damaged version, then "
        "register the model again (or restore the file from a backup)"
    )


def require_artifact(version: RegisteredVersion, inner: str) -> None:
    """Fail fast, before any work, when a file of the version's artifacts is gone: a stat
    on a local store, one listing request on a server."""
    uri = artifact_uri(version, inner)
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
        if not path.is_file():
            raise missing_artifact(version, str(path))
        return
    folder, _, leaf = inner.rpartition("/")
    model_id = version.tags.get(TAG.MODEL_ID)
    try:
        listed = client().list_logged_model_artifacts(model_id, folder or None)
    except Exception:
        return  # the download says what went wrong
    if not any(Path(f.path).name == leaf for f in listed):
        raise missing_artifact(version, uri)


def download_artifact(version: RegisteredVersion, inner: str, dst: Path) -> Path:
    """Download one file of the version's artifacts (``lineage.json``, ``README.md`` ...);
    a file deleted from the store is an :class:`IntegrityError` naming it."""
    import mlflow

    uri = artifact_uri(version, inner)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    except Exception as exc:
        if _gone(exc):
            raise missing_artifact(version, uri) from None
        raise


def _gone(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError):
        return True
    code = getattr(exc, "error_code", "")
    text = str(exc).lower()
    return (
        code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
        or "no such file" in text
        or ("404" in text and "not found" in text)
    )


def download_files(version: RegisteredVersion) -> Path:
    """All of a version's files (an export's folder), in a temp folder outside the zoo
    home that lives as long as this process. Without a destination MLflow hands back a
    local store's own artifact folder and writes ``registered_model_meta`` into it: into
    the store, and an OSError on a read-only home. Files gone: an IntegrityError."""
    import atexit
    import shutil

    import mlflow

    tmp = tempfile.mkdtemp(prefix="zoo-download-")
    atexit.register(shutil.rmtree, tmp, True)
    try:
        got = mlflow.artifacts.download_artifacts(artifact_uri=version.model_uri, dst_path=tmp)
    except Exception as exc:
        if _gone(exc):
            raise missing_artifact(version, "its files") from None
        raise
    folder = Path(got)
    if version.tags.get(TAG.FORMAT) == "onnx" and not any(folder.glob("*.onnx")):
        raise missing_artifact(version, f"the .onnx file of {artifact_uri(version)}")
    return folder


def download_weights(version: RegisteredVersion, dst: Path) -> Path:
    """Download and verify the version's safetensors file."""
    local = download_artifact(version, WEIGHTS_FILE, dst)
    want = version.tags.get(TAG.WEIGHTS_SHA256)
    have = sha256_file(local)
    if want and have != want:
        raise IntegrityError(
            f"{version.model_uri}: weights sha256 is {have}, the registry recorded {want}; "
            "the artifact store was changed behind zoo's back, register the model again"
        )
    return local


def load_model(ref: str | Ref) -> tuple[nn.Module, RegisteredVersion]:
    """zoo's own reload: the architecture rebuilt by the base model's provider (no
    download, random init), then the version's safetensors weights. No pickle is read."""
    import os

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    version = get_version(ref)
    if version.relation == "export":
        raise UsageError(
            f"{version.model_uri} is an {version.tags.get(TAG.FORMAT, 'exported')} export, "
            f"not a PyTorch model: load {version.tags.get(TAG.DERIVED_FROM, 'its source')}"
        )
    base = version.base
    if not base:
        raise SecurityError(
            f"{version.model_uri} was not registered by zoo (no zoo.base tag): zoo will not "
            "load it; use mlflow.pytorch.load_model if you trust its source"
        )
    require_artifact(version, WEIGHTS_FILE)  # before building anything
    num_classes = version.lineage.get("num_classes") or int(
        version.tags.get(TAG.NUM_CLASSES, "0") or 0
    )
    architecture = version.lineage.get("architecture")
    from zoo.registry.architectures import build_architecture

    model = build_architecture(base, int(num_classes) if num_classes else None, architecture)
    from safetensors.torch import load_model as load_safetensors

    with tempfile.TemporaryDirectory(prefix="zoo-load-") as tmp:
        path = download_weights(version, Path(tmp))
        missing, unexpected = load_safetensors(model, str(path), strict=False)
    if missing or unexpected:
        raise IntegrityError(
            f"{version.model_uri}: weights do not fit {base} with {num_classes} classes "
            f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )
    model.eval()
    return model, version
