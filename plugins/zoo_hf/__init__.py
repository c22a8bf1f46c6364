"""zoo provider plugin for the Hugging Face Hub: image-classification and
feature-extraction models, read through ``huggingface_hub`` (its cache, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``).

The Hub is contacted only when asked (``zoo list --provider hf``, ``zoo info hf:...``),
with a short timeout; offline, the index is what the local Hugging Face cache holds.

Two repo formats build: timm's (``config.json`` names an ``architecture``; built here
through timm) and transformers' (``model_type``; built in :mod:`zoo_hf.transformers_build`,
which is the only module that imports transformers). :mod:`zoo_hf.formats` tells them
apart from the JSON alone.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import zoo
from zoo import BackboneInfo, OfflineError, Ref, UnknownModelError
from zoo_hf import formats
from zoo_hf.formats import info_from_config, license_from_card

PIPELINES = ("image-classification", "image-feature-extraction")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, resolved as the library does (HF_HUB_CACHE, HF_HOME)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


def _where(ref: Ref) -> dict[str, Any]:
    """hf_hub_download's location arguments, read from the environment at call time
    (huggingface_hub reads HF_ENDPOINT, HF_HUB_CACHE and HF_HUB_OFFLINE once, at import)."""
    return {
        "revision": ref.revision,
        "cache_dir": zoo.hf_cache_dir(),
        "endpoint": zoo.hf_endpoint(),
        "local_files_only": zoo.is_offline(),
    }


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


PROCESSOR = "preprocessor_config.json"  # a transformers image processor's settings


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _refuse_unless_buildable(repo_id: str, config: dict[str, Any]) -> None:
    """A transformers-format repo that is not an image classifier or vision backbone is
    refused in one line, before its weights are fetched (this imports transformers)."""
    if formats.repo_format(config) != formats.TRANSFORMERS:
        return
    from zoo_hf.transformers_build import image_model_types

    reason = formats.task_refusal(repo_id, config, image_model_types())
    if reason is not None:
        raise zoo.UsageError(reason)


def _hub_file(ref: Ref, filename: str, *, local_only: bool) -> Path | None:
    """One small file of the revision asked for, or None when it cannot be had."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                ref.name,
                filename,
                revision=ref.revision,
                cache_dir=zoo.hf_cache_dir(),
                endpoint=zoo.hf_endpoint(),
                local_files_only=local_only or zoo.is_offline(),
            )
        )
    except Exception:  # not there, not reachable: the caller decides what that means
        return None


class HfProvider:
    """Models on the Hugging Face Hub (timm-format and transformers image models)."""

    name = "hf"
    grammar = zoo.NameGrammar.repo()  # hf:ORG/REPO[@REVISION], the repo id taken whole
    cache_index = False  # the index is the local HF cache: cheap to scan, changes often

    def version(self) -> str:
        return metadata.version("huggingface_hub")

    def index(self) -> Iterable[BackboneInfo]:
        """Image models in the local Hugging Face cache (no network).

        Reads the cache's documented layout (models--ORG--REPO/snapshots/REV/) directly:
        importing huggingface_hub would cost every `zoo list` a third of a second.
        """
        root = hub_cache_dir()
        if not root.is_dir():
            return
        for repo_dir in sorted(root.glob("models--*")):
            repo_id = repo_dir.name[len("models--") :].replace("--", "/")
            snapshots = sorted(
                (repo_dir / "snapshots").glob("*/config.json"),
                key=lambda p: p.stat().st_mtime,
                reverse=True,
            )
            if not snapshots:
                continue
            snapshot = snapshots[0].parent
            try:
                config = json.loads((snapshot / "config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            readme = snapshot / "README.md"
            card = readme.read_text(encoding="utf-8") if readme.is_file() else None
            processor = _read_json(snapshot / PROCESSOR)
            yield info_from_config(
                repo_id, None, config, license_from_card(card), _endpoint(), processor
            )

    def search(self, pattern: str | None, *, timeout: float) -> Iterable[BackboneInfo]:
        """Ask the Hub for image models whose id contains PATTERN's literal part."""
        if _offline():
            raise OfflineError("HF_HUB_OFFLINE is set: the Hugging Face Hub is not contacted")
        from huggingface_hub import HfApi

        needle = re.sub(r"[*?\[\]]+", " ", pattern or "").strip().split(" ")[0] or None

        def fetch() -> list[Any]:
            api = HfApi(endpoint=_endpoint())
            found: list[Any] = []
            for pipeline in PIPELINES:
                found.extend(
                    api.list_models(search=needle, pipeline_tag=pipeline, limit=100, cardData=True)
                )
            return found

        import logging

        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # no retry chatter
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["models"] = fetch()
            except Exception as exc:
                result["error"] = exc

        # A daemon thread: a hub that never answers cannot hold the process past timeout.
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise OfflineError(f"the Hugging Face Hub did not answer within {timeout:g}s")
        if "error" in result:
            exc = result["error"]
            raise OfflineError(f"the Hugging Face Hub is not reachable ({type(exc).__name__})")
        models = result["models"]
        for m in models:
            card = getattr(m, "card_data", None) or {}
            lic = card.get("license") if hasattr(card, "get") else None
            yield BackboneInfo(
                reference=f"hf:{m.id}",
                provider="hf",
                architecture=m.id.split("/")[-1],
                license=zoo.normalize_license(lic),
                license_url=zoo.spdx_url(zoo.normalize_license(lic)),
                license_source="the model card's license field (Hub search)",
                source=f"{_endpoint().rstrip('/')}/{m.id}",
                pretrained=True,
            )

    def describe(self, ref: Ref) -> BackboneInfo:
        """From config.json and README.md, fetched into (or read from) the HF cache."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            config_path = hf_hub_download(ref.name, "config.json", **_where(ref))
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            raise UnknownModelError(f"the Hub has no model repo '{ref.name}'") from exc
        except EntryNotFoundError as exc:
            raise UnknownModelError(
                f"'{ref.name}' has no config.json: not an image model zoo can build"
            ) from exc
        except LocalEntryNotFoundError as exc:
            raise zoo.NotCachedError(
                f"hf:{ref.name} is not in the local cache and the Hub is not reachable: "
                f"run `zoo pull hf:{ref.name}` while online"
            ) from exc
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
        _refuse_unless_buildable(ref.name, config)
        try:
            readme_path = hf_hub_download(ref.name, "README.md", **_where(ref))
            readme: str | None = Path(readme_path).read_text(encoding="utf-8")
        except Exception:
            readme = None
        processor = None
        if formats.repo_format(config) == formats.TRANSFORMERS:
            processor = _read_json(_hub_file(ref, PROCESSOR, local_only=False))
        return info_from_config(
            ref.name, ref.revision, config, license_from_card(readme), _endpoint(), processor
        )

    def pull(self, ref: Ref, *, force: bool = False, progress: Any = None) -> zoo.PulledWeights:
        """The repo's weights (safetensors first), config.json, model card and (for
        transformers-format repos) image-processor settings.

        config.json is read first (from the HF cache when it holds this revision, else
        from the Hub: a few hundred bytes), so that a repo zoo cannot build is refused
        before anything else is downloaded."""
        config_path = _hub_file(ref, "config.json", local_only=True) or _hub_file(
            ref, "config.json", local_only=False
        )
        config = _read_json(config_path)
        fmt = formats.repo_format(config) if config else None
        if config is not None:
            _refuse_unless_buildable(ref.name, config)
        # lineage.json: what `zoo registry push` wrote (the repo's lineage upstream)
        optional: tuple[str, ...] = ("README.md", "lineage.json")
        if fmt != formats.TIMM:
            optional += (PROCESSOR,)

        def card_license(paths: dict[str, Path]) -> str:
            readme = paths.get("README.md")
            return license_from_card(readme.read_text(encoding="utf-8") if readme else None)

        return zoo.pull_hub(
            provider="hf",
            name=ref.name,
            repo_id=ref.name,
            revision=ref.revision,
            required=("config.json",),
            optional=optional,
            license=card_license,
            force=force,
            progress=progress,
        )

    def _card_files(self, ref: Ref) -> dict[str, Path]:
        """config.json (required), README.md and preprocessor_config.json (if any),
        through the HF cache: what an architecture needs without its weights."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            config = Path(hf_hub_download(ref.name, "config.json", **_where(ref)))
        except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
            raise zoo.NotCachedError(
                f"hf:{ref.name}: config.json is not available ({type(exc).__name__}); "
                f"run `zoo pull hf:{ref.name}` with network access"
            ) from exc
        out = {"config.json": config}
        pinned = Ref(ref.scheme, ref.name, config.parent.name)  # the snapshot's commit
        for name in ("README.md", PROCESSOR):
            path = _hub_file(pinned, name, local_only=False)
            if path is not None:
                out[name] = path
        return out

    def build(
        self, ref: Ref, *, num_classes: int | None = None, pretrained: bool = True
    ) -> zoo.ModuleBackbone:
        """timm-format repos build through timm, transformers-format ones through
        transformers; weights come from the verified cache, and ``pretrained=False``
        reads config.json (and the card) only."""
        if pretrained:
            pulled: zoo.PulledWeights | None = self.pull(ref)
            files = {f.name: Path(f.path) for f in pulled.files} if pulled else {}
        else:  # the architecture only: config.json (and the card), no weights
            pulled, files = None, self._card_files(ref)
        config = json.loads(files["config.json"].read_text(encoding="utf-8"))
        readme = files.get("README.md")
        license_id = license_from_card(readme.read_text(encoding="utf-8") if readme else None)
        revision = pulled.revision if pulled else ref.revision
        fmt = formats.repo_format(config)
        if fmt == formats.TRANSFORMERS:
            from zoo_hf import transformers_build

            snapshot = files["config.json"].parent
            processor = files.get(PROCESSOR) or _hub_file(
                Ref(ref.scheme, ref.name, snapshot.name), PROCESSOR, local_only=False
            )
            info = info_from_config(
                ref.name, revision, config, license_id, _endpoint(), _read_json(processor)
            )
            return transformers_build.build(
                ref.name,
                snapshot,
                config,
                info,
                num_classes=num_classes,
                pretrained=pretrained,
                weights_sha256=pulled.weights_file.sha256 if pulled else None,
            )
        if fmt != formats.TIMM:
            raise zoo.UsageError(
                f"hf:{ref.name}: its config.json names neither a timm architecture nor a "
                f"transformers model_type; {formats.SUPPORTED}"
            )
        info = info_from_config(ref.name, revision, config, license_id, _endpoint())
        return self._build_timm(ref, config, info, pulled, num_classes=num_classes)

    def _build_timm(
        self,
        ref: Ref,
        config: dict[str, Any],
        info: BackboneInfo,
        pulled: zoo.PulledWeights | None,
        *,
        num_classes: int | None,
    ) -> zoo.ModuleBackbone:
        import timm

        arch = config["architecture"]
        if not timm.is_model(arch):
            raise zoo.UsageError(
                f"hf:{ref.name} names timm architecture '{arch}', which the installed timm "
                f"does not have: upgrade timm; {formats.SUPPORTED}"
            )
        # the architecture's defaults (classifier name, first conv) under the repo's own
        base = timm.models.get_pretrained_cfg(arch)
        pcfg = {
            **(base.to_dict() if base is not None else {}),
            **(config.get("pretrained_cfg") or {}),
        }
        pcfg.update(hf_hub_id=None, hf_hub_filename=None)
        pcfg["num_classes"] = config.get("num_classes", pcfg.get("num_classes"))
        kwargs: dict[str, Any] = dict(config.get("model_args") or {})
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        elif pcfg.get("num_classes") is not None:
            kwargs["num_classes"] = pcfg["num_classes"]
        weights_sha256 = None
        if pulled is not None:
            state_dict = zoo.load_state_dict(pulled.weights_file.path)
            pcfg.update(state_dict=state_dict, source="", file=None, url=None)
            model: Any = timm.create_model(arch, pretrained=True, pretrained_cfg=pcfg, **kwargs)
            weights_sha256 = pulled.weights_file.sha256
            if num_classes is not None and num_classes == config.get("num_classes"):
                model.reset_classifier(num_classes)
        else:
            model = timm.create_model(arch, pretrained=False, **kwargs)
        return zoo.timm_style_backbone(
            info,
            model,
            pretrained=pulled is not None,
            num_classes=num_classes,
            weights_sha256=weights_sha256,
        )


@zoo.hookimpl
def register_providers(register: Any) -> None:
    register(HfProvider())
