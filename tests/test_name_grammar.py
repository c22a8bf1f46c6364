"""Providers own their name grammar: a declared ``grammar`` (zoo.NameGrammar) is checked
at registration, applied by parse_ref and at resolution, and splits ARCH[.TAG]."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import zoo
from zoo.contract import refs
from zoo.contract.checks import check_registration
from zoo.contract.errors import BadReferenceError, PluginError
from zoo.contract.plugins import PluginManager
from zoo.contract.refs import FORMS, GENERIC, NameGrammar, Ref, forms, parse_ref

FIRST_PARTY = {
    "timm": NameGrammar.tagged(),
    "torchvision": NameGrammar.tagged("ARCH[.WEIGHTS]", dotted_tags=False, revisions=False),
    "hf": NameGrammar.repo(),
    "local": NameGrammar.simple(revisions=False),
}


def test_the_common_shapes_split_and_refuse_as_declared() -> None:
    tagged, simple, repo = NameGrammar.tagged(), NameGrammar.simple(), NameGrammar.repo()
    assert tagged.split("resnet50.a1_in1k") == ("resnet50", "a1_in1k")
    assert tagged.split("resnet50") == ("resnet50", None)
    assert simple.split("lite0.v2") == ("lite0.v2", None)
    assert repo.split("timm/resnet50.a1_in1k") == ("timm/resnet50.a1_in1k", None)
    assert tagged.refuse("x", "resnet50.") == "expected an architecture and an optional tag"
    assert simple.refuse("x", "a/b") is not None and repo.refuse("x", "a/b") is None
    assert repo.refuse("x", "a/b/c") == "a Hub repo id is ORG/REPO"
    once = NameGrammar.tagged(dotted_tags=False)
    assert once.refuse("x", "a.b") is None and once.refuse("x", "a.b.c") is not None
    no_rev = NameGrammar.simple(revisions=False)
    assert no_rev.refuse("foo", "a", "v1") == "foo names have no revisions"
    assert no_rev.refuse("foo", "a") is None


def test_parse_ref_applies_the_given_grammars_and_names_their_form() -> None:
    grammars = {"foo": NameGrammar.tagged("ARCH[.TAG]", revisions=False)}
    ref = parse_ref("foo:net.v1", grammars=grammars)
    assert (ref.arch, ref.tag, ref.grammar) == ("net", "v1", grammars["foo"])
    with pytest.raises(BadReferenceError) as err:
        parse_ref("foo:net@v1", grammars=grammars)
    assert str(err.value) == (
        "bad model reference 'foo:net@v1': foo names have no revisions; use foo:ARCH[.TAG]"
    )
    # a scheme that declares nothing: the generic grammar, and every form is offered
    assert parse_ref("bar:org/repo@v1", grammars=grammars).arch == "org/repo"
    with pytest.raises(BadReferenceError, match="no provider accepts; use foo:ARCH"):
        parse_ref("bar:a/b/c", grammars=grammars)


def test_the_forms_offered_are_the_registered_grammars_first_party_first() -> None:
    assert forms(FIRST_PARTY) == FORMS  # today's line when zoo's own are registered
    extra = forms({**FIRST_PARTY, "effnet-lite": NameGrammar.simple()})
    assert extra == FORMS.replace("local:NAME, ", "local:NAME, effnet-lite:NAME, ")
    assert forms({}).startswith("models:/NAME/VERSION")


def test_a_ref_carries_its_grammar_outside_its_identity() -> None:
    grammars = {"foo": NameGrammar.tagged()}
    ref = parse_ref("foo:net.v1@abc", grammars=grammars)
    assert ref == Ref("foo", "net.v1", revision="abc") and hash(ref) == hash(
        Ref("foo", "net.v1", "abc")
    )
    assert repr(ref) == repr(Ref("foo", "net.v1", revision="abc"))
    assert pickle.loads(pickle.dumps(ref)).tag == "v1"
    assert ref.with_revision("abc").arch == "net"


def test_models_and_bare_references_ask_no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def source() -> dict[str, NameGrammar]:
        asked.append(1)
        return {}

    monkeypatch.setattr(refs, "_grammar_source", source)
    parse_ref("models:/pets/3")
    parse_ref("pets")
    assert asked == []
    parse_ref("timm:resnet50")
    assert asked == [1]


class _Provider:
    name = "foo"

    def version(self) -> str:
        return "1"

    def index(self) -> list[Any]:
        return []

    def describe(self, ref: Any) -> Any:
        raise zoo.UnknownModelError(str(ref))

    def pull(self, ref: Any, **kwargs: Any) -> Any:
        raise zoo.NotFoundError(str(ref))

    def build(self, ref: Any, **kwargs: Any) -> Any:
        raise zoo.NotFoundError(str(ref))


@pytest.mark.parametrize(
    ("grammar", "why"),
    [
        ("ARCH[.TAG]", "is not a zoo.NameGrammar"),
        (NameGrammar("foo:NAME", GENERIC.pattern, "bad"), "form is what follows 'SCHEME:'"),
        (NameGrammar("NAME", "^a$", "bad"), "with a compiled `pattern`"),  # type: ignore[arg-type]
        (NameGrammar("NAME", GENERIC.pattern, ""), "one-line strings"),
        (NameGrammar("NAME", GENERIC.pattern, "x", no_revisions="{rev}"), "but {scheme}"),
    ],
)
def test_a_provider_with_a_broken_grammar_is_refused_in_one_line(grammar: Any, why: str) -> None:
    provider = _Provider()
    provider.grammar = grammar  # type: ignore[attr-defined]
    with pytest.raises(PluginError) as err:
        check_registration("provider", "mine", provider)
    message = str(err.value)
    assert message.startswith("plugin 'mine' registered provider 'foo' whose optional `grammar`")
    assert why in message and "(docs/plugins/register_providers.md)" in message
    assert "\n" not in message


def test_a_provider_without_a_grammar_still_registers_with_the_generic_one() -> None:
    """Plugins written before grammars keep working: their names parse as before."""

    class Plugin:
        @zoo.hookimpl
        def register_providers(self, register: Any) -> None:
            register(_Provider())

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "old")
    assert "foo" in pm.providers() and pm.grammars() == {}
    assert parse_ref("foo:org/repo.v1@main", grammars=pm.grammars()).arch == "org/repo.v1"


def test_a_plugin_parsing_while_it_registers_gets_the_shared_grammar() -> None:
    """No loop: parse_ref inside a registration hook does not load the plugins again."""
    seen: list[Ref] = []

    class Plugin:
        @zoo.hookimpl
        def register_providers(self, register: Any) -> None:
            seen.append(zoo.parse_ref("timm:resnet50.a1_in1k"))
            provider = _Provider()
            provider.grammar = NameGrammar.tagged()  # type: ignore[attr-defined]
            register(provider)

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "parser")
    assert pm.plugins["parser"].ok and set(pm.grammars()) == {"foo"}
    assert seen and seen[0].grammar is None


def test_resolution_holds_a_ref_made_in_code_to_its_providers_grammar() -> None:
    from zoo.catalog.index import provider_for

    with pytest.raises(BadReferenceError) as err:
        provider_for(Ref("local", "a/b"))
    assert str(err.value) == (
        "bad model reference 'local:a/b': a local name holds letters, digits, '_', '-', '.' "
        "only; use local:NAME"
    )
    # the revision is the provider's to refuse (--revision is applied after parsing)
    assert provider_for(Ref("torchvision", "resnet18", revision="v1")).name == "torchvision"


def test_first_party_providers_declare_their_grammars() -> None:
    from zoo.contract.plugins import get_plugin_manager

    grammars = get_plugin_manager().grammars()
    for scheme, grammar in FIRST_PARTY.items():
        assert grammars[scheme].form == grammar.form
        assert (grammars[scheme].split_tag, grammars[scheme].revisions) == (
            grammar.split_tag,
            grammar.revisions,
        )
    assert Ref("timm", "resnet50.a1_in1k").tag == "a1_in1k"  # looked up: made in code
    assert Ref("hf", "timm/resnet50.a1_in1k").tag is None


# ------------------------------------------------ the shapes' defaults (issue 24)
# Mutation testing (docs/testing.md) found the common shapes' default forms, refusals and
# revisions (docs/plugins/register_providers.md's table), and where grammars come from,
# unchecked.


def test_the_common_shapes_default_to_their_documented_forms() -> None:
    no_rev = "{scheme} names have no revisions"
    assert NameGrammar.simple() == NameGrammar(
        "NAME", refs._SIMPLE_NAME, "a name holds letters, digits, '_', '-', '.' only", False,
        True, no_rev,
    )  # fmt: skip
    assert NameGrammar.tagged() == NameGrammar(
        "ARCH[.TAG]", refs._TAGGED_NAME, "expected an architecture and an optional tag", True,
        True, no_rev,
    )  # fmt: skip
    assert NameGrammar.repo() == NameGrammar(
        "ORG/REPO[@REVISION]", refs._HF_REPO, "a Hub repo id is ORG/REPO", False, True, no_rev
    )
    # what a provider passes is what it gets
    said = {"revisions": False, "refusal": "r", "no_revisions": "{scheme}: none"}
    for shape in (NameGrammar.simple, NameGrammar.tagged, NameGrammar.repo):
        grammar = shape("F", **said)
        assert (grammar.form, grammar.refusal, grammar.revisions) == ("F", "r", False)
        assert grammar.refuse("s", "a", "v1") == "s: none"


def test_the_registered_grammars_come_from_the_source_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(refs, "_grammar_source", refs._grammar_source)  # put back after
    shapes = {"shapes": NameGrammar.simple("SHAPE")}
    refs.answer_grammars(lambda: shapes)
    assert refs.registered_grammars() == shapes
    assert forms() == forms(shapes) == f"shapes:SHAPE, {refs._MODELS_FORMS}"
    with refs.grammars_unasked():
        assert refs.registered_grammars() is None and forms() == FORMS
    refs.answer_grammars(None)
    assert refs.registered_grammars() is None and forms() == FORMS
