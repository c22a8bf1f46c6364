"""Every provider's models split into ordered stages that partition the parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo.catalog.index import provider_for


def _owners(model: nn.Module, stages: list[tuple[str, nn.Module]]) -> dict[str, list[str]]:
    """parameter name -> the stages holding it."""
    owners: dict[int, list[str]] = {}
    for stage_name, stage in stages:
        for p in stage.parameters():
            owners.setdefault(id(p), []).append(stage_name)
    return {n: owners.get(id(p), []) for n, p in model.named_parameters()}


def _assert_partition(model: nn.Module, stages: list[tuple[str, nn.Module]]) -> None:
    owners = _owners(model, stages)
    assert owners, "model has no parameters"
    bad = {n: s for n, s in owners.items() if len(s) != 1}
    assert not bad, f"parameters not in exactly one stage: {list(bad.items())[:5]}"
    model_ids = {id(p) for p in model.parameters()}
    for name, stage in stages:
        assert {id(p) for p in stage.parameters()} <= model_ids, f"stage {name} has foreign params"


@pytest.mark.parametrize(
    ("arch", "n_body", "classifier"),
    [("test_resnet", 5, "fc"), ("test_efficientnet", 6, "classifier"), ("test_vit", 7, "head")],
)
def test_timm_build_stages_partition_parameters_and_end_in_a_fresh_head(
    arch: str, n_body: int, classifier: str
) -> None:
    backbone = provider_for(zoo.parse_ref(f"timm:{arch}")).build(
        zoo.parse_ref(f"timm:{arch}"), num_classes=5, pretrained=False
    )
    assert isinstance(backbone, zoo.Backbone)
    stages = list(backbone.stages())
    names = [n for n, _ in stages]
    assert names[0] == "stem" and names[-1] == "head"
    assert len(stages) == n_body + 1, names
    _assert_partition(backbone.model, stages)
    head_params = {id(p) for p in backbone.head.parameters()}
    assert head_params == {id(p) for p in backbone.model.get_submodule(classifier).parameters()}
    assert backbone.model.get_submodule(classifier).out_features == 5
    assert backbone.info.num_classes == 5 and backbone.info.pretrained is False
    assert backbone.weights_sha256 is None
    size = backbone.model.pretrained_cfg["input_size"][1:]
    backbone.model.eval()
    with torch.no_grad():
        out = backbone.model(torch.randn(1, 3, *size))
        feats = backbone.forward_features(torch.randn(1, 3, *size))
    assert out.shape == (1, 5)
    assert feats.shape == (1, backbone.info.feature_dim)


def test_timm_vit_loose_parameters_and_final_norm_go_to_the_right_stages() -> None:
    ref = zoo.parse_ref("timm:test_vit")
    backbone = provider_for(ref).build(ref, num_classes=3, pretrained=False)
    stages = dict(backbone.stages())
    model = backbone.model
    stem_ids = {id(p) for p in stages["stem"].parameters()}
    assert id(model.cls_token) in stem_ids and id(model.pos_embed) in stem_ids
    last_body = list(backbone.stages())[-2][1]
    assert {id(p) for p in model.norm.parameters()} <= {id(p) for p in last_body.parameters()}


def test_freezing_a_stage_freezes_the_models_own_parameters_and_norms() -> None:
    ref = zoo.parse_ref("timm:test_resnet")
    backbone = provider_for(ref).build(ref, num_classes=4, pretrained=False)
    stem = backbone.stages()[0][1]
    stem.requires_grad_(False)
    backbone.model.train()
    stem.eval()
    assert not any(p.requires_grad for p in backbone.model.conv1.parameters())
    assert all(p.requires_grad for p in backbone.model.layer1.parameters())
    assert not backbone.model.bn1.training and backbone.model.layer1.training


@pytest.mark.parametrize(
    ("arch", "first_blocks", "head_path"),
    [
        ("resnet18", ["layer1", "layer2"], "fc"),
        ("efficientnet_b0", ["features.1", "features.2"], "classifier.1"),
        ("vit_b_16", ["encoder_layer_0", "encoder_layer_1"], "heads.head"),
        ("convnext_tiny", ["features.1", "features.2"], "classifier.2"),
        ("densenet121", ["denseblock1", "transition1"], "classifier"),
        ("squeezenet1_0", ["features.3", "features.4"], "classifier.1"),
    ],
)
def test_torchvision_stages_partition_parameters_on_the_meta_device(
    arch: str, first_blocks: list[str], head_path: str
) -> None:
    from torchvision import models

    from zoo_torchvision.stages import torchvision_stages

    with torch.device("meta"):
        model = models.get_model(arch, weights=None)
    stages = torchvision_stages(model)
    names = [n for n, _ in stages]
    assert names[0] == "stem" and names[-1] == "head"
    assert names[1:3] == first_blocks
    _assert_partition(model, stages)
    head = {id(p) for p in stages[-1][1].parameters()}
    assert head == {id(p) for p in model.get_submodule(head_path).parameters()}


def test_torchvision_build_without_weights_has_a_head_of_num_classes() -> None:
    ref = zoo.parse_ref("torchvision:resnet18")
    backbone = provider_for(ref).build(ref, num_classes=7, pretrained=False)
    _assert_partition(backbone.model, list(backbone.stages()))
    assert backbone.model.fc.out_features == 7
    assert [n for n, _ in backbone.stages()] == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "head",
    ]
    with torch.no_grad():
        assert backbone.model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_stages_from_assignment_rejects_an_unknown_stage() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with pytest.raises(zoo.ZooError, match="unknown stage"):
        zoo.stages_from_assignment(model, lambda n: "nowhere", ["a", "head"])


def test_check_partition_names_a_parameter_in_no_stage() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    with pytest.raises(zoo.ZooError, match="in no stage"):
        zoo.check_partition(model, [("head", model[1])])
