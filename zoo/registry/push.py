"""`zoo registry push`: a registered version onto the Hugging Face Hub, with its lineage.

The repo is what ``timm.create_model("hf-hub:ORG/REPO")`` and zoo's ``hf:`` provider
read: ``model.safetensors`` (the registered weights file, byte for byte: its SHA-256 is
the version's ``zoo.weights_sha256``), ``config.json`` written by timm's own
``save_config_for_hf`` (``architecture``, ``num_classes``, ``label_names``,
``pretrained_cfg``), ``README.md`` (a ``huggingface_hub.ModelCard`` whose ``base_model``
is the nearest ancestor on the Hub, ``base_model_relation: finetune``, ``license``,
``datasets``, ``model-index``) and ``lineage.json`` (zoo's record, with ``pushed``: the
version it was pushed from), which ``zoo finetune hf:ORG/REPO`` reads back so the
grandchild's lineage reaches the original base (:mod:`zoo.registry.upstream`).

The upload is ``HfApi.create_repo(exist_ok=True)`` then ``HfApi.upload_folder`` (one
commit), against ``HF_ENDPOINT`` with huggingface_hub's token (``HF_TOKEN`` or ``hf auth
login``). This is core code with huggingface_hub as its library, not the ``hf`` provider
plugin's: pushing is about a registered version (the registry's), and the core may not
import a plugin; the provider only reads repos.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.contract.errors import LicenseError, OfflineError, UsageError
from zoo.contract.refs import parse_ref
from zoo.licenses.ids import CUSTOM_PREFIX, UNKNOWN, license_kind
from zoo.registry.records import RegisteredVersion, parents_of

__all__ = ["PushResult", "hub_base_model", "hub_repo_id", "push_version"]

_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
HUB_FILES = ("model.safetensors", "config.json", "README.md", "lineage.json")


@dataclass(frozen=True)
class PushResult:
    model_uri: str
    repo_id: str
    url: str
    commit: str
    base_model: str | None
    license: str
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_uri": self.model_uri,
            "repo_id": self.repo_id,
            "url": self.url,
            "commit": self.commit,
            "base_model": self.base_model,
            "license": self.license,
            "files": list(self.files),
        }


def hub_repo_id(target: str) -> str:
    """``hf:ORG/REPO`` -> ``ORG/REPO``; anything else is refused in one line."""
    repo = target[3:] if target.startswith("hf:") else None
    if repo is None or "@" in repo or not _REPO.match(repo) or ".." in repo:
        raise UsageError(
            f"'{target}' is not a Hub repo to push to: give hf:ORG/REPO "
            "(no revision: a push makes a new commit on main)"
        )
    return repo


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _hub_id(reference: str) -> str | None:
    """The Hub repo a chain member lives in: ``hf:ORG/REPO`` itself, a provider reference
    whose weights the catalogue says come from a Hub repo (timm's ``timm/ARCH.TAG``);
    None for registered versions (another store) and weights off the Hub."""
    if reference.startswith("models:/"):
        return None
    if reference.startswith("hf:"):
        return reference[3:].split("@", 1)[0]
    try:
        from zoo.catalog.index import describe

        source = describe(reference.split("@", 1)[0]).source or ""
    except Exception:
        return None
    for host in ("https://huggingface.co/", _endpoint() + "/"):
        if source.startswith(host) and _REPO.match(source[len(host) :]):
            return source[len(host) :]
    return None


def hub_base_model(record: Mapping[str, Any]) -> str | None:
    """``base_model`` for the Hub's model tree: the nearest ancestor that is a Hub repo."""
    for reference in reversed([str(c) for c in record.get("chain") or ()]):
        found = _hub_id(reference)
        if found:
            return found
    return None


def _refuse_unpushable(version: RegisteredVersion) -> None:
    """Exports, composed modules and several parents are refused (exit 2); a licence that
    forbids redistribution anywhere along the chain is refused (exit 5)."""
    uri = version.model_uri
    if version.relation == "export":
        raise UsageError(
            f"{uri} is an export; push the version it was exported from "
            f"({version.tags.get('zoo.derived_from', 'its source')})"
        )
    architecture = version.lineage.get("architecture")
    if architecture or len(parents_of(version.lineage)) > 1:
        kind = (architecture or {}).get("kind", "multi-backbone")
        raise UsageError(
            f"{uri} is a {kind} module zoo composed; the Hub's formats (timm, transformers) "
            "cannot describe it, so it is not pushed: push a single-backbone fine-tune"
        )
    from zoo.registry.lineage import license_chain

    for ancestor in license_chain(version):
        if license_kind(ancestor.license) == "no-derivatives":
            raise LicenseError(
                f"{uri} derives from {ancestor.reference} ({ancestor.license}), whose "
                "licence forbids distributing derivatives: not pushed"
            )


def _timm_model(version: RegisteredVersion) -> Any:
    from zoo.registry.read import load_model

    model, _ = load_model(version.model_uri)
    cfg = getattr(model, "pretrained_cfg", None)
    arch = cfg.get("architecture") if isinstance(cfg, Mapping) else None
    import timm

    if not arch or not timm.is_model(arch):
        raise UsageError(
            f"{version.model_uri} is built on {version.base}, not a timm architecture; "
            "push writes timm's Hub format (config.json with `architecture`)"
        )
    return model


def _card_license(license_id: str) -> dict[str, str]:
    if license_id == UNKNOWN:
        return {"license": "other", "license_name": UNKNOWN}
    if license_id.startswith(CUSTOM_PREFIX) or license_kind(license_id) == "custom":
        return {"license": "other", "license_name": license_id.removeprefix(CUSTOM_PREFIX)}
    return {"license": license_id}


def hub_card(version: RegisteredVersion, base_model: str | None) -> str:
    """zoo's model card with the Hub's metadata: base_model (the model tree),
    base_model_relation, license, library timm."""
    from huggingface_hub import ModelCard

    from zoo.registry.modelcard import model_card

    card = ModelCard(model_card(version.name, version.lineage))
    data: Any = card.data  # a ModelCardData (ModelCard.card_data_class)
    for key, value in _card_license(version.license).items():
        setattr(data, key, value)
    if base_model:
        data.base_model = base_model
        data.base_model_relation = "finetune"
    else:
        data.base_model = None
        data.base_model_relation = None
    data.library_name = "timm"
    data.tags = ["timm", "zoo", "image-classification", "finetune"]
    return str(card)


def _write_folder(version: RegisteredVersion, model: Any, folder: Path, base: str | None) -> None:
    from timm.models._hub import save_config_for_hf

    from zoo.registry.read import download_weights

    with tempfile.TemporaryDirectory(prefix="zoo-push-w-") as tmp:
        shutil.copyfile(download_weights(version, Path(tmp)), folder / "model.safetensors")
    pre = version.preprocessing
    data_config = {
        k: (tuple(pre[k]) if isinstance(pre[k], list) else pre[k])
        for k in ("input_size", "mean", "std", "interpolation", "crop_pct")
        if pre.get(k) is not None
    }
    save_config_for_hf(
        model,
        str(folder / "config.json"),
        model_config={"label_names": list(version.class_names)} if version.class_names else None,
        data_config=data_config or None,
    )
    (folder / "README.md").write_text(hub_card(version, base), encoding="utf-8")
    record = dict(version.lineage)
    record["pushed"] = {
        "from": version.model_uri,
        "weights_sha256": version.tags.get("zoo.weights_sha256"),
        "base_model": base,
    }
    (folder / "lineage.json").write_text(json.dumps(record, indent=2), encoding="utf-8")


def _hub_error(exc: Exception, repo_id: str) -> Exception:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status in (401, 403):
        return UsageError(
            f"the Hub at {_endpoint()} refused the token for {repo_id} (HTTP {status}): "
            "use a token with write access to that namespace (HF_TOKEN or `hf auth login`)"
        )
    if status is not None or isinstance(exc, ValueError):
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return UsageError(f"the Hub at {_endpoint()} refused the push to {repo_id}: {said}")
    return OfflineError(
        f"the Hub at {_endpoint()} is not reachable ({type(exc).__name__}): check HF_ENDPOINT "
        "and the network, then push again"
    )


def push_version(ref: str, target: str, *, private: bool = False) -> PushResult:
    """Push ``models:/NAME/N`` to ``hf:ORG/REPO`` (created when missing); one commit."""
    repo_id = hub_repo_id(target)
    parsed = parse_ref(ref)
    if not parsed.is_registered:
        raise UsageError(
            f"'{ref}' is not a registered version: give models:/NAME/N (see `zoo registry list`)"
        )
    from huggingface_hub import constants, get_token

    token = get_token()
    if not token:
        raise UsageError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with "
            "write access), then push again"
        )
    from zoo.registry.read import get_version

    version = get_version(ref)
    _refuse_unpushable(version)
    model = _timm_model(version)
    base = hub_base_model(version.lineage)
    # huggingface_hub reads HF_HUB_DISABLE_XET once, at import; honour it at call time
    constants.HF_HUB_DISABLE_XET = os.environ.get("HF_HUB_DISABLE_XET", "").strip().lower() in {
        "1",
        "true",
        "yes",
        "on",
    }
    from huggingface_hub import HfApi

    api = HfApi(endpoint=_endpoint(), token=token)
    with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
        folder = Path(tmp)
        _write_folder(version, model, folder, base)
        try:
            url = api.create_repo(repo_id, exist_ok=True, private=private)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=f"zoo registry push {version.model_uri}",
            )
        except Exception as exc:
            raise _hub_error(exc, repo_id) from None
    return PushResult(
        model_uri=version.model_uri,
        repo_id=repo_id,
        url=str(url),
        commit=str(info.oid),
        base_model=base,
        license=version.license,
        files=HUB_FILES,
    )
