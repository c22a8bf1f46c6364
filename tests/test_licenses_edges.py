"""Licences, edge by edge: the refusal lines docs/licenses.md prints, word for word; ids
given as URLs, names or publishers' statements; the chain's records; several parents.

Issue 24: added when mutation testing (docs/testing.md) found these unchecked;
tests/test_licenses.py, their home, is past 400 lines.
"""

from __future__ import annotations

import pytest

from zoo.contract.errors import LicenseError, UsageError
from zoo.licenses.compat import Ancestor, check_compatible, decide_license, decide_licenses
from zoo.licenses.ids import (
    is_permissive,
    license_from_url,
    license_kind,
    normalize_license,
    parse_license,
    publisher_statement,
    spdx_url,
)

VIT = "timm:vit_small_patch16_224.augreg_in21k"
OVERRIDE = ' or pass --license-override "REASON"'


def _refusal(call, *args, **kwargs) -> str:
    with pytest.raises(LicenseError) as err:
        call(*args, **kwargs)
    return str(err.value)


# ------------------------------------------------------- the refusals, word for word


def test_the_refusals_are_the_lines_docs_licenses_md_shows() -> None:
    nc = Ancestor(VIT, "cc-by-nc-4.0")
    assert _refusal(decide_license, "cc-by-nc-4.0", "apache-2.0", None, chain=[nc]) == (
        f"licence apache-2.0 is not compatible with licence cc-by-nc-4.0 of the parent {VIT} "
        "(non-commercial licences allow only themselves): keep cc-by-nc-4.0 (omit --license)"
        + OVERRIDE
    )
    v1 = Ancestor("models:/pets/1", "apache-2.0", "internal evaluation only")
    assert _refusal(decide_license, "apache-2.0", "mit", None, chain=[nc, v1]) == (
        f"licence mit is not compatible with licence cc-by-nc-4.0 of the ancestor {VIT} "
        "(non-commercial licences allow only themselves): declare --license cc-by-nc-4.0"
        + OVERRIDE
        + '; the override on models:/pets/1 ("internal evaluation only") covers that '
        "version only, not its descendants"
    )


def test_an_inherited_licence_and_a_parent_without_a_reference_are_named_so() -> None:
    chain = [Ancestor("models:/sa/1", "cc-by-sa-4.0"), Ancestor("models:/sa/2", "mit", "ok")]
    assert _refusal(decide_license, "mit", None, None, chain=chain) == (
        "the inherited licence mit is not compatible with licence cc-by-sa-4.0 of the "
        "ancestor models:/sa/1 (share-alike licences allow only themselves): declare "
        '--license cc-by-sa-4.0 or pass --license-override "REASON"; the override on '
        'models:/sa/2 ("ok") covers that version only, not its descendants'
    )
    assert _refusal(check_compatible, "cc-by-nc-4.0", "apache-2.0") == (
        "licence apache-2.0 is not compatible with the parent's licence cc-by-nc-4.0 "
        "(non-commercial licences allow only themselves): keep cc-by-nc-4.0 (omit --license)"
        + OVERRIDE
    )


def test_a_no_derivatives_refusal_says_so_whoever_holds_the_licence() -> None:
    tail = (
        " allows no derivatives: fine-tuning it (or a derivative of it) into a model "
        'licensed mit is refused; pass --license-override "REASON" if you have the rights '
        "holder's permission"
    )
    assert _refusal(check_compatible, "cc-by-nd-4.0", "mit") == (
        "The parent's licence cc-by-nd-4.0" + tail
    )
    chain = [Ancestor("hf:org/nd", "cc-by-nd-4.0"), Ancestor("models:/x/1", "mit")]
    assert _refusal(decide_license, "mit", "mit", None, chain=chain) == (
        "Licence cc-by-nd-4.0 of the ancestor hf:org/nd" + tail
    )


def test_an_override_needs_a_reason_and_then_decides_alone() -> None:
    with pytest.raises(UsageError) as err:
        decide_license("cc-by-nc-4.0", None, "  ")
    assert str(err.value) == '--license-override needs a reason: --license-override "REASON"'
    for reason in (None, "", " \t"):
        with pytest.raises(LicenseError):
            check_compatible("unknown", "mit", override=reason)
    check_compatible("unknown", "mit", override="approved")
    nd = [Ancestor("hf:org/nd", "cc-by-nd-4.0")]
    assert decide_license("cc-by-nd-4.0", "mit", "approved", chain=nd) == ("mit", False)


# ------------------------------------------------------- the chain and its records


def test_what_a_derivative_inherits_without_a_chain_or_a_parent_licence() -> None:
    assert decide_license("MIT", None, None) == ("mit", True)  # normalised
    assert decide_license(None, None, None) == ("unknown", True)
    # no parent licence given: the parent's (last) in the chain
    chain = [Ancestor("timm:a", "mit"), Ancestor("models:/a/1", "apache-2.0")]
    assert decide_license(None, None, None, chain=chain) == ("apache-2.0", True)
    assert decide_license("", "Apache License, Version 2.0", None, chain=chain) == (
        "apache-2.0",
        False,
    )


def test_an_ancestor_record_reads_back_and_reads_old_or_partial_records() -> None:
    anc = Ancestor("models:/pets/1", "apache-2.0", "approved")
    assert anc.to_dict() == {
        "reference": "models:/pets/1",
        "license": "apache-2.0",
        "override": "approved",
    }
    assert Ancestor.from_dict(anc.to_dict()) == anc
    assert Ancestor.from_dict({}) == Ancestor("?", "unknown", None)
    old = {"reference": "timm:a", "license": "MIT License", "override": ""}
    assert Ancestor.from_dict(old) == Ancestor("timm:a", "mit", None)


def test_one_parent_is_decided_by_its_own_licence_and_chain() -> None:
    nc_chain = (Ancestor("timm:b", "cc-by-nc-4.0"),)
    assert decide_licenses([("cc-by-nc-4.0", nc_chain)], None, None) == ("cc-by-nc-4.0", True)
    assert decide_licenses([("mit", ())], None, None) == ("mit", True)
    assert "timm:b" in _refusal(decide_licenses, [("cc-by-nc-4.0", nc_chain)], "mit", None)


def test_parents_of_different_licences_are_listed_in_order() -> None:
    parents = [("mit", ()), ("cc-by-nc-4.0", ()), ("gpl-3.0", ()), ("MIT", ())]
    assert _refusal(decide_licenses, parents, None, None) == (
        "the parents are licensed cc-by-nc-4.0, gpl-3.0, mit, so there is no one licence "
        "to inherit: declare the derivative's with --license ID (one that every parent "
        "allows)"
    )
    assert decide_licenses([("mit", ()), ("MIT", ())], None, None) == ("mit", True)


# ------------------------------------------------------------- ids and where they come from


def test_licence_urls_map_to_ids_only_when_known() -> None:
    assert license_from_url("https://github.com/pytorch/vision/blob/main/LICENSE") == (
        "bsd-3-clause"
    )
    assert license_from_url("http://www.apache.org/licenses/LICENSE-2.0.txt") == "apache-2.0"
    assert license_from_url("https://opensource.org/licenses/MIT/") == "mit"
    assert license_from_url("https://creativecommons.org/licenses/by-nc/4.0.html") == (
        "cc-by-nc-4.0"
    )
    assert license_from_url("https://creativecommons.org/licenses/by/4.0.md") == "cc-by-4.0"
    for unknown in (None, "", "https://example.com/LICENSE", "opensource.org/licenses/mit-x"):
        assert license_from_url(unknown) == "unknown"
    assert normalize_license(" HTTPS://opensource.org/licenses/MIT ") == "mit"
    assert normalize_license("http://example.com/eula") == "unknown"


def test_names_of_licences_read_as_their_ids() -> None:
    assert normalize_license("The MIT Licence") == "mit"
    assert normalize_license("Apache License 2") == "apache-2.0"
    assert normalize_license("Apache Licence Version 2.0") == "apache-2.0"
    assert normalize_license("the unlicense") == "unlicense"
    assert normalize_license("BSD 3 License") == "bsd-3-clause"  # through an alias
    assert normalize_license("custom: Acme EULA") == "acme-eula"
    assert normalize_license("GNU GPL v3") == "gnu-gpl-v3"  # not known: kept, custom
    assert normalize_license("Apache License") == "apache-license"


def test_torchvision_weights_carry_their_publishers_statement() -> None:
    base = "https://download.pytorch.org/models/"
    tv = publisher_statement(base + "resnet50-0676ba61.pth")
    assert tv is not None and tv.license == "bsd-3-clause"
    assert tv.url == "https://github.com/pytorch/vision/blob/main/LICENSE"
    swag = publisher_statement(base + "vit_b_16_SWAG_linear-f8f2d4d7.pth")
    assert swag is not None and swag.license == "cc-by-nc-4.0"
    assert publisher_statement(base + "swag/resnet50.pth") == tv  # the file's name decides
    for other in (None, "", "https://example.com/models/vit_swag.pth"):
        assert publisher_statement(other) is None


def test_spdx_pages_for_spdx_ids_only() -> None:
    assert spdx_url("mit") == spdx_url("MIT") == "https://spdx.org/licenses/MIT.html"
    assert spdx_url("gpl-3.0") == "https://spdx.org/licenses/GPL-3.0-only.html"
    for no_page in (None, "", "unknown", "other", "apple-ascl", "acme-eula"):
        assert spdx_url(no_page) is None


def test_kinds_from_the_ids_words_and_the_spdx_categories() -> None:
    assert is_permissive("mit") and is_permissive("0bsd")
    assert not is_permissive("cc-by-nc-4.0") and not is_permissive("unknown")
    assert license_kind("acme-noncommercial") == license_kind("x-non-commercial")
    assert license_kind("acme-noncommercial") == "non-commercial"
    for share_alike in ("agpl-3.0", "lgpl-2.1", "odbl-1.0", "cc-by-sa-3.0", "epl-2.0"):
        assert license_kind(share_alike) == "share-alike", share_alike
    assert license_kind("cc-pddc") == "permissive"  # SPDX: Public Domain
    assert license_kind("MIT License") == "permissive"


# ------------------------------------------------------------------ declared ids


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        (
            "custom:acme eula",
            "'custom:acme eula' is not a custom licence name: write custom:NAME with "
            "letters, digits, '.', '+', '_' or '-' (e.g. custom:acme-eula)",
        ),
        (
            "custom:-x",
            "'custom:-x' is not a custom licence name: write custom:NAME with letters, "
            "digits, '.', '+', '_' or '-' (e.g. custom:acme-eula)",
        ),
        ("custom:apache2", "'apache2' is a known licence id: write --license apache2"),
        (
            "custom:gpl-3.0-only",
            "'gpl-3.0-only' is a known licence id: write --license gpl-3.0-only",
        ),
        ("custom:unknown", "'unknown' is not a custom licence: omit --license to inherit"),
        (
            "zzzzzz",
            "unknown licence id 'zzzzzz': Use an SPDX id as the Hugging Face Hub writes it "
            "(mit, apache-2.0, cc-by-nc-4.0), or declare your own with --license custom:NAME",
        ),
    ],
)
def test_a_declared_id_is_refused_in_one_line(given: str, refusal: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_license(given)
    assert str(err.value) == refusal


def test_declared_ids_are_read_case_and_space_blind() -> None:
    assert parse_license("  Custom:ACME-eula ") == "acme-eula"
    assert parse_license(" MIT ") == "mit"
    assert parse_license("custom: acme.v2+x_y ") == "acme.v2+x_y"


def test_a_parent_without_a_chain_is_the_parent_and_one_parent_may_be_overridden() -> None:
    assert _refusal(decide_license, "cc-by-sa-4.0", "mit", None) == (
        "licence mit is not compatible with the parent's licence cc-by-sa-4.0 (share-alike "
        "licences allow only themselves): keep cc-by-sa-4.0 (omit --license) or pass "
        '--license-override "REASON"'
    )
    nc = ("cc-by-nc-4.0", (Ancestor("timm:b", "cc-by-nc-4.0"),))
    assert decide_licenses([nc], "mit", "approved by legal") == ("mit", False)


def test_an_archived_copy_of_a_licence_url_is_not_the_licence_url() -> None:
    archived = "https://web.archive.org/web/2020/https://opensource.org/licenses/MIT"
    assert license_from_url(archived) == "unknown"


def test_a_licences_name_reads_as_its_id_only_when_it_names_one() -> None:
    assert normalize_license("Apache Software License 2.0") == "apache-2.0"
    assert normalize_license("Apache Software License 2") == "apache-2.0"
    assert normalize_license("GNU License 2") == "gnu-license-2"  # not Apache's rule
    assert normalize_license("Python License, Version 2.0") == "python-2.0"  # SPDX
    assert normalize_license("The BSD License") == "bsd"  # the Hub's id, not SPDX's


def test_the_nearest_ids_are_offered_as_docs_licenses_md_shows() -> None:
    with pytest.raises(UsageError) as err:
        parse_license("apache-2.O")
    assert str(err.value) == (
        "unknown licence id 'apache-2.O': did you mean apache-2.0 or apache-1.1 or "
        "apache-1.0? Use an SPDX id as the Hugging Face Hub writes it (mit, apache-2.0, "
        "cc-by-nc-4.0), or declare your own with --license custom:NAME"
    )
    # an id with a space is no licence's name: refused, the id it may mean first
    with pytest.raises(UsageError, match="did you mean bsd-3-clause or "):
        parse_license("bsd 3-clause")
