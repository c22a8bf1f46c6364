"""Properties of the reference grammar (zoo/contract/refs.py, docs/references.md) over the
whole input space: every well-formed reference of every form parses into its parts and
prints back as given; every other text is refused with one BadReferenceError line (exit
code 2), never another exception.

The alphabets are read from the grammar's own patterns (probing each character), and
pinned to what the docstrings say, so a pattern that drifts fails here first.
"""

from __future__ import annotations

import contextlib
import string
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from zoo.contract import refs
from zoo.contract.errors import EXIT_USAGE, BadReferenceError
from zoo.contract.refs import (
    GENERIC,
    JOINER,
    MAX_NAME_LENGTH,
    MAX_VERSION,
    NameGrammar,
    Ref,
    is_joined,
    join_refs,
    parse_ref,
    parse_refs,
)

# Every character worth probing: printable ASCII, control characters (a newline cuts the
# one-line error), non-ASCII letters and Unicode spaces.
PROBE = "".join(map(chr, range(32, 127))) + "\t\n\r\x00\x0b\x0c\x1b\x85\xa0\u2028\u200béßµ€"


def _alphabet(matches, lead: str = "a", tail: str = "") -> str:
    """The characters ``matches`` accepts after ``lead`` (and before ``tail``)."""
    return "".join(c for c in PROBE if matches(lead + c + tail))


SIMPLE = NameGrammar.simple()
TAGGED = NameGrammar.tagged()
ONE_TAG = NameGrammar.tagged("ARCH[.WEIGHTS]", dotted_tags=False, revisions=False)
REPO = NameGrammar.repo()
LOCAL = NameGrammar.simple(revisions=False)
GRAMMARS = (SIMPLE, TAGGED, ONE_TAG, REPO, LOCAL, GENERIC)
each_grammar = pytest.mark.parametrize(
    "grammar", GRAMMARS, ids=["simple", "tagged", "one-tag", "repo", "local", "generic"]
)

FIRST = _alphabet(SIMPLE.pattern.fullmatch, lead="")
NAME = _alphabet(SIMPLE.pattern.fullmatch)
REPO_PART = _alphabet(REPO.pattern.fullmatch, tail="b")
MODEL = _alphabet(refs._MODEL_NAME.fullmatch)
REVISION = _alphabet(refs._REVISION.fullmatch)
ALIAS = _alphabet(refs._ALIAS.fullmatch, lead="")
SCHEME = _alphabet(lambda t: (m := refs._SCHEME.fullmatch(t + ":x")) and m["scheme"] == t)
# in no name, revision or scheme, and not the grammar's own separators (',' '@' '/' ':')
FORBIDDEN = "".join(
    c for c in PROBE if c not in NAME + MODEL + REVISION + SCHEME + REPO_PART + ",@/:"
)


def test_the_alphabets_are_the_documented_ones() -> None:
    letters_digits = string.ascii_letters + string.digits
    assert sorted(FIRST) == sorted(letters_digits)
    assert sorted(NAME) == sorted(letters_digits + "_.+-")  # NameGrammar.simple's docstring
    assert sorted(REPO_PART) == sorted(letters_digits + "_.-/")  # [ORG/]REPO
    assert sorted(MODEL) == sorted(NAME + " ")  # registered model names may hold spaces
    assert sorted(REVISION) == sorted(letters_digits + "_./-")
    assert sorted(ALIAS) == sorted(letters_digits + "_-")  # as MLflow's alias names
    assert sorted(SCHEME) == sorted(string.ascii_lowercase + string.digits + "_-")
    assert {"\n", "\t", "é", "#", "\xa0"} <= set(FORBIDDEN)


def _word(first: str, rest: str, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=max_size))


schemes = _word(string.ascii_lowercase, SCHEME, 8).filter(lambda s: s != "models")
# names of one to three dot-separated words (ARCH, ARCH.TAG, ARCH.TAG.MORE), or any word
dotted = st.lists(_word(FIRST, NAME, 6), min_size=1, max_size=3).map(".".join) | _word(FIRST, NAME)
revisions = _word(FIRST, REVISION)
model_names = _word(FIRST, MODEL).map(str.rstrip)  # a name ending in spaces is stripped
aliases = st.text(ALIAS, min_size=1, max_size=12)
versions = st.one_of(st.just("latest"), st.integers(1, MAX_VERSION).map(str))
grammars = st.sampled_from(GRAMMARS)


@st.composite
def names_of(draw: st.DrawFn, grammar: NameGrammar) -> str:
    """A name ``grammar`` accepts: made of its characters, kept when its pattern says so."""
    org = ""
    if grammar in (REPO, GENERIC) and draw(st.booleans()):
        org = draw(_word(FIRST, NAME.replace("+", ""), 6)) + "/"
    name = org + draw(dotted)
    assume(grammar.pattern.fullmatch(name))
    return name


@st.composite
def provider_refs(
    draw: st.DrawFn, grammar: NameGrammar | None = None
) -> tuple[str, NameGrammar, str, str | None]:
    grammar = grammar or draw(grammars)
    revision = draw(st.none() | revisions) if grammar.revisions else None
    return draw(schemes), grammar, draw(names_of(grammar)), revision


@contextlib.contextmanager
def _registered(grammars: Mapping[str, NameGrammar]) -> Iterator[None]:
    """parse_refs (which takes no grammars) sees ``grammars`` as the registered ones."""
    saved = refs._grammar_source
    refs.answer_grammars(lambda: grammars)
    try:
        yield
    finally:
        refs.answer_grammars(saved)


def _text(scheme: str, name: str, revision: str | None) -> str:
    return f"{scheme}:{name}" + (f"@{revision}" if revision else "")


@each_grammar
@given(st.data(), st.sampled_from(["", " ", "\t", "\n "]))
def test_a_well_formed_provider_reference_round_trips(
    grammar: NameGrammar, data: st.DataObject, pad: str
) -> None:
    scheme, grammar, name, revision = data.draw(provider_refs(grammar), label="reference")
    text = _text(scheme, name, revision)
    ref = parse_ref(pad + text + pad, grammars={scheme: grammar})
    assert (ref.scheme, ref.name, ref.revision) == (scheme, name, revision)
    assert str(ref) == text  # the canonical form: the text without surrounding blanks
    assert parse_ref(str(ref), grammars={scheme: grammar}) == ref  # idempotent
    if grammar.split_tag and "." in name:
        assert "." not in ref.arch and f"{ref.arch}.{ref.tag}" == name
    else:
        assert (ref.arch, ref.tag) == (name, None)


@given(
    schemes,
    st.sampled_from([ONE_TAG, LOCAL]).flatmap(lambda g: st.tuples(st.just(g), names_of(g))),
    revisions,
)
def test_a_revision_where_the_grammar_has_none_is_refused_naming_the_form(
    scheme: str, grammar_name: tuple[NameGrammar, str], revision: str
) -> None:
    grammar, name = grammar_name
    text = _text(scheme, name, revision)
    try:
        parse_ref(text, grammars={scheme: grammar})
    except BadReferenceError as exc:
        assert str(exc) == (
            f"bad model reference '{text}': {scheme} names have no revisions; "
            f"use {scheme}:{grammar.form}"
        )
    else:
        raise AssertionError(f"{text} parsed though {scheme} names have no revisions")


@given(schemes, grammars, st.text(NAME + "/+ #é", min_size=1, max_size=16))
def test_a_name_outside_its_grammar_is_refused_with_the_grammars_own_line(
    scheme: str, grammar: NameGrammar, name: str
) -> None:
    assume(not grammar.pattern.fullmatch(name) and name.strip() == name)
    text = f"{scheme}:{name}"
    try:
        parse_ref(text, grammars={scheme: grammar})
    except BadReferenceError as exc:
        assert str(exc) == (
            f"bad model reference '{text}': {grammar.refusal}; use {scheme}:{grammar.form}"
        )
    else:
        raise AssertionError(f"{text} parsed though its grammar refuses {name!r}")


@each_grammar
@given(dotted | st.text(NAME + "/@ #\n", max_size=16) | st.text(PROBE, max_size=16))
def test_the_common_shapes_accept_what_their_docstrings_say(
    grammar: NameGrammar, name: str
) -> None:
    accepted = grammar.refuse("x", name) is None
    assert accepted == bool(grammar.pattern.fullmatch(name))
    if not accepted:
        return
    assert name[0] in FIRST and "@" not in name and JOINER not in name
    assert set(name) <= set(NAME + "/")
    assert name.count("/") <= (0 if grammar in (SIMPLE, LOCAL, TAGGED, ONE_TAG) else 1)
    if grammar is REPO:
        assert "+" not in name
    if grammar.split_tag:
        assert not name.endswith(".")
    if grammar is ONE_TAG:
        assert name.count(".") <= 1


@given(model_names, versions, aliases, st.booleans())
def test_registered_and_bare_references_round_trip(
    name: str, version: str, alias: str, use_alias: bool
) -> None:
    text = f"models:/{name}@{alias}" if use_alias else f"models:/{name}/{version}"
    ref = parse_ref(text)
    expected = (
        Ref("models", name, alias=alias) if use_alias else Ref("models", name, version=version)
    )
    assert ref == expected and ref.is_registered
    assert str(ref) == text and parse_ref(str(ref)) == ref
    bare = parse_ref(name)
    assert bare == Ref("bare", name) and str(bare) == name


@given(
    st.integers(-2, 2).map(MAX_VERSION.__add__) | st.integers(0, 2 * MAX_VERSION + 1), model_names
)
def test_a_version_is_accepted_exactly_from_1_to_the_largest(version: int, name: str) -> None:
    text = f"models:/{name}/{version}"
    try:
        ref = parse_ref(text)
    except BadReferenceError as exc:
        assert version == 0 or version > MAX_VERSION, str(exc)
    else:
        assert 1 <= version <= MAX_VERSION and ref.version == str(version)


@given(
    st.integers(-2, 2).map(MAX_NAME_LENGTH.__add__) | st.integers(1, MAX_NAME_LENGTH + 80),
    st.sampled_from(["timm:", "models:/", ""]),
)
def test_a_name_is_accepted_exactly_up_to_the_longest(length: int, prefix: str) -> None:
    name = "a" * length
    text = f"{prefix}{name}/1" if prefix == "models:/" else f"{prefix}{name}"
    try:
        ref = parse_ref(text)
    except BadReferenceError as exc:
        assert length > MAX_NAME_LENGTH
        assert f"names hold at most {MAX_NAME_LENGTH} characters" in str(exc)
    else:
        assert length <= MAX_NAME_LENGTH and ref.name == name


@st.composite
def forms_with_a_component(draw: st.DrawFn) -> tuple[str, str, str]:
    """(before, component, after): a well-formed reference split around one of its parts."""
    scheme, grammar = draw(schemes), draw(st.sampled_from([SIMPLE, TAGGED, REPO, GENERIC]))
    name, revision = draw(names_of(grammar)), draw(revisions)
    model, alias = draw(model_names), draw(aliases)
    return draw(
        st.sampled_from(
            [
                ("", scheme, f":{name}@{revision}"),
                (f"{scheme}:", name, f"@{revision}"),
                (f"{scheme}:{name}@", revision, ""),
                ("", model, ""),
                ("models:/", model, f"/{draw(versions)}"),
                ("models:/", model, f"@{alias}"),
                (f"models:/{model}@", alias, ""),
            ]
        )
    )


@given(forms_with_a_component(), st.data())
def test_a_forbidden_character_in_any_part_is_refused(parts, data: st.DataObject) -> None:
    """Every character outside every alphabet (a newline, a tab, '#', 'é', ...) inserted
    anywhere in any part of any form is refused; only blanks at either end are trimmed."""
    before, component, after = parts
    at = data.draw(st.integers(0, len(component)), label="at")
    for c in FORBIDDEN:
        text = before + component[:at] + c + component[at:] + after
        if c.isspace() and text.strip() != text:
            continue  # surrounding blanks are trimmed, not refused
        try:
            ref = parse_ref(text)
        except BadReferenceError as exc:
            assert exc.exit_code == EXIT_USAGE
            assert str(exc).startswith("bad model reference '")
        else:
            raise AssertionError(f"{text!r} parsed into {ref!r}")


@given(st.text(PROBE, max_size=40) | st.text(max_size=40))
def test_any_text_parses_or_is_refused_in_one_line_and_nothing_else(text: str) -> None:
    for parse in (parse_ref, parse_refs):
        try:
            parsed = parse(text)
        except BadReferenceError as exc:
            message = str(exc)
            assert exc.exit_code == EXIT_USAGE
            assert message.startswith(("bad model reference '", "bad joined reference", "part "))
            if "\n" not in text:
                assert "\n" not in message
            continue
        again = (parsed,) if isinstance(parsed, Ref) else parsed
        assert parse_refs(join_refs(again)) == again  # what parses, prints and parses back
        assert all(JOINER not in str(r) for r in again)


@given(st.lists(provider_refs(), min_size=1, max_size=5), st.sampled_from([",", ", ", " ,\t"]))
def test_a_joined_list_parses_into_its_parts_in_order(parts, joiner: str) -> None:
    grammars = {}
    refs_given = []
    for scheme, grammar, name, revision in parts:
        grammars.setdefault(scheme, grammar)
        text = _text(scheme, name, revision if grammars[scheme].revisions else None)
        assume(grammars[scheme].pattern.fullmatch(name))
        refs_given.append(parse_ref(text, grammars=grammars))
    texts = [str(r) for r in refs_given]
    assume(len(set(texts)) == len(texts))
    joined = joiner.join(texts)
    assert is_joined(joined) == (len(texts) > 1)
    with _registered(grammars):
        assert parse_refs(joined) == tuple(refs_given)
        assert join_refs(parse_refs(joined)) == JOINER.join(texts)
        if len(texts) > 1:
            try:
                parse_ref(joined)
            except BadReferenceError as exc:
                assert "only finetune, rank and info take joined references" in str(exc)
            else:
                raise AssertionError(f"parse_ref took the joined {joined!r}")


@given(
    st.lists(provider_refs(), min_size=2, max_size=4),
    st.data(),
    st.sampled_from(["empty", "twice", "registered"]),
)
def test_a_bad_part_of_a_joined_list_is_named_by_its_position(
    parts, data: st.DataObject, fault: str
) -> None:
    texts = list(dict.fromkeys(_text(s, n, r) for s, _, n, r in parts))
    at = data.draw(st.integers(1, len(texts)), label="at")  # the bad part's number
    bad = {"empty": "", "twice": texts[0], "registered": "models:/pets/1"}[fault]
    if fault == "twice":
        at = max(at, 2)
    texts.insert(at - 1, bad)
    joined = JOINER.join(texts)
    try:
        with _registered({}):  # the generic grammar: every name drawn above is in it
            parse_refs(joined)
    except BadReferenceError as exc:
        message = str(exc)
        expected = {
            "empty": f"part {at} of '{joined}' is empty",
            "twice": f"part {at} of '{joined}': '{bad}' is given twice",
            "registered": f"part {at} of '{joined}': '{bad}' may be a registered model",
        }[fault]
        assert expected in message and "\n" not in message
    else:
        raise AssertionError(f"{joined!r} parsed")
