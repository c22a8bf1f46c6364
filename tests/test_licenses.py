"""The licence compatibility table, row by row (docs/licenses.md shows the same table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.errors import EXIT_LICENSE, LicenseError
from zoo.licenses import (
    COMPATIBILITY,
    check_compatible,
    is_compatible,
    license_kind,
    normalize_license,
)

# (parent, declared derivative licence, allowed?) -- every row of the table, each kind of
# parent against each kind of derivative.
ROWS = [
    # permissive parent: any licence
    ("apache-2.0", "apache-2.0", True),
    ("apache-2.0", "mit", True),
    ("mit", "cc-by-nc-4.0", True),
    ("bsd-3-clause", "cc-by-sa-4.0", True),
    ("cc-by-4.0", "my-company-eula", True),
    ("apache-2.0", "unknown", True),
    # non-commercial parent: itself only
    ("cc-by-nc-4.0", "cc-by-nc-4.0", True),
    ("cc-by-nc-4.0", "apache-2.0", False),
    ("cc-by-nc-4.0", "cc-by-nc-sa-4.0", False),
    ("cc-by-nc-4.0", "unknown", False),
    ("cc-by-nc-sa-4.0", "cc-by-nc-4.0", False),
    ("cc-by-nc-2.0", "cc-by-nc-4.0", False),
    # share-alike parent: itself only
    ("cc-by-sa-4.0", "cc-by-sa-4.0", True),
    ("cc-by-sa-4.0", "mit", False),
    ("gpl-3.0", "apache-2.0", False),
    # custom licence: itself only
    ("dinov3-license", "dinov3-license", True),
    ("dinov3-license", "apache-2.0", False),
    ("apple-ascl", "dinov3-license", False),
    ("llama3", "mit", False),
    # unknown parent: unknown only
    ("unknown", "unknown", True),
    ("unknown", "apache-2.0", False),
    ("unknown", "cc-by-nc-4.0", False),
]


@pytest.mark.parametrize(("parent", "derivative", "allowed"), ROWS)
def test_compatibility_table_row(parent: str, derivative: str, allowed: bool) -> None:
    assert is_compatible(parent, derivative) is allowed
    if allowed:
        check_compatible(parent, derivative)
    else:
        with pytest.raises(LicenseError) as info:
            check_compatible(parent, derivative)
        message = str(info.value)
        assert "\n" not in message
        assert normalize_license(parent) in message and normalize_license(derivative) in message
        assert "--license-override" in message
        assert info.value.exit_code == EXIT_LICENSE == 5


@pytest.mark.parametrize(
    ("license_id", "kind"),
    [
        ("apache-2.0", "permissive"),
        ("MIT", "permissive"),
        ("cc-by-nc-4.0", "non-commercial"),
        ("cc-by-nc-sa-4.0", "non-commercial"),
        ("cc-by-sa-4.0", "share-alike"),
        ("gpl-3.0", "share-alike"),
        ("dinov3-license", "custom"),
        ("unknown", "unknown"),
        ("other", "unknown"),
        (None, "unknown"),
    ],
)
def test_license_kinds(license_id: str | None, kind: str) -> None:
    assert license_kind(normalize_license(license_id)) == kind


def test_every_kind_has_a_rule_and_every_rule_is_tested() -> None:
    tested_parent_kinds = {license_kind(parent) for parent, _, _ in ROWS}
    assert tested_parent_kinds == set(COMPATIBILITY)
    for kind, rule in COMPATIBILITY.items():
        rows = [(p, d, ok) for p, d, ok in ROWS if license_kind(p) == kind]
        assert any(ok for *_, ok in rows) and (rule == "any" or any(not ok for *_, ok in rows))


@pytest.mark.parametrize("parent", ["cc-by-nc-4.0", "unknown", "dinov3-license"])
def test_override_with_a_reason_passes_and_an_empty_reason_does_not(parent: str) -> None:
    check_compatible(parent, "apache-2.0", override="internal research use, approved")
    with pytest.raises(LicenseError):
        check_compatible(parent, "apache-2.0", override="  ")


def test_docs_show_the_same_table() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "licenses.md").read_text(encoding="utf-8")
    for kind, rule in COMPATIBILITY.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| {kind} ")), None)
        assert row is not None, f"docs/licenses.md has no row for {kind}"
        assert ("any licence" in row) == (rule == "any")
