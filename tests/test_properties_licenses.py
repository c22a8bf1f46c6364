"""Properties of licence ids (zoo/licenses/ids.py) and of the compatibility decision
(zoo/licenses/compat.py, docs/licenses.md) over every id zoo knows and any text.

Ids: every known id is its own normal form, case and spacing do not change an id,
normalising twice changes nothing, nothing zoo cannot name is ever permissive, and a user's
id is an id or one UsageError line (exit 2). The decision: the table's rows hold for every
id of every kind, it is a function of the two normalised ids alone, and along a chain a
licence passes exactly when every ancestor allows it (the nearest refusal named).
"""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.contract.errors import EXIT_LICENSE, EXIT_USAGE, LicenseError, UsageError
from zoo.licenses.compat import (
    COMPATIBILITY,
    Ancestor,
    check_compatible,
    decide_license,
    decide_licenses,
    is_compatible,
)
from zoo.licenses.ids import (
    _ALIASES,
    CUSTOM_PREFIX,
    KNOWN_CUSTOM,
    PERMISSIVE,
    UNKNOWN,
    _spdx,
    license_kind,
    normalize_license,
    parse_license,
)

KNOWN = sorted({*_spdx(), *PERMISSIVE, *KNOWN_CUSTOM, UNKNOWN})
BY_KIND: dict[str, list[str]] = {}
for _id in KNOWN:
    BY_KIND.setdefault(license_kind(_id), []).append(_id)


def ids_of(*kinds: str) -> st.SearchStrategy[str]:
    """Ids of the given kinds, each kind as likely as the others."""
    return st.sampled_from(sorted(kinds)).flatmap(lambda kind: st.sampled_from(BY_KIND[kind]))


known_ids = ids_of(*COMPATIBILITY)
# a few ids of each kind (and two permissive ones): chains drawn from them often agree
FEW = sorted({ids[len(ids) // 2] for ids in BY_KIND.values()} | {"mit", "apache-2.0"})
few_ids = st.sampled_from(FEW)
alias_keys = st.sampled_from(sorted(k for k in _ALIASES if k))
blanks = st.text(" \t\n", max_size=2)
# texts made of the pieces normalisation looks for: its prefixes, the words of its aliases
# and of licence names ("Apache License, Version 2.0"), separators
PIECES = sorted(
    {CUSTOM_PREFIX, "http://", "https://", "license", "licence", "the", "version", "x"}
    | {word for key in _ALIASES for word in key.replace("-", " ").split()}
    | {" ", "-", ",", "\t", "/", "."}
)
pieces = st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join)
prefixes = st.lists(
    st.sampled_from([CUSTOM_PREFIX, "CUSTOM: ", "http://", "https://"]), min_size=1, max_size=3
).map("".join)
texts = st.text(max_size=30) | st.text(
    string.ascii_letters + string.digits + " -.,:/+", max_size=30
)


@st.composite
def variants(draw: st.DrawFn, ids: st.SearchStrategy[str], spacing: bool = True) -> tuple:
    """(an id or alias, the same written with other case, dashes as spaces, blanks around)."""
    key = draw(ids)
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in key)
    if spacing:
        cased = "".join(" " if c == "-" and draw(st.booleans()) else c for c in cased)
    return key, draw(blanks) + cased + draw(blanks)


# compat.py's docstring and docs/licenses.md: ancestor kind -> which licences it allows
DOCUMENTED = {
    "permissive": "any",
    "non-commercial": "same",
    "share-alike": "same",
    "no-derivatives": "none",
    "custom": "same",
    "unknown": "same",
}
SAME = [kind for kind, rule in DOCUMENTED.items() if rule == "same"]


def test_the_table_is_the_documented_one_and_every_kind_is_drawn() -> None:
    assert COMPATIBILITY == DOCUMENTED
    assert set(BY_KIND) == set(DOCUMENTED)


@given(known_ids)
def test_a_known_id_is_its_own_normal_form_and_a_user_may_declare_it(license_id: str) -> None:
    assert normalize_license(license_id) == license_id
    assert parse_license(license_id) == license_id


@given(variants(known_ids | alias_keys))
def test_case_and_spacing_variants_normalise_to_the_same_id(key_variant) -> None:
    key, variant = key_variant
    assert normalize_license(variant) == normalize_license(key)
    assert license_kind(variant) == license_kind(key)


@given(variants(known_ids | alias_keys, spacing=False))
def test_a_user_may_declare_a_known_id_in_any_case(key_variant) -> None:
    key, variant = key_variant
    assert parse_license(variant) == normalize_license(key)


@settings(max_examples=300)  # pure and fast: the pieces' combinations are many
@given(
    texts
    | pieces
    | variants(known_ids | alias_keys).map(lambda kv: kv[1])
    | st.builds(str.__add__, prefixes, pieces | texts)
)
def test_normalising_is_idempotent_and_the_kind_follows_the_normal_form(text: str) -> None:
    once = normalize_license(text)
    assert normalize_license(once) == once
    assert license_kind(text) == license_kind(once)
    assert once == once.lower() and once == once.strip()


@given(texts | known_ids)
def test_nothing_zoo_cannot_name_is_permissive(text: str) -> None:
    if license_kind(text) == "permissive":
        lid = normalize_license(text)
        category = _spdx().get(lid, ("", "not an SPDX id"))[1]
        assert lid in PERMISSIVE or category in {"Permissive", "Public Domain"}, (text, lid)


@given(texts | known_ids | st.builds(str.__add__, st.just(CUSTOM_PREFIX), texts))
def test_a_declared_licence_is_an_id_or_one_usage_error_line(text: str) -> None:
    try:
        declared = parse_license(text)
    except UsageError as exc:
        assert exc.exit_code == EXIT_USAGE and not isinstance(exc, LicenseError)
        assert "\n" in text or "\n" not in str(exc)
        return
    assert normalize_license(declared) == declared  # stored as it reads back
    if text.strip().lower().startswith(CUSTOM_PREFIX):
        assert license_kind(declared) != "permissive"  # custom licences are restrictive
        assert declared != UNKNOWN and declared not in PERMISSIVE and declared not in _spdx()
    else:
        assert declared in KNOWN and parse_license(declared) == declared


# ------------------------------------------------------------------- the decision


@given(ids_of("permissive"), known_ids | texts)
def test_a_permissive_parent_allows_any_licence(parent: str, derivative: str) -> None:
    assert is_compatible(parent, derivative)
    check_compatible(parent, derivative)


@given(ids_of("no-derivatives"), known_ids | texts)
def test_a_no_derivatives_parent_allows_nothing_not_even_itself(
    parent: str, derivative: str
) -> None:
    for licence in (derivative, parent):
        assert not is_compatible(parent, licence)
        try:
            check_compatible(parent, licence)
        except LicenseError as exc:
            assert exc.exit_code == EXIT_LICENSE and "allows no derivatives" in str(exc)
        else:
            raise AssertionError(f"{parent} allowed a derivative licensed {licence}")


@given(variants(ids_of(*SAME)), known_ids | texts)
def test_any_other_parent_allows_itself_in_any_spelling_and_nothing_else(
    parent_variant, derivative: str
) -> None:
    parent, variant = parent_variant
    assert is_compatible(parent, variant) and is_compatible(variant, parent)
    same = normalize_license(derivative) == parent
    assert is_compatible(parent, derivative) == same
    if not same:
        try:
            check_compatible(variant, derivative)
        except LicenseError as exc:
            message = str(exc)
            assert parent in message and normalize_license(derivative) in message
            assert "--license-override" in message
        else:
            raise AssertionError(f"{parent} allowed {derivative}")
        check_compatible(variant, derivative, override="approved by the rights holder")


@given(variants(known_ids), variants(known_ids | alias_keys))
def test_the_decision_is_a_function_of_the_normalised_ids(parent, derivative) -> None:
    (p, p_variant), (d, d_variant) = parent, derivative
    decided = is_compatible(p, d)
    assert is_compatible(p_variant, d_variant) == decided
    assert is_compatible(normalize_license(p), normalize_license(d)) == decided
    assert is_compatible(p, d) == decided  # asking again changes nothing


ancestors = st.builds(
    Ancestor,
    reference=st.integers(1, 99).map("models:/m/{}".format),
    license=few_ids | known_ids,
)


@given(
    st.lists(ancestors, min_size=1, max_size=4, unique_by=lambda a: a.reference),
    st.none() | few_ids | known_ids,
)
def test_a_licence_passes_a_chain_exactly_when_every_ancestor_allows_it(
    chain: list[Ancestor], declared: str | None
) -> None:
    parent = chain[-1].license
    licence = parent if declared is None else declared
    refusing = [a for a in chain if not is_compatible(a.license, licence)]
    try:
        decided = decide_license(parent, declared, None, chain=chain)
    except LicenseError as exc:
        assert refusing, str(exc)
        nearest = refusing[-1]
        assert f"{nearest.license} of the " in str(exc) and nearest.reference in str(exc)
        assert "\n" not in str(exc)
    else:
        assert not refusing
        assert decided == (licence, declared is None)
    # an override (a reason) lets this one version pass whatever the chain says
    assert decide_license(parent, declared, "approved", chain=chain) == (
        licence,
        declared is None,
    )


@given(
    st.lists(
        st.lists(ancestors, min_size=1, max_size=3, unique_by=lambda a: a.reference),
        min_size=2,
        max_size=3,
    ),
    st.none() | few_ids | known_ids,
    st.data(),
)
def test_the_order_of_several_parents_changes_no_decision(
    chains: list[list[Ancestor]], declared: str | None, data: st.DataObject
) -> None:
    def decide(order: list[list[Ancestor]]) -> tuple[str, bool] | str:
        try:
            return decide_licenses([(c[-1].license, c) for c in order], declared, None)
        except LicenseError:
            return "refused"

    decided = decide(chains)
    assert decide(data.draw(st.permutations(chains), label="order")) == decided
    every = [a for chain in chains for a in chain]
    own = {chain[-1].license for chain in chains}
    if declared is None and len(own) > 1:
        assert decided == "refused"  # nothing to inherit
        return
    licence = declared if declared is not None else own.pop()
    allowed = all(is_compatible(a.license, licence) for a in every)
    assert decided == ((licence, declared is None) if allowed else "refused")
