"""zoo-effnet-lite as a user meets it: listed by zoo, pulled offline, real ImageNet answers.

Runs wherever the plugin is installed (CI: `pip install -e plugins/zoo-effnet-lite`); the
fixtures come from zoo's pytest plugin (zoo.testing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.testing import check_provider
from zoo_effnet_lite import VARIANTS, EffnetLiteProvider

PHOTOS = Path(__import__("sklearn").__file__).parent / "datasets" / "images"


def test_zoo_lists_every_variant_through_the_entry_point(zoo_tmp_home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "effnet-lite:*", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    models = {m["reference"]: m for m in json.loads(done.stdout)["models"]}
    assert sorted(models) == ["effnet-lite:lite0", "effnet-lite:lite1", "effnet-lite:lite2"]
    assert {m["license"] for m in models.values()} == {"apache-2.0"}
    assert [models[f"effnet-lite:{v}"]["input_size"] for v in VARIANTS] == [
        [3, 224, 224], [3, 240, 240], [3, 260, 260],
    ]  # fmt: skip


def test_the_provider_honours_zoos_contract(zoo_tmp_home: Path) -> None:
    check_provider(EffnetLiteProvider(), [f"effnet-lite:{v}" for v in VARIANTS])


def test_preprocessing_and_size_are_the_architectures_own() -> None:
    import timm

    for v in VARIANTS.values():
        info = EffnetLiteProvider().describe(zoo.parse_ref(f"effnet-lite:{v.name}"))
        model = timm.create_model(v.arch, pretrained=False)
        cfg = model.pretrained_cfg
        assert info.input_size == tuple(cfg["input_size"])
        assert info.crop_pct == cfg["crop_pct"] and info.interpolation == cfg["interpolation"]
        assert info.mean == tuple(cfg["mean"]) and info.std == tuple(cfg["std"])
        assert info.num_params == sum(p.numel() for p in model.parameters())


def test_pull_copies_the_packaged_file_into_the_cache_hashed(zoo_tmp_home: Path) -> None:
    provider = EffnetLiteProvider()
    ref = zoo.parse_ref("effnet-lite:lite0")
    pulled = provider.pull(ref)  # offline (HF_HUB_OFFLINE=1): a local file is no network
    path = Path(pulled.weights_file.path)
    assert zoo_tmp_home in path.parents and path.is_file()
    assert pulled.weights_file.sha256 == zoo.sha256_file(path) == VARIANTS["lite0"].sha256
    assert pulled.license == "apache-2.0" and pulled.source == VARIANTS["lite0"].source
    assert provider.pull(ref) == pulled  # the cache record, not a second copy


def _top1(backbone: zoo.Backbone, photo: Path) -> int:
    import timm.data
    import torch
    from PIL import Image

    info = backbone.info
    transform = timm.data.create_transform(
        input_size=info.input_size, interpolation=info.interpolation, mean=info.mean,
        std=info.std, crop_pct=info.crop_pct,
    )  # fmt: skip
    x = transform(Image.open(photo).convert("RGB"))[None]
    backbone.model.eval()
    with torch.no_grad():
        return int(backbone.model(x).argmax())


@pytest.mark.parametrize(("photo", "imagenet_class"), [("china.jpg", 698), ("flower.jpg", 985)])
def test_lite0_sees_what_imagenet_says(zoo_tmp_home: Path, photo: str, imagenet_class: int) -> None:
    backbone = zoo.build_backbone("effnet-lite:lite0")  # through zoo: pulled, built, checked
    assert backbone.weights_sha256 == VARIANTS["lite0"].sha256
    assert _top1(backbone, PHOTOS / photo) == imagenet_class  # 698 palace, 985 daisy


def test_a_new_head_keeps_the_pretrained_body(zoo_tmp_home: Path) -> None:
    backbone = zoo.build_backbone("effnet-lite:lite0", num_classes=5)
    names = [name for name, _ in backbone.stages()]
    assert names[0] == "stem" and names[-1] == "head"
    assert backbone.model.get_classifier().out_features == 5 and backbone.info.num_classes == 5
    assert {id(p) for p in backbone.head.parameters()} == {
        id(p) for p in backbone.model.get_classifier().parameters()
    }
    pretrained = zoo.build_backbone("effnet-lite:lite0")
    assert (backbone.model.conv_stem.weight == pretrained.model.conv_stem.weight).all()
