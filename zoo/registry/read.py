"""Reading the registry: one version, every version, and zoo's pickle-free reload."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from zoo.contract.errors import IntegrityError, NotFoundError, SecurityError, UsageError
from zoo.contract.refs import Ref, parse_ref
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
    """``models:/NAME/N``, ``models:/NAME/latest``, ``models:/NAME@ALIAS`` or bare ``NAME``."""
    from mlflow.exceptions import MlflowException

    parsed = _to_registered(ref)
    mc = client()
    try:
        if parsed.alias is not None:
            mv = mc.get_model_version_by_alias(parsed.name, parsed.alias)
        elif parsed.version in (None, "latest"):
            versions = mc.search_model_versions(f"name = '{_quote(parsed.name)}'")
            if not versions:
                raise _not_found(f"no registered model named '{parsed.name}'")
            mv = max(versions, key=lambda v: int(v.version))
            mv = mc.get_model_version(mv.name, mv.version)  # search omits aliases
        else:
            mv = mc.get_model_version(parsed.name, parsed.version)
    except MlflowException as exc:
        if _is_not_found(exc):
            raise _not_found(f"no registered version '{parsed}'") from exc
        raise
    return from_model_version(mv)


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def list_versions(
    name: str | None = None,
    *,
    license: str | None = None,
    base: str | None = None,
    filter_string: str | None = None,
) -> list[RegisteredVersion]:
    """Every version (of one model), filtered on the licence or base model tags."""
    clauses = []
    if name:
        clauses.append(f"name = '{_quote(name)}'")
    if license:
        from zoo.licenses.ids import normalize_license

        clauses.append(f"tags.`{TAG.LICENSE}` = '{normalize_license(license)}'")
    if filter_string:
        clauses.append(filter_string)
    fast = None if filter_string else _sqlite_versions()
    if fast is not None:
        out = [v for v in fast if not name or v.name == name]
        if license:
            from zoo.licenses.ids import normalize_license

            out = [v for v in out if v.tags.get(TAG.LICENSE) == normalize_license(license)]
        if base:
            out = [v for v in out if _same_base(v.base, base)]
        return sorted(out, key=lambda v: (v.name, v.version))
    mc = client()
    found = mc.search_model_versions(" AND ".join(clauses) or None)
    out = [from_model_version(mv) for mv in found]
    if base:
        out = [v for v in out if _same_base(v.base, base)]
    aliases = _aliases_by_model({v.name for v in out})
    out = [_with_aliases(v, aliases.get((v.name, v.version), ())) for v in out]
    return sorted(out, key=lambda v: (v.name, v.version))


def _sqlite_versions() -> list[RegisteredVersion] | None:
    """Every version of an SQLite store, read with Python's own sqlite3, read-only.

    Importing MLflow costs 2-4 s, far more than reading a few hundred versions, so
    listings of an SQLite store (the embedded one included) read its tables directly:
    ``model_versions``, ``model_version_tags``, ``registered_model_aliases``, as MLflow's
    SQL store keeps them (deleted versions are marked ``Deleted_Internal``; with MLflow's
    workspaces, the ``default`` one). Anything unexpected (no store yet, another
    workspace, a schema this code does not know) returns None: the caller asks MLflow.
    """
    import os
    import sqlite3
    from types import SimpleNamespace

    from zoo.registry import store

    uri = store.tracking_uri()
    db = store.sqlite_path(uri)
    if db is None or not db.is_file():
        return None
    if store.is_embedded(uri) and not store.embedded_exists():
        return None
    # As configure() would: a moved home, a damaged or emptied database are refused
    # here too, so this reader and MLflow's agree (never "0 versions" over lost ones).
    store.check_health(uri)
    if os.environ.get("MLFLOW_WORKSPACE", "default") not in ("", "default"):
        return None
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error:
        return None
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(model_versions)")}
        where = " WHERE workspace = 'default'" if "workspace" in columns else ""
        rows = conn.execute(
            "SELECT name, version, creation_time, description, run_id, source, current_stage "
            f"FROM model_versions{where}"
        ).fetchall()
        tags: dict[tuple[str, int], dict[str, str]] = {}
        for name, version, key, value in conn.execute(
            f"SELECT name, version, key, value FROM model_version_tags{where}"
        ):
            tags.setdefault((name, int(version)), {})[key] = value
        aliases: dict[tuple[str, int], list[str]] = {}
        for name, alias, version in conn.execute(
            f"SELECT name, alias, version FROM registered_model_aliases{where}"
        ):
            aliases.setdefault((name, int(version)), []).append(alias)
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    out = []
    for name, version, created, description, run_id, source, stage in rows:
        if stage == "Deleted_Internal":
            continue
        key = (name, int(version))
        mv = SimpleNamespace(
            name=name,
            version=int(version),
            run_id=run_id,
            tags=tags.get(key, {}),
            source=source,
            description=description,
            aliases=sorted(aliases.get(key, ())),
            creation_timestamp=created,
        )
        out.append(from_model_version(mv))
    return out


def _same_base(have: str | None, want: str) -> bool:
    if not have:
        return False
    return have == want or have.split("@", 1)[0] == want.split("@", 1)[0]


def _aliases_by_model(names: set[str]) -> dict[tuple[str, int], tuple[str, ...]]:
    mc = client()
    out: dict[tuple[str, int], list[str]] = {}
    for name in names:
        rm = mc.get_registered_model(name)
        for alias, version in (rm.aliases or {}).items():
            out.setdefault((name, int(version)), []).append(alias)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def _with_aliases(v: RegisteredVersion, aliases: tuple[str, ...]) -> RegisteredVersion:
    from dataclasses import replace

    return replace(v, aliases=aliases) if aliases else v


def list_models() -> list[str]:
    return sorted(rm.name for rm in client().search_registered_models())


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
