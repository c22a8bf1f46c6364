"""zoo provider plugin for the Hugging Face Hub: image-classification and
feature-extraction models, read through ``huggingface_hub`` (its cache, ``HF_ENDPOINT``,
``HF_HUB_OFFLINE``).

The Hub is contacted only when asked (``zoo list --provider hf``, ``zoo info hf:...``),
with a short timeout; offline, the index is what the local Hugging Face cache holds.
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

PIPELINES = ("image-classification", "image-feature-extraction")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


def license_from_card(readme: str | None) -> str:
    """The ``license:`` of a model card's YAML front matter (``license_name`` for 'other')."""
    if not readme:
        return zoo.UNKNOWN
    m = _FRONT_MATTER.match(readme)
    if not m:
        return zoo.UNKNOWN
    import yaml

    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return zoo.UNKNOWN
    lic = meta.get("license")
    if lic == "other" and meta.get("license_name"):
        lic = meta["license_name"]
    if isinstance(lic, list):
        lic = lic[0] if lic else None
    return zoo.normalize_license(lic)


def info_from_config(
    repo_id: str, revision: str | None, config: dict[str, Any], license_id: str, endpoint: str
) -> BackboneInfo:
    """BackboneInfo from a repo's config.json (timm's layout or transformers')."""
    pcfg = config.get("pretrained_cfg") or {}
    arch = config.get("architecture") or (config.get("architectures") or [repo_id])[0]
    input_size = pcfg.get("input_size")
    if input_size is None and config.get("image_size"):
        size = int(config["image_size"])
        input_size = [int(config.get("num_channels", 3)), size, size]
    return BackboneInfo(
        reference=f"hf:{repo_id}" + (f"@{revision}" if revision else ""),
        provider="hf",
        architecture=str(arch),
        tag=revision,
        license=license_id,
        source=f"{endpoint.rstrip('/')}/{repo_id}",
        pretrained=True,
        input_size=tuple(input_size) if input_size else None,
        mean=tuple(pcfg["mean"]) if pcfg.get("mean") else None,
        std=tuple(pcfg["std"]) if pcfg.get("std") else None,
        interpolation=pcfg.get("interpolation"),
        crop_pct=pcfg.get("crop_pct"),
        num_classes=config.get("num_classes")
        or (len(config["id2label"]) if config.get("id2label") else None),
        feature_dim=config.get("num_features") or config.get("hidden_size"),
    )


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


class HfProvider:
    """Models on the Hugging Face Hub (timm-format and transformers image models)."""

    name = "hf"
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
            yield info_from_config(repo_id, None, config, license_from_card(card), _endpoint())

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
        try:
            readme_path = hf_hub_download(ref.name, "README.md", **_where(ref))
            readme: str | None = Path(readme_path).read_text(encoding="utf-8")
        except Exception:
            readme = None
        return info_from_config(
            ref.name, ref.revision, config, license_from_card(readme), _endpoint()
        )

    def pull(self, ref: Ref, *, force: bool = False, progress: Any = None) -> zoo.PulledWeights:
        """The repo's weights (safetensors first), config.json and model card."""

        def card_license(paths: dict[str, Path]) -> str:
            readme = paths.get("README.md")
            return license_from_card(readme.read_text(encoding="utf-8") if readme else None)

        return zoo.pull_hub(
            provider="hf",
            name=ref.name,
            repo_id=ref.name,
            revision=ref.revision,
            required=("config.json",),
            optional=("README.md",),
            license=card_license,
            force=force,
            progress=progress,
        )

    def _card_files(self, ref: Ref) -> dict[str, Path]:
        """config.json (required) and README.md (if any), through the HF cache."""
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        out: dict[str, Path] = {}
        for name in ("config.json", "README.md"):
            try:
                out[name] = Path(
                    hf_hub_download(
                        ref.name,
                        name,
                        revision=ref.revision,
                        cache_dir=zoo.hf_cache_dir(),
                        endpoint=zoo.hf_endpoint(),
                        local_files_only=zoo.is_offline(),
                    )
                )
            except (EntryNotFoundError, LocalEntryNotFoundError) as exc:
                if name == "config.json":
                    raise zoo.NotCachedError(
                        f"hf:{ref.name}: config.json is not available ({type(exc).__name__}); "
                        f"run `zoo pull hf:{ref.name}` with network access"
                    ) from exc
        return out

    def build(
        self, ref: Ref, *, num_classes: int | None = None, pretrained: bool = True
    ) -> zoo.ModuleBackbone:
        """timm-format Hub repos (config.json with ``architecture``) build through timm,
        weights from the verified cache; ``pretrained=False`` still reads config.json."""
        import timm

        if pretrained:
            pulled: zoo.PulledWeights | None = self.pull(ref)
            files = {f.name: Path(f.path) for f in pulled.files} if pulled else {}
        else:  # the architecture only: config.json (and the card), no weights
            pulled, files = None, self._card_files(ref)
        config = json.loads(files["config.json"].read_text(encoding="utf-8"))
        arch = config.get("architecture")
        if not arch or not timm.is_model(arch):
            raise zoo.UsageError(
                f"hf:{ref.name} is not a timm-format model (its config.json names no timm "
                "architecture); zoo builds Hub image models in timm's format"
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
        readme = files.get("README.md")
        info = info_from_config(
            ref.name,
            pulled.revision if pulled else ref.revision,
            config,
            license_from_card(readme.read_text(encoding="utf-8") if readme else None),
            _endpoint(),
        )
        return zoo.timm_style_backbone(
            info,
            model,
            pretrained=pretrained,
            num_classes=num_classes,
            weights_sha256=weights_sha256,
        )


@zoo.hookimpl
def register_providers(register: Any) -> None:
    register(HfProvider())
