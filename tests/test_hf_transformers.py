"""transformers-format Hub repos through zoo: tiny ViT and ResNet models made here from a
config (random init), served by the local Hub with real revisions and hashes.

`zoo pull`, `zoo info`, `zoo finetune --strategy partial --unfreeze 1` (frozen stages
bit-identical to the pulled weights, the unfrozen one changed), `zoo export` (fp32 parity
gate), `zoo registry lineage`; the same logits as transformers itself; every strategy;
a text model's repo refused having fetched nothing but its config.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.finetune_helpers import make_images, stage_of
from tests.hub_fixture import FakeHub, running_hub, transformers_repo_files
from zoo.cli import run

PROCESSOR = "preprocessor_config.json"
DYNAMO = "torch.onnx.export (dynamo, torch.export)"  # zoo's exporter, not its fallback
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _tiny_vit() -> Any:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_labels=3,
    )
    return ViTForImageClassification(config).eval()


def _tiny_resnet() -> Any:
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return ResNetForImageClassification(config).eval()


# name -> (repo, model maker, image processor settings, licence, expected zoo input config,
#          expected stage names)
MODELS: dict[str, tuple[str, Any, dict[str, Any], str, dict[str, Any], list[str]]] = {
    "vit": (
        "acme/tiny-vit",
        _tiny_vit,
        {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": 32, "width": 32},
            "resample": 2,
            "do_normalize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        },
        "apache-2.0",
        {
            "input_size": [3, 32, 32],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "interpolation": "bilinear",
            "crop_pct": 1.0,
        },
        ["embeddings", "layers.0", "layers.1", "head"],
    ),
    "resnet": (
        "acme/tiny-resnet",
        _tiny_resnet,
        {
            "image_processor_type": "ConvNextImageProcessor",
            "crop_pct": 0.875,
            "do_resize": True,
            "size": {"shortest_edge": 32},
            "resample": 3,
            "do_normalize": True,
            "image_mean": IMAGENET_MEAN,
            "image_std": IMAGENET_STD,
        },
        "mit",
        {
            "input_size": [3, 32, 32],
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "interpolation": "bicubic",
            "crop_pct": 0.875,
        },
        ["embeddings", "stages.0", "stages.1", "head"],
    ),
}


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with running_hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("CI", "true")
        yield server


def _serve(hub: FakeHub, kind: str) -> tuple[str, str, Any]:
    """(repo id, commit, the transformers model the repo holds)."""
    repo, make, processor, license_id, _, _ = MODELS[kind]
    model = make()
    commit = hub.add_repo(repo, transformers_repo_files(model, processor, license_id))
    return repo, commit, model


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("hf-tf") / "data", classes=2, per_class=6)


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    capsys.readouterr()
    code = run([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


# --------------------------------------------------------------------- pull and describe


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_pull_records_the_repo_and_info_shows_input_config_licence_and_stages(
    hub: FakeHub, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, commit, model = _serve(hub, kind)
    _, _, _, license_id, expected_input, stage_names = MODELS[kind]
    assert run(["pull", f"hf:{repo}"]) == 0
    from zoo.weights.cache import list_records

    (rec,) = list_records()
    assert rec.reference == f"hf:{repo}@{commit}" and rec.license == license_id
    files = {f.name: f for f in rec.files}
    assert set(files) == {"model.safetensors", "config.json", "README.md", PROCESSOR}
    served = hub.repos[repo].files["model.safetensors"]
    assert files["model.safetensors"].sha256 == hashlib.sha256(served).hexdigest()

    doc = _json(capsys, "info", f"hf:{repo}@{commit}")
    info = doc["model"]
    assert info["architecture"] == type(model).__name__
    assert info["license"] == license_id
    for key, value in expected_input.items():
        assert info[key] == pytest.approx(value), key
    assert doc["stages"] == stage_names


# ----------------------------------------------------------------------- the built model


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_zoo_build_gives_transformers_own_logits_and_stages_partition_the_model(
    hub: FakeHub, kind: str
) -> None:
    from zoo import build_backbone, check_partition

    repo, commit, model = _serve(hub, kind)
    backbone = build_backbone(f"hf:{repo}")  # num_classes=None: the repo's own head
    torch.manual_seed(1)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ours = backbone.model.eval()(x)
        theirs = model(pixel_values=x).logits
    assert isinstance(ours, torch.Tensor) and ours.shape == (4, 3)
    assert torch.equal(ours, theirs)

    assert backbone.info.reference == f"hf:{repo}@{commit}"
    assert [name for name, _ in backbone.stages()] == MODELS[kind][5]
    check_partition(backbone.model, backbone.stages())
    head_params = {n for n, _ in backbone.stages()[-1][1].named_parameters()}
    assert len(head_params) == 2  # the classifier's weight and bias, nothing else
    assert backbone.forward_features(x).shape == (4, backbone.info.feature_dim)

    fresh = build_backbone(f"hf:{repo}", num_classes=5)
    assert fresh.model(x).shape == (4, 5) and fresh.info.num_classes == 5
    assert fresh.weights_sha256 == backbone.weights_sha256 is not None


# ---------------------------------------------------------------- fine-tune, export, lineage


def _changed_per_stage(
    served: Any, backbone: Any, after: dict[str, torch.Tensor]
) -> dict[int, set[bool]]:
    """Stage index -> {whether each tensor differs from the weights the Hub served}, for
    every tensor but the repo's classifier (replaced by a new head)."""
    changed: dict[int, set[bool]] = {}
    for key, value in served.state_dict().items():
        if key.startswith("classifier") or key.endswith("num_batches_tracked"):
            continue
        own = f"hf.{key}"  # zoo's model wraps the transformers one as `.hf`
        changed.setdefault(stage_of(backbone, own), set()).add(not torch.equal(value, after[own]))
    return changed


@pytest.mark.slow  # about 20 s each: a registration, a reload and an ONNX export
@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_partial_finetune_keeps_frozen_stages_exports_and_records_lineage(
    hub: FakeHub, kind: str, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo import build_backbone
    from zoo.registry import get_version, load_model

    repo, commit, served = _serve(hub, kind)
    _, _, _, license_id, _, names = MODELS[kind]
    name = f"tf-{kind}"
    result = _json(
        capsys,
        "finetune",
        f"hf:{repo}",
        str(images),
        "--strategy",
        "partial",
        "--unfreeze",
        "1",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--name",
        name,
    )
    uri = result["model_uri"]
    trained, version = load_model(uri)  # the registered weights
    layout = build_backbone(f"hf:{repo}", num_classes=2, pretrained=False)
    changed = _changed_per_stage(served, layout, trained.state_dict())
    assert sorted(changed) == list(range(len(names) - 1))
    last_body = len(names) - 2
    for i in range(last_body):
        assert changed[i] == {False}, f"frozen stage {names[i]} changed"
    assert True in changed[last_body], f"stage {names[last_body]} did not train"

    lineage = get_version(uri).lineage
    assert lineage["parent"]["reference"] == f"hf:{repo}@{commit}"
    weights = hub.repos[repo].files["model.safetensors"]
    assert lineage["parent"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert version.license == license_id

    out = tmp_path / "onnx"
    exported = _json(capsys, "export", uri, "--out", str(out), "--no-benchmark")
    parity = json.loads((out / "parity.json").read_text())
    assert parity["fp32"]["passed"], parity
    assert exported["exporter"] == DYNAMO  # not the TorchScript fallback

    assert run(["registry", "lineage", name]) == 0
    text = capsys.readouterr().out
    assert f"hf:{repo}@{commit}" in text and license_id in text


@pytest.mark.parametrize("kind", ["vit", "resnet"])
@pytest.mark.parametrize("strategy", ["linear-probe", "full"])
def test_linear_probe_and_full_train_what_they_promise(
    hub: FakeHub, kind: str, strategy: str, images: Path
) -> None:
    from zoo.engine import Recipe, finetune

    repo, _, served = _serve(hub, kind)
    recipe = Recipe(
        ref=f"hf:{repo}",
        data=str(images),
        strategy=strategy,
        epochs=1,
        image_size=32,
        batch_size=4,
        workers=0,
        val_split=0.25,
        precision="fp32",
    )
    result = finetune(recipe, register=False)
    after = torch.load(Path(result.run_dir) / "final.pt", weights_only=True)["model"]
    changed = _changed_per_stage(served, result.backbone, after)
    body = sorted(changed)
    assert body == list(range(len(MODELS[kind][5]) - 1))
    if strategy == "linear-probe":
        assert all(changed[i] == {False} for i in body)
    else:
        assert all(True in changed[i] for i in body)


def test_swin_exports_through_the_same_path_and_passes_the_parity_gate(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Swin's window attention does not export under PyTorch's fused attention; the
    wrapper switches to transformers' plain attention while torch.export traces."""
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(0)
    config = SwinConfig(
        image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2],
        window_size=4, num_labels=3,
    )  # fmt: skip
    model = SwinForImageClassification(config).eval()
    assert model.config._attn_implementation == "sdpa"  # what transformers picks here
    processor = {  # DeiT/BEiT-style: resize to 36, centre crop 32
        "size": {"height": 36, "width": 36},
        "crop_size": {"height": 32, "width": 32},
        "do_center_crop": True,
        "resample": 3,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }
    repo = "acme/tiny-swin"
    commit = hub.add_repo(repo, transformers_repo_files(model, processor, "apache-2.0"))
    info = _json(capsys, "info", f"hf:{repo}")["model"]
    assert info["input_size"] == [3, 32, 32] and info["crop_pct"] == pytest.approx(32 / 36)
    out = tmp_path / "swin-onnx"
    doc = _json(capsys, "export", f"hf:{repo}", "--out", str(out), "--no-benchmark")
    assert doc["source"] == f"hf:{repo}@{commit}"
    assert doc["exporter"] == DYNAMO  # not the TorchScript fallback
    assert not any("fell back" in note for note in doc["notes"])
    parity = json.loads((out / "parity.json").read_text())
    assert parity["fp32"]["passed"], parity
    from zoo import build_backbone

    backbone = build_backbone(f"hf:{repo}")
    assert backbone.model.hf.config._attn_implementation == "sdpa"  # restored after export


def test_a_bare_backbone_repo_gets_a_new_classifier_on_its_pretrained_body(
    hub: FakeHub, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers import ViTConfig, ViTModel

    from zoo import build_backbone

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8,
    )  # fmt: skip
    body = ViTModel(config, add_pooling_layer=False).eval()
    repo = "acme/tiny-vit-features"
    hub.add_repo(repo, transformers_repo_files(body, MODELS["vit"][2], "apache-2.0"))
    capfd.readouterr()
    backbone = build_backbone(f"hf:{repo}", num_classes=4)
    assert "Loading weights" not in capfd.readouterr().err  # transformers' bars are off
    assert backbone.info.architecture == "ViTModel" and backbone.info.num_classes == 4
    built = backbone.model.hf.vit.state_dict()
    assert all(torch.equal(v, built[k]) for k, v in body.state_dict().items())
    assert [n for n, _ in backbone.stages()] == MODELS["vit"][5]
    assert backbone.model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_a_pulled_repo_builds_offline_without_a_request(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoo import build_backbone

    repo, commit, model = _serve(hub, "vit")
    assert run(["pull", f"hf:{repo}"]) == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_requests()
    backbone = build_backbone(f"hf:{repo}")
    assert hub.hub_requests() == []
    assert backbone.info.reference == f"hf:{repo}@{commit}"
    assert backbone.info.mean == (0.5, 0.5, 0.5)  # the processor file came from the cache
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(backbone.model(x), model(pixel_values=x).logits)


# ----------------------------------------------------------------------------- refusals


def _tiny_bert_files() -> dict[str, bytes]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    return transformers_repo_files(BertModel(config), None, "apache-2.0")


@pytest.mark.parametrize("command", ["pull", "finetune", "info"])
def test_a_text_model_is_refused_in_one_line_having_fetched_only_its_config(
    hub: FakeHub, command: str, images: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = "acme/tiny-bert"
    hub.add_repo(repo, _tiny_bert_files())
    args = {
        "pull": ["pull", f"hf:{repo}"],
        "finetune": ["finetune", f"hf:{repo}", str(images), "--epochs", "1"],
        "info": ["info", f"hf:{repo}"],
    }[command]
    capsys.readouterr()
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and err.count("\n") == 1, err
    assert "'bert'" in err and "not an image model" in err
    assert "transformers image-classification models" in err  # what zoo does support
    assert hub.files_requested(repo) == {"config.json"}


def test_a_segmentation_repo_is_refused_before_its_weights(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    """segformer has an image classifier in transformers, but this repo's architecture
    is a segmentation model: refused from config.json alone."""
    repo = "acme/segmenter"
    config = {"model_type": "segformer", "architectures": ["SegformerForSemanticSegmentation"]}
    hub.add_repo(
        repo, {"config.json": json.dumps(config).encode(), "model.safetensors": b"\0" * 64}
    )
    assert run(["pull", f"hf:{repo}"]) == 2
    err = capsys.readouterr().err
    assert "SegformerForSemanticSegmentation" in err and "another task" in err
    assert hub.files_requested(repo) == {"config.json"}


def test_help_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from zoo.cli import run\n"
        "assert run(['--help']) == 0\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ),
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
