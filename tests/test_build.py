"""Provider.build with pretrained weights loaded from the verified cache."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pytest
import torch

import zoo
from zoo.weights.cache import save_record


def test_torchvision_pretrained_build_loads_the_recorded_file_without_network(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A cache laid out as `zoo pull torchvision:resnet18` leaves it: the file under its
    published name plus its record. Building reads it (HF_ENDPOINT is a dead port and
    torchvision's URL is never asked) and puts a fresh head on it."""
    from torchvision import models

    torch.manual_seed(0)
    source = models.resnet18(weights=None)
    folder = zoo.subdir("cache", "torchvision")
    path = folder / "resnet18-f37072fd.pth"
    torch.save(source.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    save_record(
        zoo.PulledWeights(
            reference="torchvision:resnet18.IMAGENET1K_V1",
            provider="torchvision",
            revision=None,
            files=(zoo.FileRecord(path.name, str(path), digest, path.stat().st_size),),
            license="unknown",
            source="https://download.pytorch.org/models/resnet18-f37072fd.pth",
            pulled_at=datetime.now(timezone.utc).isoformat(),
            extra={"storage": "zoo"},
        )
    )
    backbone = zoo.build_backbone("torchvision:resnet18", num_classes=3)
    assert backbone.weights_sha256 == digest
    got = backbone.model.state_dict()
    assert torch.equal(got["layer3.1.conv2.weight"], source.state_dict()["layer3.1.conv2.weight"])
    assert got["fc.weight"].shape == (3, 512)
    assert backbone.info.pretrained and backbone.info.num_classes == 3
    assert [n for n, _ in backbone.stages()][:2] == ["stem", "layer1"]

    from zoo.cli import run

    assert run(["cache", "verify", "torchvision:resnet18"]) == 0
    assert run(["cache", "rm", "torchvision:resnet18"]) == 0
    assert not path.exists()


def test_build_backbone_refuses_a_registered_reference() -> None:
    with pytest.raises(zoo.UsageError, match="registered model"):
        zoo.build_backbone("models:/pets/1")
