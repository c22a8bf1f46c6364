"""The reference grammar: every documented form parses; every bad one says what to write."""

from __future__ import annotations

import pytest

from zoo.contract.errors import BadReferenceError
from zoo.contract.refs import Ref, join_refs, parse_ref, parse_refs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timm:resnet50.a1_in1k", Ref("timm", "resnet50.a1_in1k")),
        ("timm:resnet50", Ref("timm", "resnet50")),
        ("timm:resnet50.a1_in1k@abc123", Ref("timm", "resnet50.a1_in1k", revision="abc123")),
        ("torchvision:resnet50.IMAGENET1K_V2", Ref("torchvision", "resnet50.IMAGENET1K_V2")),
        ("torchvision:efficientnet_b0", Ref("torchvision", "efficientnet_b0")),
        ("hf:timm/resnet50.a1_in1k", Ref("hf", "timm/resnet50.a1_in1k")),
        (
            "hf:timm/resnet50.a1_in1k@0123abcd",
            Ref("hf", "timm/resnet50.a1_in1k", revision="0123abcd"),
        ),
        (
            "hf:google/vit-base-patch16-224@main",
            Ref("hf", "google/vit-base-patch16-224", revision="main"),
        ),
        ("local:lite0", Ref("local", "lite0")),
        ("models:/pets/3", Ref("models", "pets", version="3")),
        ("models:/pets/latest", Ref("models", "pets", version="latest")),
        ("models:/pets@champion", Ref("models", "pets", alias="champion")),
        ("pets-classifier", Ref("bare", "pets-classifier")),
        ("example:tiny.v1", Ref("example", "tiny.v1")),
    ],
)
def test_documented_forms_parse_and_round_trip(text: str, expected: Ref) -> None:
    ref = parse_ref(text)
    assert ref == expected
    assert str(ref) == text


def test_timm_and_torchvision_split_arch_and_tag_but_hf_keeps_the_repo_whole() -> None:
    assert parse_ref("timm:resnet50.a1_in1k").arch == "resnet50"
    assert parse_ref("timm:resnet50.a1_in1k").tag == "a1_in1k"
    assert parse_ref("torchvision:resnet50.IMAGENET1K_V2").tag == "IMAGENET1K_V2"
    hf = parse_ref("hf:timm/resnet50.a1_in1k")
    assert hf.arch == "timm/resnet50.a1_in1k"
    assert hf.tag is None


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "timm:ARCH"),
        ("timm:", "nothing follows"),
        ("hf:a/b/c", "hf:ORG/REPO"),
        ("torchvision:resnet50@v1", "torchvision:ARCH[.WEIGHTS]"),
        ("local:a/b", "local:NAME"),
        ("models:pets/1", "models:/NAME/VERSION"),
        ("models:/pets", "models:/NAME/VERSION"),
        ("models:/pets/one", "models:/NAME/VERSION"),
        ("models:/pets@", "models:/NAME@ALIAS"),
        ("org/repo", "no provider prefix"),
        ("timm:resnet50@", "NAME@REVISION"),
    ],
)
def test_bad_references_name_the_form_to_use(text: str, hint: str) -> None:
    with pytest.raises(BadReferenceError) as err:
        parse_ref(text)
    message = str(err.value)
    assert hint in message
    assert "\n" not in message


def test_revision_option_and_at_revision_must_agree() -> None:
    ref = parse_ref("hf:org/repo@abc")
    assert ref.with_revision("abc").revision == "abc"
    assert parse_ref("hf:org/repo").with_revision("def").revision == "def"
    with pytest.raises(BadReferenceError, match="give only one"):
        ref.with_revision("def")


def test_a_comma_joins_references_in_order() -> None:
    refs = parse_refs("timm:resnet18, local:lite0,hf:org/repo@abc")
    assert refs == (
        Ref("timm", "resnet18"),
        Ref("local", "lite0"),
        Ref("hf", "org/repo", revision="abc"),
    )
    assert join_refs(refs) == "timm:resnet18,local:lite0,hf:org/repo@abc"
    assert parse_refs("timm:resnet18") == (Ref("timm", "resnet18"),)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("timm:resnet18,,timm:resnet34", "part 2 of 'timm:resnet18,,timm:resnet34' is empty"),
        ("timm:resnet18,", "part 2 of 'timm:resnet18,' is empty"),
        ("timm:resnet18,hf:a/b/c", "part 2 of 'timm:resnet18,hf:a/b/c': bad model reference"),
        ("timm:resnet18,models:/pets/1", "part 2 of 'timm:resnet18,models:/pets/1'"),
        ("timm:resnet18,pets", "cannot be joined"),
        ("timm:resnet18,timm:resnet18", "given twice"),
    ],
)
def test_a_bad_part_of_a_joined_reference_is_named(text: str, hint: str) -> None:
    with pytest.raises(BadReferenceError) as err:
        parse_refs(text)
    assert hint in str(err.value)
    assert "\n" not in str(err.value)


def test_one_reference_forms_refuse_a_joined_one() -> None:
    """Where one backbone is meant (pull, import, export ...), a comma says where joining
    is allowed instead of a grammar error about the name."""
    with pytest.raises(BadReferenceError, match="only finetune, rank and info"):
        parse_ref("timm:resnet18,timm:resnet34")
