"""The reference grammar: every documented form parses; every bad one says what to write."""

from __future__ import annotations

import pytest

from zoo.contract import refs
from zoo.contract.errors import BadReferenceError
from zoo.contract.refs import FORMS, NameGrammar, Ref, join_refs, parse_ref, parse_refs


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


# ------------------------------------------------------- edges (issue 24)
# Mutation testing (docs/testing.md) found these left unchecked: the length limits'
# line, a --revision applied in full, and the joined-reference refusal's words.


def test_over_long_references_say_how_long_in_one_line() -> None:
    name = "a" * 201
    for text in (f"timm:{name}", name, f"models:/{name}/1", "timm:" + "b" * 300):
        with pytest.raises(BadReferenceError) as err:
            parse_ref(text)
        assert str(err.value) == (
            f"bad model reference '{text[:40]}...': it is {len(text)} characters long; "
            "names hold at most 200 characters"
        )
    assert parse_ref(f"timm:{'a' * 200}").name == "a" * 200  # at the limit: fine


def test_a_revision_option_gives_the_same_reference_pinned() -> None:
    assert parse_ref("hf:org/repo").with_revision("main") == Ref("hf", "org/repo", "main")
    with pytest.raises(BadReferenceError) as err:
        parse_ref("hf:org/repo@abc").with_revision("def")
    assert str(err.value) == (
        "'hf:org/repo@abc' pins revision abc but --revision says def: give only one of them"
    )


def test_a_registered_model_in_a_joined_reference_says_what_may_be_joined() -> None:
    with pytest.raises(BadReferenceError) as err:
        parse_refs("timm:resnet18,models:/pets/1")
    assert str(err.value) == (
        "part 2 of 'timm:resnet18,models:/pets/1': 'models:/pets/1' may be a registered "
        "model, which cannot be joined; join provider or local references (timm:ARCH, "
        "local:NAME, ...)"
    )


MODELS_FORMS = "models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("models:pets/1", "registered models are written with a slash after 'models:'"),
        ("models:/pets@a@b", "an alias holds letters, digits, '_', '-' only"),
        ("models:/pets@a/b", "an alias holds letters, digits, '_', '-' only"),
        ("models:/pets@a.b", "an alias holds letters, digits, '_', '-' only"),  # as MLflow
        ("models:/pets@a+b", "an alias holds letters, digits, '_', '-' only"),
        ("models:/pets@é", "an alias holds letters, digits, '_', '-' only"),
        ("models:/pe:ts@champion", "the model name is missing or malformed"),
        ("models:/@champion", "the model name is missing or malformed"),
        ("models:/pets", "the version is missing"),
        ("models:/a/b/1", "the model name is missing or malformed"),
        ("models:/pe:ts/1", "the model name is missing or malformed"),
        ("models:/pets/0", "'0' is not a version number or 'latest'"),
        ("models:/pets/2147483648", "version 2147483648 is past the largest (2147483647)"),
    ],
)
def test_a_bad_registered_model_reference_says_why_and_the_forms(text: str, why: str) -> None:
    with pytest.raises(BadReferenceError) as err:
        parse_ref(text)
    assert str(err.value) == f"bad model reference '{text}': {why}; use {MODELS_FORMS}"


FIRST_PARTY = {
    "timm": NameGrammar.tagged(),
    "torchvision": NameGrammar.tagged("ARCH[.WEIGHTS]", dotted_tags=False, revisions=False),
    "hf": NameGrammar.repo(),
    "local": NameGrammar.simple(revisions=False),
}


@pytest.mark.parametrize(
    ("text", "why", "form"),
    [
        ("", "it is empty", FORMS),
        (
            "a,b",
            "',' joins several references, and only finetune, rank and info take joined references",
            "one reference",
        ),
        ("pets@x", "it has no provider prefix", FORMS),
        ("Timm:resnet50", "it has no provider prefix", FORMS),
        ("pets!", "a bare name may hold letters, digits, '_', '-', '.' only", FORMS),
        ("timm:resnet@", "'@' must be followed by a revision", "timm:NAME@REVISION"),
        ("hf:org/repo@-x", "'-x' is not a revision", "hf:NAME@REVISION"),
        # 260 characters: not too long yet, so refused for what it holds
        ("timm:" + "a/b" * 85, "expected an architecture and an optional tag", "timm:ARCH[.TAG]"),
    ],
)
def test_a_bad_reference_says_why_and_what_to_write(text: str, why: str, form: str) -> None:
    with pytest.raises(BadReferenceError) as err:
        parse_ref(text, grammars=FIRST_PARTY)
    assert str(err.value) == f"bad model reference '{text}': {why}; use {form}"


def test_the_length_limits_are_inclusive() -> None:
    assert parse_ref("p" * 200) == Ref("bare", "p" * 200)
    text = "timm:" + "a/b" * 85 + "c"  # 261 characters: too long, whatever it holds
    with pytest.raises(BadReferenceError, match="it is 261 characters long"):
        parse_ref(text, grammars=FIRST_PARTY)


def test_a_tagged_name_splits_at_its_first_dot_and_a_model_defaults_to_latest() -> None:
    assert NameGrammar.tagged().split("vit.augreg.in21k") == ("vit", "augreg.in21k")
    assert str(Ref("models", "pets")) == "models:/pets/latest"


def test_registered_and_bare_references_split_without_asking_a_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    monkeypatch.setattr(refs, "_grammar_source", lambda: asked.append(1) or {})
    for ref in (Ref("models", "pets.v1", version="1"), Ref("bare", "pets.v1")):
        assert (ref.arch, ref.tag) == ("pets.v1", None)
    assert asked == []


def test_a_registered_models_limits_are_inclusive() -> None:
    top = "models:/pets/2147483647"  # ten digits, the largest version a database holds
    assert parse_ref(top) == Ref("models", "pets", version="2147483647")
    assert parse_ref(f"models:/{'p' * 200}/1").name == "p" * 200
    huge = "models:/pets/" + "9" * 30  # the line quotes 20 digits of it
    with pytest.raises(BadReferenceError) as err:
        parse_ref(huge)
    assert f"version {'9' * 20} is past the largest (2147483647)" in str(err.value)
